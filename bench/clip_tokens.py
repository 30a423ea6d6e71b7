"""Image tokens of one clip beside one image, at the real models' processor settings.

For each family that takes clips, its stored real-size architecture is built on the meta device
(no weights, no memory) with the processor the family loads for it; one image and clips of 4 and
8 frames (sampled from 2 s) go through the family's own `encode` (the `roadscene predict` path),
and the tokens standing for pixels are counted in the encoded ids. Counts are exact for the real
processors: they depend on the processor's settings and the frame size, not on weights. Prompt
lengths use the family's local tokenizer, so their text part differs slightly from the real one.
OpenFlamingo puts one `<image>` token in the text for a clip as for an image; what its layers
attend to is the perceiver's latents, counted here as `perceiver_num_latents` per frame.

    .venv/bin/python bench/clip_tokens.py [--image-size 512] [--frames 4 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from roadscene.bench.subjects import build_subject
from roadscene.models import get_family, list_families
from roadscene.models.arch import load_arch
from roadscene.targets import DEFAULT_PROMPT


def clip_token_counts(arch_name: str, image_size: int, frame_counts: list[int]) -> dict:
    arch = load_arch(arch_name)
    with tempfile.TemporaryDirectory(prefix="roadscene-clip-tokens-") as workdir:
        subject = build_subject(
            arch, device=torch.device("meta"), dtype=torch.float32, workdir=Path(workdir)
        )
        subject.image_size = image_size
        family = subject.family
        latents = arch.model.get("perceiver_num_latents")
        [image] = subject.examples(1, prompt=DEFAULT_PROMPT)
        features = family.encode(subject.processor, image)
        row = {
            "arch": arch_name,
            "image_size": image_size,
            "image": {
                "image_tokens": subject.image_tokens(features),
                "prompt_tokens": int(features["input_ids"].shape[-1]),
            },
        }
        for frames in frame_counts:
            [clip] = subject.clip_examples(1, frames, prompt=DEFAULT_PROMPT)
            features = family.encode(subject.processor, clip)
            tokens = subject.image_tokens(features, clip=True)
            if latents:  # cross-attended, not in the sequence: one set of latents per frame
                row["image"]["cross_attended_latents"] = latents
            row[f"clip_{frames}"] = {
                "image_tokens": tokens,
                "per_frame": tokens / frames,
                "prompt_tokens": int(features["input_ids"].shape[-1]),
                "vs_image": tokens / row["image"]["image_tokens"],
            }
            if latents:
                row[f"clip_{frames}"].update(
                    cross_attended_latents=latents * frames,
                    per_frame=latents,
                    vs_image=float(frames),
                )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=512, help="square frame / image side")
    parser.add_argument("--frames", type=int, nargs="+", default=[4, 8])
    args = parser.parse_args()
    for name in list_families():
        family = get_family(name)
        arch_name = family.bench_archs.get("real")
        if not family.supports_clips or not arch_name:
            continue
        row = clip_token_counts(arch_name, args.image_size, args.frames)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
