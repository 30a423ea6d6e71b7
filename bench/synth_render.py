"""Rendering speed of synthetic scenes, as ratios within one process.

Prints images per minute on one core for: sampling + rendering (the on-the-fly training path),
rendering + PNG writing (`roadscene data synth`), and the SmolVLM processor encoding of the same
images (what a training step spends per example after rendering), so the ratio
render / encode says whether rendering ever limits a step.

    .venv/bin/python bench/synth_render.py [--n 2000]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time

import torch
from PIL import Image

from roadscene.data.synth import SceneDistribution, image_seed, render_scene, sample_scenes


def _per_minute(n: int, seconds: float) -> float:
    return n / seconds * 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = args.n
    distribution = SceneDistribution.builtin().with_object_rate(0.8)

    start = time.perf_counter()
    scenes = list(sample_scenes(distribution, n, seed=0))
    images = [render_scene(s, image_seed(0, i)) for i, s in enumerate(scenes)]
    render_s = time.perf_counter() - start

    start = time.perf_counter()
    for pixels in images:
        Image.fromarray(pixels).save(io.BytesIO(), format="PNG", compress_level=1)
    png_s = time.perf_counter() - start

    from roadscene.data.examples import VisionTextExample
    from roadscene.data.synth import structured_target
    from roadscene.models import get_family

    family = get_family("smolvlm")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = family.build_tiny(f"{tmp}/tiny", corpus=[structured_target(s) for s in scenes])
        processor = family.load(model_dir, device="cpu").processor
    encode_n = min(n, 500)
    start = time.perf_counter()
    for scene, pixels in zip(scenes[:encode_n], images[:encode_n], strict=True):
        example = VisionTextExample(
            [Image.fromarray(pixels)], "Describe the scene.", structured_target(scene)
        )
        family.encode(processor, example)
    encode_s = (time.perf_counter() - start) * n / encode_n

    print(f"images: {n} (96 px), 1 thread")
    print(f"sample + render:        {_per_minute(n, render_s):>10,.0f} images/min")
    print(f"render + PNG write:     {_per_minute(n, render_s + png_s):>10,.0f} images/min")
    print(f"processor encode only:  {_per_minute(n, encode_s):>10,.0f} images/min")
    print(f"ratio render / encode time: {render_s / encode_s:.2f}")


if __name__ == "__main__":
    main()
