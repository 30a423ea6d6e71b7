"""`roadscene data build`: byte-identical exports, the build report and bad input."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from roadscene.data.build import build_datasets
from roadscene.errors import InputError

EXPORTS = [
    "bvpi_sft_train.jsonl",
    "bvpi_sft_val.jsonl",
    "bvpi_sft_test.jsonl",
    "bvpi_dpo_train.jsonl",
    "bvpi_dpo_val.jsonl",
]
HEADER = (
    "image,status,sidewalk_pos,road_pos,Object_present,Object_present_outside,m_bicycle,m_car,"
    "m_person,m_traffic_sign,traffic_light,m_obstacle,m_grass,m_plants,m_trees,m_bicycle_outside,"
    "m_car_outside,m_person_outside,m_traffic_sign_outside,traffic_light_outside,"
    "m_obstacle_outside,m_grass_outside,m_plants_outside,m_trees_outside"
)


def annotation_row(image: str, sidewalk="Center", road="Left", person="not present") -> str:
    cells = ["not present"] * 18
    cells[2] = person
    return ",".join([image, "done", sidewalk, road, "No", "No", *cells])


@pytest.fixture()
def small_csvs(tmp_path: Path):
    captions = tmp_path / "captions.csv"
    captions.write_text(
        "image_path,target,split\n"
        "training/images/a.jpg,A wide sidewalk.,train\n"
        'validation/images/b.jpg,"Cars, bikes and ""quotes"".",val\n'
        "testing/images/c.jpg,Crossing ahead.,test\n",
        encoding="utf-8",
    )
    annotations = tmp_path / "annotations.csv"
    annotations.write_text(
        "\n".join(
            [
                HEADER,
                annotation_row("a.jpg", person="Left-Right"),
                annotation_row("b.jpg", "Right", "Front"),
                annotation_row("c.jpg"),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return captions, annotations


@pytest.fixture(scope="module")
def real_build(sensation_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    result = build_datasets(sensation_dir / "captions.csv", sensation_dir / "annotations.csv", out)
    return out, result


@pytest.mark.parametrize("name", EXPORTS)
def test_exports_are_byte_identical_to_the_published_ones(real_build, sensation_dir, name):
    out, _ = real_build
    assert filecmp.cmp(out / name, sensation_dir / "reference" / name, shallow=False)


def test_report_lists_the_known_defects(real_build):
    out, result = real_build
    report = json.loads((out / "build_report.json").read_text())
    assert report == result.report
    assert report["sft"] == {"train": 2581, "val": 317, "test": 333}
    assert {r["image"] for r in report["annotations_without_caption"]} == {
        "ne",
        "hYe3haOKcQ2qaoDzq8r0qQ.jpg",
        "image_322.jpg",
    }
    assert [(r["line"], r["image"]) for r in report["malformed_annotations"]] == [(313, "ne")]
    assert [(r["line"], r["image"]) for r in report["duplicate_annotations"]] == [
        (1630, "QjbcLsBl1wk4WmuPMekTDA.jpg")
    ]
    assert report["captions_without_annotation"] == []


def test_caption_files(real_build):
    out, _ = real_build
    test = json.loads((out / "captions_test.json").read_text())
    assert len(test) == 333
    assert set(test[0]) == {"image", "caption"}
    assert test[0]["image"].startswith("testing/images/")


def test_small_build_and_join(small_csvs, tmp_path):
    captions, annotations = small_csvs
    out = tmp_path / "out"
    build_datasets(captions, annotations, out)
    train = [json.loads(line) for line in (out / "bvpi_sft_train.jsonl").read_text().splitlines()]
    assert train[0]["response"].startswith(
        "Sidewalk: center. Road: left. RoadVsSidewalk: left_of. "
        "Nearby: 2 people close on the left and right. Context: A wide sidewalk."
    )
    val = json.loads((out / "captions_val.json").read_text())
    assert val == [{"image": "validation/images/b.jpg", "caption": 'Cars, bikes and "quotes".'}]


# --- bad input: file-level problems stop with one line and exit code 2 ---------------------------


def test_missing_column_names_the_column(small_csvs, tmp_path, run_cli):
    captions, annotations = small_csvs
    annotations.write_text(annotations.read_text().replace("road_pos", "road_position"))
    result = run_cli(
        "data",
        "build",
        "--captions",
        captions,
        "--annotations",
        annotations,
        "--out",
        tmp_path / "out",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "road_pos" in lines[0] and str(annotations) in lines[0]
    assert not (tmp_path / "out").exists()

    captions.write_text("image_path,caption,split\na.jpg,x,train\n")
    result = run_cli(
        "data",
        "build",
        "--captions",
        captions,
        "--annotations",
        small_csvs[1],
        "--out",
        tmp_path / "out",
    )
    assert result.returncode == 2
    assert "missing column 'target'" in result.stderr and str(captions) in result.stderr


@pytest.mark.parametrize("problem", ["missing", "empty", "header_only", "not_utf8"])
def test_file_level_problems(small_csvs, tmp_path, problem):
    captions, annotations = small_csvs
    if problem == "missing":
        annotations.unlink()
    elif problem == "empty":
        annotations.write_text("")
    elif problem == "header_only":
        annotations.write_text(HEADER + "\n")
    else:
        annotations.write_bytes(annotations.read_bytes() + b"\xff\xfe,broken\n")
    with pytest.raises(InputError) as info:
        build_datasets(captions, annotations, tmp_path / "out")
    assert str(annotations) in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


# --- row-level defects: warnings counted in the report; --strict stops -------------------------


def test_row_defects_are_warned_and_counted(small_csvs, tmp_path, run_cli):
    captions, annotations = small_csvs
    with annotations.open("a") as handle:
        handle.write(annotation_row("a.jpg") + "\n")  # duplicate image (line 5)
        handle.write(annotation_row("d.jpg", sidewalk="Middle") + "\n")  # unknown enum (line 6)
        handle.write("ne,Center,Right,No,Yes\n")  # malformed, shifted row (line 7)
    with captions.open("a") as handle:
        handle.write("testing/images/e.jpg,Odd split.,holdout\n")  # bad split (line 5)
    out = tmp_path / "out"
    result = run_cli(
        "data", "build", "--captions", captions, "--annotations", annotations, "--out", out
    )
    assert result.returncode == 0, result.stderr
    assert f"{annotations}:5: field 'image': duplicate" in result.stderr
    assert f"{annotations}:6: field 'sidewalk_pos': unknown value 'Middle'" in result.stderr
    assert f"{annotations}:7: malformed row: 5 fields, the header has 24" in result.stderr
    assert f"{captions}:5: field 'split': split 'holdout'" in result.stderr
    report = json.loads((out / "build_report.json").read_text())
    assert report["issue_counts"]["duplicate"] == 1
    assert report["issue_counts"]["bad_split"] == 1
    assert report["issue_counts"]["malformed"] == 1
    assert report["issue_counts"]["unknown_value"] == 1  # the short row is left out whole
    assert report["sft"] == {"train": 1, "val": 1, "test": 1}

    strict_out = tmp_path / "strict"
    result = run_cli(
        "data",
        "build",
        "--captions",
        captions,
        "--annotations",
        annotations,
        "--out",
        strict_out,
        "--strict",
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert not strict_out.exists()


def test_validate_lists_every_bad_row(sensation_dir, run_cli):
    result = run_cli("data", "validate", sensation_dir / "annotations.csv")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if ":" in line]
    assert any(":313: field 'image'" in line for line in lines)
    assert any(":1630: field 'image': duplicate" in line for line in lines)
    assert any(":62: field 'Object_present'" in line for line in lines)


def test_schema_command_prints_json_schema(run_cli):
    result = run_cli("data", "schema", check=True)
    schema = json.loads(result.stdout)
    assert schema["properties"]["sidewalk_pos"]["enum"] == ["Left", "Center", "Right", "Outside"]
