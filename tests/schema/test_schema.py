"""The annotation schema: form enums, normalisation, CSV and JSON readers."""

from __future__ import annotations

import json

import pytest

from roadscene.errors import InputError
from roadscene.schema import (
    AnnotationForm,
    form_json_schema,
    normalize_position,
    parse_object_cell,
    read_annotation_json,
    read_annotations_csv,
    road_vs_sidewalk,
)


def _enums(node, path=""):
    """Every enum in a JSON schema, keyed by property path ($refs resolved by name)."""
    found = {}
    if isinstance(node, dict):
        if "enum" in node:
            found[path] = sorted(node["enum"])
        for key, value in node.items():
            found.update(_enums(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for value in node:
            found.update(_enums(value, path))
    return found


def test_form_enums_equal_the_reference_schema(annotation_form_reference_schema):
    reference = annotation_form_reference_schema
    ours = form_json_schema()
    reference_enums = {tuple(v) for v in _enums(reference).values()}
    our_enums = {tuple(v) for v in _enums(ours).values()}
    assert our_enums == reference_enums
    assert set(ours["required"]) == set(reference["required"])
    assert set(ours["properties"]) == set(reference["properties"])


def test_example_form_reads_and_normalises(tmp_path):
    example = {
        "image": "0001.jpg",
        "sidewalk_pos": "Center",
        "road_pos": "Left",
        "object_present": "Yes",
        "objects_on_sidewalk": {
            "bicycle": "not present",
            "car": "not present",
            "person": "not present",
            "traffic_sign": "not present",
            "traffic_light": "not present",
            "obstacle": ["Left", "Right"],
            "grass": "not present",
            "plants": "not present",
            "trees": "not present",
        },
        "object_present_outside": "No",
    }
    path = tmp_path / "0001.json"
    path.write_text(json.dumps(example, indent=2), encoding="utf-8")
    form = read_annotation_json(path)
    scene = form.to_scene()
    assert (scene.sidewalk, scene.road, scene.relation) == ("center", "left", "left_of")
    assert scene.near["obstacle"] == ["left", "right"]
    assert scene.near_count("person") == 0


def test_scene_to_form_round_trips_fields():
    form = AnnotationForm.model_validate(
        {
            "image": "a.jpg",
            "sidewalk_pos": "Right",
            "road_pos": "Not present",
            "object_present": "Yes",
            "object_present_outside": "No",
            "objects_on_sidewalk": {"obstacle": ["Left", "Left"], "car": "Center"},
        }
    )
    scene = form.to_scene()
    assert scene.near["obstacle"] == ["left", "left"]
    again = scene.to_form()
    assert again.sidewalk_pos == "Right" and again.road_pos == "Not present"
    assert again.to_scene() == scene


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Center", "center"),
        ("centre", "center"),
        ("Not present", "unknown"),
        ("Outside", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
        ("NaN", "unknown"),
        ("FRONT", "front"),
        ("No", "unknown"),
    ],
)
def test_normalize_position(raw, expected):
    assert normalize_position(raw) == expected


def test_relation_rule_table():
    assert road_vs_sidewalk("center", "front") == "crossing_front"
    assert road_vs_sidewalk("left", "left") == "unknown"
    assert road_vs_sidewalk("left", "right") == "right_of"
    assert road_vs_sidewalk("left", "center") == "right_of"
    assert road_vs_sidewalk("right", "left") == "left_of"
    assert road_vs_sidewalk("center", "left") == "left_of"
    assert road_vs_sidewalk("center", "right") == "right_of"
    assert road_vs_sidewalk("unknown", "left") == "unknown"


def test_object_cells():
    assert parse_object_cell("Right-Right") == ["right", "right"]
    assert parse_object_cell("left, center/RIGHT") == ["left", "center", "right"]
    assert parse_object_cell("not present") == []
    assert parse_object_cell("Centre") == []


def test_real_annotations_report_their_known_defects(sensation_dir):
    table = read_annotations_csv(sensation_dir / "annotations.csv")
    assert table.row_count == 3235
    assert len(table.scenes) == 3234
    by_kind = {}
    for issue in table.issues:
        by_kind.setdefault(issue.kind, []).append((issue.line, issue.image, issue.field))
    assert by_kind["duplicate"] == [(1630, "QjbcLsBl1wk4WmuPMekTDA.jpg", "image")]
    assert by_kind["malformed"] == [(313, "ne", "image")]
    assert (62, "0066.jpg", "Object_present") in by_kind["unknown_value"]


def test_bad_json_form_names_the_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "image": "a.jpg",
                "sidewalk_pos": "Middle",
                "road_pos": "Left",
                "object_present": "No",
                "object_present_outside": "No",
            }
        )
    )
    with pytest.raises(InputError) as info:
        read_annotation_json(bad)
    assert "sidewalk_pos" in str(info.value) and str(bad) in str(info.value)
