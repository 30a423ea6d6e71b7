"""Build the SENSATION training exports from `captions.csv` and `annotations.csv`.

By default the output is byte-identical to the published exports (rules: docs/targets.md): users
have models trained on exactly these files. Row-level defects are warnings counted in
`build_report.json` (or errors with `strict=True`); file-level problems always stop with an
InputError. The output folder is written atomically: all files appear together or none do.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadscene.errors import InputError, excerpt
from roadscene.io import atomic_dir, check_output, dumps_line
from roadscene.schema import (
    AnnotationTable,
    RowIssue,
    SceneAnnotation,
    image_key,
    read_annotations_csv,
    read_csv_table,
)
from roadscene.targets import DEFAULT_PROMPT, render_response

SPLITS: tuple[str, ...] = ("train", "val", "test")
DPO_SPLITS: tuple[str, ...] = ("train", "val")
CAPTION_COLUMNS: tuple[str, ...] = ("image_path", "target", "split")


@dataclass
class CaptionRow:
    line: int
    image: str
    caption: str
    split: str
    #: False when the row is left out: a split that is not train/val/test, or an image already
    #: captioned in another split (an image belongs to one split: the first row's)
    used: bool = True


@dataclass
class BuildResult:
    """What `build_datasets` wrote and found."""

    out_dir: Path
    report: dict[str, Any]
    issues: list[RowIssue] = field(default_factory=list)


def read_captions_csv(path: str | Path) -> tuple[list[CaptionRow], list[RowIssue]]:
    """Caption rows in file order, plus row-level issues (malformed row, bad split, duplicate
    image, split conflict).

    An image belongs to one split, the split of its first row with a valid split: a later row of
    the same image in another split is a `split_conflict` and is left out (`used=False`), so no
    image is ever in two splits. A later row in the same split is a `duplicate` and is kept (one
    more caption of that image). Malformed rows (wrong number of fields, a quote left open) are
    left out and not returned.
    """
    rows: list[CaptionRow] = []
    table, issues = read_csv_table(path, CAPTION_COLUMNS, "captions")
    first: dict[str, CaptionRow] = {}
    for line, row in table:
        caption = CaptionRow(line, row["image_path"], row["target"], row["split"])
        key = image_key(caption.image)
        if caption.split not in SPLITS:
            caption.used = False
            issues.append(
                RowIssue(
                    str(path),
                    line,
                    "bad_split",
                    f"split {excerpt(caption.split)} is not one of {', '.join(SPLITS)} "
                    "(row left out)",
                    image=key,
                    field="split",
                )
            )
        elif key in first and first[key].split != caption.split:
            caption.used = False
            issues.append(
                RowIssue(
                    str(path),
                    line,
                    "split_conflict",
                    f"'{key}' is in split '{caption.split}' here but in split "
                    f"'{first[key].split}' at line {first[key].line}; an image belongs to one "
                    "split, the first row's (row left out)",
                    image=key,
                    field="split",
                )
            )
        elif key in first:
            issues.append(
                RowIssue(
                    str(path),
                    line,
                    "duplicate",
                    f"duplicate caption of '{key}' (first at line {first[key].line})",
                    image=key,
                    field="image_path",
                )
            )
        else:
            first[key] = caption
        rows.append(caption)
    issues.sort(key=lambda issue: issue.line)
    return rows, issues


def sft_record(row: CaptionRow, scene: SceneAnnotation, prompt: str) -> dict[str, Any]:
    return {
        "image": row.image,
        "prompt": prompt,
        "response": render_response(scene, row.caption),
        "sidewalk_pos": scene.sidewalk,
        "road_pos": scene.road,
        "road_vs_sidewalk": scene.relation,
    }


def dpo_record(sft: dict[str, Any], caption: str) -> dict[str, Any] | None:
    """A preference pair: the structured response is chosen over the bare caption. None when the
    caption is empty or equals the response (nothing to prefer)."""
    if not caption.strip() or caption == sft["response"]:
        return None
    return {
        "image": sft["image"],
        "prompt": sft["prompt"],
        "chosen": sft["response"],
        "rejected": caption,
        "sidewalk_pos": sft["sidewalk_pos"],
        "road_pos": sft["road_pos"],
        "road_vs_sidewalk": sft["road_vs_sidewalk"],
    }


BUILD_WHAT = "a `roadscene data build` folder"


def is_build_dir(folder: Path) -> bool:
    """Whether `folder` holds an earlier build (its files may be replaced)."""
    return (folder / "build_report.json").is_file()


def build_datasets(
    captions_csv: str | Path,
    annotations_csv: str | Path,
    out_dir: str | Path,
    *,
    strict: bool = False,
    prompt: str = DEFAULT_PROMPT,
) -> BuildResult:
    """Write the SFT, DPO and caption files and `build_report.json` into `out_dir`.

    `out_dir` must be new, empty or an earlier build's folder (checked before reading)."""
    out_dir = check_output(out_dir, folder=True, ours=is_build_dir, what=BUILD_WHAT)
    captions, caption_issues = read_captions_csv(captions_csv)
    table: AnnotationTable = read_annotations_csv(annotations_csv)
    issues = [*table.issues, *caption_issues]
    if strict and issues:
        first = issues[0]
        more = f" (and {len(issues) - 1} more row issues)" if len(issues) > 1 else ""
        raise InputError(first.message + more, path=first.path, line=first.line, field=first.field)

    sft: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    dpo: dict[str, list[dict[str, Any]]] = {s: [] for s in DPO_SPLITS}
    plain: dict[str, list[dict[str, str]]] = {s: [] for s in SPLITS}
    captioned: set[str] = set()
    without_annotation: list[dict[str, Any]] = []
    for row in captions:
        key = image_key(row.image)
        captioned.add(key)
        if not row.used:
            continue  # reported as bad_split or split_conflict
        scene = table.scenes.get(key)
        if scene is None:
            # Left join: an image without annotation gets unknown fields and no objects.
            without_annotation.append({"line": row.line, "image": row.image, "split": row.split})
            scene = SceneAnnotation.build(image=key, sidewalk="", road="")
        record = sft_record(row, scene, prompt)
        sft[row.split].append(record)
        plain[row.split].append({"image": row.image, "caption": row.caption})
        if row.split in dpo:
            pair = dpo_record(record, row.caption)
            if pair is not None:
                dpo[row.split].append(pair)

    uncaptioned = [
        {"line": table.lines[key], "image": key} for key in table.scenes if key not in captioned
    ]
    kinds = Counter(issue.kind for issue in issues)
    report: dict[str, Any] = {
        "inputs": {"captions": str(captions_csv), "annotations": str(annotations_csv)},
        "rows": {
            "captions": len(captions),
            "annotations": table.row_count,
            "annotated_images": len(table.scenes),
        },
        "sft": {split: len(rows) for split, rows in sft.items()},
        "dpo": {split: len(rows) for split, rows in dpo.items()},
        "dpo_skipped": {split: len(sft[split]) - len(dpo[split]) for split in DPO_SPLITS},
        "annotations_without_caption": uncaptioned,
        "captions_without_annotation": without_annotation,
        "duplicate_annotations": [i.to_dict() for i in table.issues if i.kind == "duplicate"],
        "malformed_annotations": [i.to_dict() for i in table.issues if i.kind == "malformed"],
        "row_issues": [i.to_dict() | {"file": Path(i.path).name} for i in issues],
        "issue_counts": dict(sorted(kinds.items())),
    }

    with atomic_dir(out_dir, ours=is_build_dir, what=BUILD_WHAT) as tmp:
        for split in SPLITS:
            _write_jsonl(tmp / f"bvpi_sft_{split}.jsonl", sft[split])
            with open(tmp / f"captions_{split}.json", "w", encoding="utf-8") as handle:
                json.dump(plain[split], handle, ensure_ascii=False, indent=1)
                handle.write("\n")
        for split in DPO_SPLITS:
            _write_jsonl(tmp / f"bvpi_dpo_{split}.jsonl", dpo[split])
        with open(tmp / "build_report.json", "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
    return BuildResult(out_dir=out_dir, report=report, issues=issues)


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(dumps_line(record))
            handle.write("\n")
