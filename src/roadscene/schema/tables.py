"""Reading annotations: the annotations CSV (row defects collected with line numbers) and
annotation JSON files (the form)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from roadscene.errors import InputError, excerpt
from roadscene.io import CsvRow, read_csv, read_json
from roadscene.schema.annotation import AnnotationForm, SceneAnnotation
from roadscene.schema.values import (
    FORM_CLASSES,
    MOTIONS,
    MOVING_CLASSES,
    OBJECT_CLASSES,
    REQUIRED_COLUMNS,
    cell_is_valid,
    far_column,
    image_key,
    near_column,
    parse_motion_cell,
    parse_object_cell,
)


@dataclass(frozen=True)
class RowIssue:
    """A row-level defect: reported with file and line, counted, never silently dropped."""

    path: str
    line: int
    kind: Literal[
        "malformed", "unknown_value", "duplicate", "missing_value", "bad_split", "split_conflict"
    ]
    message: str
    image: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.field:
            where += f": field '{self.field}'"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "kind": self.kind,
            "image": self.image,
            "field": self.field,
            "message": self.message,
        }


@dataclass
class AnnotationTable:
    """All annotations of a CSV, de-duplicated by image base name (first row wins)."""

    path: str
    scenes: dict[str, SceneAnnotation] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    issues: list[RowIssue] = field(default_factory=list)
    row_count: int = 0


# an image, or (a clip's row) a video
_IMAGE_NAME = re.compile(r".+\.(jpe?g|png|webp|bmp|mp4|webm|mkv|mov|avi)$", re.IGNORECASE)
_FORM_SIDEWALK = {"Left", "Center", "Right", "Outside"}
_FORM_ROAD = {"Not present", "Left", "Front", "Right"}
_FORM_YES_NO = {"Yes", "No"}


def _shape_problem(row: CsvRow, columns: int) -> str | None:
    """Why a CSV record cannot be a row of a table with `columns` columns (None: it can).

    SENSATION's tables hold one row per line: a record spanning lines is a quote left open
    (which swallows the rows after it), and a wrong number of fields is a shifted row."""
    if row.last_line > row.line:
        return (
            f"malformed row: a quoted field runs from line {row.line} to line {row.last_line} "
            f"(a quote left open swallows the rows after it); row left out"
        )
    if len(row.fields) != columns:
        hint = " (an unquoted comma?)" if len(row.fields) > columns else ""
        return (
            f"malformed row: {len(row.fields)} fields, the header has {columns}{hint}; row left out"
        )
    return None


def read_csv_table(
    path: str | Path, required: tuple[str, ...], what: str
) -> tuple[list[tuple[int, dict[str, str]]], list[RowIssue]]:
    """Read a CSV as (first line number, row) pairs, plus the malformed rows left out.

    File-level problems (missing file, non-UTF-8 bytes, empty file, missing column, a field over
    128 KB) raise an InputError naming the file (and line or column); a byte-order mark is
    dropped. A row with another number of fields than the header, or one whose quoted field
    spans lines, is a `malformed` RowIssue and is left out. Line numbers count the header as
    line 1.
    """
    records = read_csv(path)
    if not records:
        raise InputError(f"{what} file is empty", path=path)
    header = records[0].fields
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"missing column '{missing[0]}'"
            + (
                f" (and {len(missing) - 1} more: {', '.join(missing[1:])})"
                if len(missing) > 1
                else ""
            ),
            path=path,
            field=None,
        )
    rows: list[tuple[int, dict[str, str]]] = []
    issues: list[RowIssue] = []
    for record in records[1:]:
        problem = _shape_problem(record, len(header))
        if problem is not None:
            first = record.fields[0] if record.fields else None
            issues.append(RowIssue(str(path), record.line, "malformed", problem, image=first))
            continue
        rows.append((record.line, {k: v for k, v in zip(header, record.fields, strict=True) if k}))
    if not rows and not issues:
        raise InputError(f"{what} file has a header but no rows", path=path)
    if not rows:
        raise InputError(
            f"{what} file has no usable row: {len(issues)} malformed, the first: "
            f"{issues[0].message}",
            path=path,
            line=issues[0].line,
        )
    return rows, issues


def read_csv_rows(
    path: str | Path, required: tuple[str, ...], what: str
) -> list[tuple[int, dict[str, str]]]:
    """`read_csv_table` where a malformed row is an InputError (for files such as reference
    captions, where a row that cannot be read would change what is scored)."""
    rows, issues = read_csv_table(path, required, what)
    if issues:
        raise InputError(issues[0].message, path=path, line=issues[0].line)
    return rows


def validate_annotation_row(row: dict[str, str], path: str, line: int) -> list[RowIssue]:
    """Row-level defects of one annotations.csv row (the form's vocabulary is the reference)."""
    issues: list[RowIssue] = []
    image = row.get("image", "")
    if not _IMAGE_NAME.match(image.strip()):
        issues.append(
            RowIssue(
                path,
                line,
                "malformed",
                f"malformed row: image {excerpt(image)} is not an image file name (columns shifted?)",
                image=image,
                field="image",
            )
        )
    checks = [
        ("sidewalk_pos", _FORM_SIDEWALK),
        ("road_pos", _FORM_ROAD),
        ("Object_present", _FORM_YES_NO),
        ("Object_present_outside", _FORM_YES_NO),
    ]
    for column, allowed in checks:
        if column not in row:
            continue
        value = row[column]
        if value.strip() == "":
            issues.append(
                RowIssue(path, line, "missing_value", "empty value", image=image, field=column)
            )
        elif value not in allowed:
            issues.append(
                RowIssue(
                    path,
                    line,
                    "unknown_value",
                    f"unknown value {excerpt(value)} (allowed: {', '.join(sorted(allowed))})",
                    image=image,
                    field=column,
                )
            )
    bad_motion = parse_motion_cell(row.get("motion"))[1]
    if bad_motion:
        issues.append(
            RowIssue(
                path,
                line,
                "unknown_value",
                f"unknown motion {excerpt(bad_motion[0])} (allowed: CLASS:MOTION with a class of "
                f"{', '.join(MOVING_CLASSES)} and a motion of {', '.join(MOTIONS)})",
                image=image,
                field="motion",
            )
        )
    for cls in FORM_CLASSES:
        for column in (near_column(cls), far_column(cls)):
            value = row.get(column)
            if value is not None and not cell_is_valid(value):
                issues.append(
                    RowIssue(
                        path,
                        line,
                        "unknown_value",
                        f"unknown value {excerpt(value)} (allowed: "
                        "not present, or Left/Center/Right joined by '-')",
                        image=image,
                        field=column,
                    )
                )
    return issues


def scene_from_csv_row(row: dict[str, str]) -> SceneAnnotation:
    """The normalised scene of one annotations.csv row (normalisation never fails). A table
    with the optional `motion` column (clips) gives each scene its close objects' motions."""
    return SceneAnnotation.build(
        image=image_key(row.get("image", "")),
        sidewalk=row.get("sidewalk_pos"),
        road=row.get("road_pos"),
        near={c: parse_object_cell(row.get(near_column(c))) for c in OBJECT_CLASSES},
        far={c: parse_object_cell(row.get(far_column(c))) for c in OBJECT_CLASSES},
        motion=parse_motion_cell(row["motion"])[0] if "motion" in row else None,
    )


def read_annotations_csv(path: str | Path) -> AnnotationTable:
    """Read annotations.csv: normalised scenes keyed by image base name, first row wins.

    Row-level defects (unknown values, malformed rows, duplicates) are collected in `.issues`
    with line numbers; they do not stop reading.
    """
    path = Path(path)
    table = AnnotationTable(path=str(path))
    rows, table.issues = read_csv_table(path, REQUIRED_COLUMNS, "annotations")
    table.row_count = len(table.issues)  # malformed rows count as rows read
    for line, row in rows:
        table.row_count += 1
        table.issues.extend(validate_annotation_row(row, str(path), line))
        key = image_key(row["image"])
        if key in table.scenes:
            table.issues.append(
                RowIssue(
                    str(path),
                    line,
                    "duplicate",
                    f"duplicate annotation of '{key}' (first "
                    f"at line {table.lines[key]}; first row wins)",
                    image=key,
                    field="image",
                )
            )
            continue
        table.scenes[key] = scene_from_csv_row(row)
        table.lines[key] = line
    table.issues.sort(key=lambda issue: issue.line)
    return table


def read_annotation_json(path: str | Path) -> AnnotationForm:
    """Read and validate one annotation JSON file (the form)."""
    path = Path(path)
    data = read_json(path)
    try:
        return AnnotationForm.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InputError(first["msg"], path=path, field=loc) from None


def validate_annotation_json(path: str | Path) -> list[str]:
    """Every problem of an annotation JSON file, one message each (empty list when valid)."""
    path = Path(path)
    try:
        data = read_json(path)
    except InputError as err:
        return [str(err)]
    try:
        AnnotationForm.model_validate(data)
    except ValidationError as err:
        return [
            f"{path}: field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}"
            for e in err.errors()
        ]
    return []
