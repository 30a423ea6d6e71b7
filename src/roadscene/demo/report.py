"""The demo's report: headline figures, `report.md` and the test-image gallery."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from roadscene.demo.config import SUMMARY_FILE, DemoConfig, DemoResult


def headline(safety: dict[str, Any], captions: dict[str, Any] | None) -> dict[str, float | None]:
    strict = safety["strict"]
    fields = strict["fields"]
    near = strict["objects"]["near"]["micro"]
    far = strict["objects"]["far"]["micro"]
    metrics: dict[str, float | None] = {
        "sidewalk accuracy": fields["sidewalk_pos"]["accuracy"]["rate"],
        "road accuracy": fields["road_pos"]["accuracy"]["rate"],
        "relation accuracy": fields["road_vs_sidewalk"]["accuracy"]["rate"],
        "close-object recall (micro)": near["recall"],
        "close-object precision (micro)": near["precision"],
        "close-object position accuracy": near["position_accuracy"]["rate"],
        "close-object count accuracy": near["count_accuracy"]["rate"],
        "far-object recall (micro)": far["recall"],
        "far-object precision (micro)": far["precision"],
        "complete answers": strict["complete_answers"]["rate"],
    }
    motion = strict.get("motion")
    if motion is not None:  # clips: how the close people, bicycles and cars move
        metrics["motion accuracy"] = motion["accuracy"]["rate"]
        metrics["motion majority-class rate"] = motion["majority_rate"]["rate"]
        metrics["motion balanced accuracy"] = motion["balanced_accuracy"]
    if captions is not None:
        for name in ("CIDEr", "BLEU-4", "METEOR", "ROUGE-L"):
            metrics[name] = captions["metrics"].get(name)
    return metrics


def write_demo_gallery(
    config: DemoConfig,
    data_dir: Path,
    predictions: Path,
    truth: dict[str, Any],
    report_dir: Path,
) -> Path:
    """The first `gallery_size` test images, then (if any) up to a third more with mistakes."""
    from roadscene.io import read_records
    from roadscene.report.gallery import GalleryItem, item_verdicts, write_gallery
    from roadscene.schema import image_key

    items = []
    for _, row in read_records(predictions):
        scene = truth[image_key(row["image"])]
        items.append(
            GalleryItem(data_dir / row["image"], scene, row.get("target", ""), row["prediction"])
        )
    if config.video:  # a clip is shown as the frames the model saw, side by side
        items = [
            replace(item, png=_clip_strip(item.image_path, config.clip_frames))
            for item in items[: config.gallery_size]
        ] + items[config.gallery_size :]
    shown = items[: config.gallery_size]
    wrong = [i for i in items[config.gallery_size :] if not all(item_verdicts(i).values())]
    shown += wrong[: max(config.gallery_size // 3, 0)]
    if config.video:
        shown = [
            i
            if i.png is not None
            else replace(i, png=_clip_strip(i.image_path, config.clip_frames))
            for i in shown
        ]
    what = "clips (the frames the clip model sees)" if config.video else "images"
    note = (
        f"{len(shown)} of {len(items)} held-out synthetic test {what}: the first "
        f"{min(config.gallery_size, len(items))}, then answers with a mistake. The cue is "
        "roadscene.predict.cue's rule table applied to the predicted and to the true fields."
    )
    return write_gallery(
        shown, report_dir / "gallery.html", title="roadscene demo: test images", note=note
    )


def _clip_strip(path: Path, frames: int) -> bytes:
    """PNG of a clip's sampled frames side by side."""
    import io

    import numpy as np
    from PIL import Image

    from roadscene.data.clips import open_video_clip

    clip = open_video_clip(path, frames)
    strip = np.concatenate([np.asarray(frame) for frame in clip.frames], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG")
    return buffer.getvalue()


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_demo_markdown(
    demo: DemoResult, config: DemoConfig, summary: dict[str, Any], path: Path
) -> None:
    from roadscene.io import atomic_write

    if config.video:
        seen = (
            "the last frame of each clip only (the control)"
            if config.frames_seen == "last"
            else f"{config.clip_frames} frames of each clip"
        )
        trained = f"synthetic street clips, seeing {seen}"
        items = "clips"
    else:
        trained, items = "synthetic street scenes", "images"
    lines = [
        "# roadscene demo",
        "",
        f"A {config.family} model trained from scratch on {trained}, "
        f"{demo.steps_done} steps of {config.batch_size} freshly rendered {items} "
        f"({'stopped by the time budget' if demo.stopped_by_budget else 'as planned'}), "
        f"evaluated on {config.n_test} held-out synthetic test {items} (seed {config.seed}).",
        "",
        "| metric | value | bar |",
        "| --- | --- | --- |",
    ]
    for name, value in demo.metrics.items():
        bar = demo.bar.get(name)
        verdict = "" if bar is None else f"≥ {bar:.2f} {'✓' if (value or 0) >= bar else '✗'}"
        if name == "motion accuracy" and demo.motion_ceiling is not None:
            ok = value is not None and value <= demo.motion_ceiling
            verdict = f"≤ {demo.motion_ceiling:.3f} (majority + 0.15) {'✓' if ok else '✗'}"
        lines.append(f"| {name} | {_fmt(value)} | {verdict} |")
    lines += [
        "",
        "Object figures count the `Nearby:` list (close) and the `Far:` list separately, by class "
        "presence (strict parser); captions compare the whole answer with the target text. "
        "Motion (clips) is scored on the close people, bicycles and cars that answer and truth "
        "both name (`static` when no motion word is given).",
        "",
        "## Time",
        "",
        "| stage | seconds |",
        "| --- | --- |",
        *[f"| {stage} | {value} |" for stage, value in demo.seconds.items()],
        "",
        f"{config.threads} torch threads; torch {summary['torch']}.",
        "",
        "## Files",
        "",
        "- [gallery.html](gallery.html): test images with predicted and true answers and cues",
        "- [safety/report.md](safety/report.md): strict and compat safety report, confusion "
        "matrices and per-object plots",
    ]
    if "captions" in demo.files:
        lines.append("- [captions/report.md](captions/report.md): caption metrics")
    elif summary.get("captions_note"):
        lines.append(f"- captions: {summary['captions_note']}")
    lines += [
        "- `../predictions_test.jsonl`: one line per test image",
        "- `../data/`: the synthetic dataset (images, annotations.csv, SFT/caption files)",
        "- `../train/model/`: the trained model, processor and resolved config",
        f"- `../{SUMMARY_FILE}`: these numbers as JSON",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(summary["config"], indent=2),
        "```",
        "",
    ]
    with atomic_write(path) as handle:
        handle.write("\n".join(lines))
