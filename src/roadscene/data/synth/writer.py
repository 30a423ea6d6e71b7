"""Writing a synthetic dataset: rendered images plus the same files `roadscene data build` writes
(annotations CSV in the SENSATION layout, captions CSV, SFT / DPO / caption files)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadscene.data.clips import write_video
from roadscene.data.synth.clips import ClipOptions, motion_seed, render_clip, sample_motion
from roadscene.data.synth.render import RenderOptions, render_scene
from roadscene.data.synth.scenes import (
    SceneDistribution,
    image_seed,
    sample_scenes,
    scene_caption,
    structured_target,
)
from roadscene.errors import InputError
from roadscene.schema import (
    ANNOTATION_COLUMNS,
    FORM_CLASSES,
    OBJECT_CLASSES,
    SceneAnnotation,
    far_column,
    motion_cell,
    near_column,
)


def _form_cell(positions: list[str]) -> str:
    return "-".join(p.capitalize() for p in positions) if positions else "not present"


def annotation_row(scene: SceneAnnotation, motion: bool = False) -> dict[str, str]:
    """One annotations.csv row (SENSATION column layout) for a scene; parses back to it. With
    `motion` (clips), the extra `motion` column says how its close objects move."""
    row = {
        "image": scene.image,
        "status": "synthetic",
        "sidewalk_pos": {"unknown": "Outside"}.get(scene.sidewalk, scene.sidewalk.capitalize()),
        "road_pos": {"unknown": "Not present"}.get(scene.road, scene.road.capitalize()),
        "Object_present": "Yes" if any(scene.near.get(c) for c in OBJECT_CLASSES) else "No",
        "Object_present_outside": "Yes" if any(scene.far.get(c) for c in OBJECT_CLASSES) else "No",
    }
    for cls in FORM_CLASSES:
        row[near_column(cls)] = _form_cell(scene.near.get(cls, []))
        row[far_column(cls)] = _form_cell(scene.far.get(cls, []))
    out = {column: row[column] for column in ANNOTATION_COLUMNS}
    if motion:
        out["motion"] = motion_cell(scene.motion)
    return out


def annotations_csv_text(scenes: Iterable[SceneAnnotation], motion: bool = False) -> str:
    """annotations.csv text for scenes (with `motion`: the clips' `motion` column too)."""
    buffer = io.StringIO(newline="")
    columns = [*ANNOTATION_COLUMNS, *(["motion"] if motion else [])]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for scene in scenes:
        writer.writerow(annotation_row(scene, motion))
    return buffer.getvalue()


# --- writing a synthetic dataset ------------------------------------------------------------------

SYNTH_SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class SynthResult:
    """What `write_synth_dataset` wrote."""

    out_dir: Path
    counts: dict[str, int]
    scenes: dict[str, list[SceneAnnotation]]
    report: dict[str, Any]


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Rows per split: test and val rounded, the rest train (train first in index order)."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError(
            f"val and test fractions must be in [0, 1) with a sum below 1; got {val_fraction} "
            f"and {test_fraction}",
            field="val_fraction",
        )
    test = round(n * test_fraction)
    val = round(n * val_fraction)
    return {"train": n - val - test, "val": val, "test": test}


SYNTH_WHAT = "a `roadscene data synth` folder"


def is_synth_dir(folder: Path) -> bool:
    """Whether `folder` holds an earlier synthetic dataset (its files may be replaced)."""
    return (folder / "synth_report.json").is_file()


def write_synth_dataset(
    out_dir: str | Path,
    n: int,
    *,
    seed: int = 0,
    distribution: SceneDistribution | None = None,
    options: RenderOptions | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    prompt: str | None = None,
    context: bool = True,
    source: str = "built-in SENSATION-like distribution",
    progress: Any = None,
    conditions: Sequence[str] = (),
    clips: ClipOptions | None = None,
) -> SynthResult:
    """Render `n` scenes into `out_dir` and write the same files as `roadscene data build`.

    Layout: `images/synth_{i:06d}.png`, `annotations.csv` (SENSATION columns), `captions.csv`
    (`image_path,target,split`; the templated caption), `bvpi_sft_{split}.jsonl`,
    `bvpi_dpo_{train,val}.jsonl`, `captions_{split}.json` and `synth_report.json`. Image paths
    in the data files are relative to `out_dir` (use it as the image root). With
    `context=False` the responses end after `Nearby:`/`Far:` (no `Context:` caption).
    `progress(k)` is called after every k images. The folder is written atomically.

    `conditions` (names of `roadscene.data.synth.conditions.CONDITIONS`) render the test
    scenes again under each condition: `conditions/{name}/synth_{i:06d}.png` (the same base
    names, so one truth serves all) and `bvpi_sft_test_{name}.jsonl` (`clean` points at the
    test images themselves).

    `clips` writes short clips instead of images (`roadscene.data.synth.clips`):
    `clips/clip_{i:06d}.webm`, rows naming a `video` (and a `motion` object: class -> motion of
    the close objects that move), answers with motion words and annotations.csv with a `motion`
    column.
    """
    from PIL import Image

    from roadscene.data.build import CaptionRow, _write_jsonl, dpo_record, sft_record
    from roadscene.data.synth.conditions import CONDITIONS
    from roadscene.io import atomic_dir, check_output, dumps_line
    from roadscene.targets import DEFAULT_PROMPT

    if n < 1:
        raise InputError(f"--n must be at least 1; got {n}", field="n")
    conditions = list(dict.fromkeys(conditions))
    for condition in conditions:
        if condition not in CONDITIONS:
            raise InputError(
                f"unknown condition '{condition}'; allowed: {', '.join(CONDITIONS)}",
                field="conditions",
            )
    if clips is not None and (options or RenderOptions()).size % 2:
        raise InputError(
            "clips need an even image size (the video codec's 4:2:0 chroma)", field="size"
        )
    out_dir = check_output(out_dir, folder=True, ours=is_synth_dir, what=SYNTH_WHAT)
    distribution = distribution or SceneDistribution.builtin()
    options = options or RenderOptions()
    prompt = DEFAULT_PROMPT if prompt is None else prompt
    sizes = split_sizes(n, val_fraction, test_fraction)
    split_of = [s for s in SYNTH_SPLITS for _ in range(sizes[s])]

    scenes: dict[str, list[SceneAnnotation]] = {s: [] for s in SYNTH_SPLITS}
    sft: dict[str, list[dict[str, Any]]] = {s: [] for s in SYNTH_SPLITS}
    dpo: dict[str, list[dict[str, Any]]] = {s: [] for s in ("train", "val")}
    plain: dict[str, list[dict[str, str]]] = {s: [] for s in SYNTH_SPLITS}
    shifted: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}
    captions_csv = io.StringIO(newline="")
    caption_writer = csv.writer(captions_csv, lineterminator="\n")
    caption_writer.writerow(["image_path", "target", "split"])
    folder = "clips" if clips is not None else "images"

    def draw(scene: SceneAnnotation, index: int, path: Path, under: RenderOptions) -> None:
        if clips is None:
            pixels = render_scene(scene, image_seed(seed, index), under)
            Image.fromarray(pixels).save(path, compress_level=1)
        else:
            frames = render_clip(scene, image_seed(seed, index), under, clips)
            write_video(path, frames, clips.fps)

    with atomic_dir(out_dir, ours=is_synth_dir, what=SYNTH_WHAT) as tmp:
        (tmp / folder).mkdir()
        for condition in conditions:
            if condition != "clean":
                (tmp / "conditions" / condition).mkdir(parents=True)
        for index, scene in enumerate(sample_scenes(distribution, n, seed)):
            split = split_of[index]
            if clips is not None:
                scene = sample_motion(scene, np.random.default_rng(motion_seed(seed, index)))
                scene = scene.model_copy(update={"image": f"clip_{index:06d}.webm"})
            draw(scene, index, tmp / folder / scene.image, options)
            caption = scene_caption(scene)
            row = CaptionRow(index + 2, f"{folder}/{scene.image}", caption, split)
            record = sft_record(row, scene, prompt)
            if not context:
                record["response"] = structured_target(scene)
            if clips is not None:
                record = {"video": record.pop("image"), **record, "motion": scene.motion}
            scenes[split].append(scene)
            sft[split].append(record)
            plain[split].append({"video" if clips else "image": row.image, "caption": caption})
            caption_writer.writerow([row.image, caption, split])
            if split == "test":
                for condition in conditions:
                    image = row.image
                    if condition != "clean":
                        image = f"conditions/{condition}/{scene.image}"
                        under = options.model_copy(update={"condition": condition})
                        draw(scene, index, tmp / image, under)
                    key = "video" if clips else "image"
                    shifted[condition].append({**record, key: image, "condition": condition})
            if split in dpo:
                pair = dpo_record({"image": row.image, **record}, caption)
                if pair is not None:
                    if clips is not None:
                        pair = {"video": pair.pop("image"), **pair}
                    dpo[split].append(pair)
            if progress is not None and (index + 1) % 100 == 0:
                progress(100)
        if progress is not None and n % 100:
            progress(n % 100)
        all_scenes = [s for split in SYNTH_SPLITS for s in scenes[split]]
        (tmp / "annotations.csv").write_text(
            annotations_csv_text(all_scenes, motion=clips is not None), encoding="utf-8"
        )
        (tmp / "captions.csv").write_text(captions_csv.getvalue(), encoding="utf-8")
        for split in SYNTH_SPLITS:
            _write_jsonl(tmp / f"bvpi_sft_{split}.jsonl", sft[split])
            with open(tmp / f"captions_{split}.json", "w", encoding="utf-8") as handle:
                json.dump(plain[split], handle, ensure_ascii=False, indent=1)  # as `data build`
                handle.write("\n")
        for split, rows in dpo.items():
            _write_jsonl(tmp / f"bvpi_dpo_{split}.jsonl", rows)
        for condition, rows in shifted.items():
            _write_jsonl(tmp / f"bvpi_sft_test_{condition}.jsonl", rows)
        report = {
            "n": n,
            "seed": seed,
            "distribution": source,
            "render": options.model_dump(),
            "splits": sizes,
            "prompt": prompt,
            "context": context,
            "conditions": {c: f"bvpi_sft_test_{c}.jsonl" for c in conditions},
            "images_with_near_objects": sum(
                1 for s in all_scenes if any(s.near[c] for c in OBJECT_CLASSES)
            ),
        }
        if clips is not None:
            report["clips"] = clips.model_dump()
            report["motions"] = dict(
                sorted(Counter(m for s in all_scenes for m in (s.motion or {}).values()).items())
            )
        with open(tmp / "synth_report.json", "w", encoding="utf-8") as handle:
            handle.write(dumps_line(report) + "\n")
    return SynthResult(out_dir=out_dir, counts=sizes, scenes=scenes, report=report)
