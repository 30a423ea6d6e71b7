"""Bad data never crashes, never loses rows silently, never reaches a model wrong: CSV defects,
split conflicts, line separators inside captions, and images that are not what they seem."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roadscene.data.build import build_datasets, read_captions_csv
from roadscene.data.images import MAX_IMAGE_PIXELS, check_images, open_image
from roadscene.data.records import ExampleRecord, load_records
from roadscene.errors import InputError
from roadscene.metrics.truth import load_split_truth

HEADER = (
    "image,status,sidewalk_pos,road_pos,Object_present,Object_present_outside,m_bicycle,m_car,"
    "m_person,m_traffic_sign,traffic_light,m_obstacle,m_grass,m_plants,m_trees,m_bicycle_outside,"
    "m_car_outside,m_person_outside,m_traffic_sign_outside,traffic_light_outside,"
    "m_obstacle_outside,m_grass_outside,m_plants_outside,m_trees_outside"
)


def annotations(tmp_path: Path, *images: str) -> Path:
    rows = [
        ",".join([i, "done", "Center", "Left", "No", "No", *["not present"] * 18]) for i in images
    ]
    path = tmp_path / "annotations.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def captions(tmp_path: Path, body: str, *, bom: bool = False) -> Path:
    path = tmp_path / "captions.csv"
    text = "image_path,target,split\n" + body
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def test_a_utf8_bom_is_not_a_missing_column(tmp_path: Path) -> None:
    result = build_datasets(captions(tmp_path, "a.jpg,A sidewalk.,train\n", bom=True),
                            annotations(tmp_path, "a.jpg"), tmp_path / "out")  # fmt: skip
    assert result.report["sft"]["train"] == 1 and not result.issues


def test_too_many_fields_is_a_counted_defect_and_the_row_is_left_out(tmp_path: Path) -> None:
    body = "a.jpg,A car, a bike and a bus.,train\nb.jpg,Fine.,train\n"
    result = build_datasets(captions(tmp_path, body), annotations(tmp_path, "a.jpg", "b.jpg"),
                            tmp_path / "out")  # fmt: skip
    (issue,) = result.issues
    assert (issue.kind, issue.line) == ("malformed", 2)
    assert "4 fields, the header has 3 (an unquoted comma?); row left out" in issue.message
    assert result.report["sft"]["train"] == 1 and result.report["issue_counts"] == {"malformed": 1}


def test_an_unterminated_quote_cannot_swallow_the_next_rows(tmp_path: Path) -> None:
    body = 'z.jpg,First.,train\na.jpg,"A sidewalk,train\nb.jpg,Second.,val\nc.jpg,Third.,test\n'
    rows, issues = read_captions_csv(captions(tmp_path, body))
    assert [r.image for r in rows] == ["z.jpg"]
    (issue,) = issues
    assert issue.kind == "malformed" and issue.line == 3
    assert "quoted field runs from line 3 to line 5" in issue.message
    # when nothing is left, the file is refused as a whole
    with pytest.raises(InputError, match="no usable row: 1 malformed"):
        read_captions_csv(captions(tmp_path, 'a.jpg,"A sidewalk,train\nb.jpg,Second.,val\n'))
    # a closed quote later on (the row count looks right) is caught as well
    body = 'a.jpg,"A sidewalk,train\nb.jpg,Second",val\nc.jpg,Third.,test\n'
    rows, issues = read_captions_csv(captions(tmp_path, body))
    assert [r.image for r in rows] == ["c.jpg"] and issues[0].line == 2


def test_a_field_over_128_kb_is_one_line_in_every_command(tmp_path, cli_in_process) -> None:
    big = captions(tmp_path, 'a.jpg,"' + "x" * 140_000 + '",train\n')
    notes = annotations(tmp_path, "a.jpg")
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(json.dumps({"image": "a.jpg", "text": "x"}) + "\n")
    for args in (
        ["data", "build", "--captions", big, "--annotations", notes, "--out", tmp_path / "o"],
        ["data", "validate", big],
        ["evaluate", "captions", "--predictions", predictions, "--references", big, "--split",
         "train"],
        ["evaluate", "safety", "--predictions", predictions, "--captions", big, "--annotations",
         notes, "--split", "train"],
    ):  # fmt: skip
        code, _, err = cli_in_process(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{big}:2: a field is longer than 131072 characters" in err


def test_an_image_captioned_in_two_splits_stays_in_the_first(tmp_path: Path) -> None:
    body = "x/a.jpg,Train caption.,train\ny/a.jpg,Test caption.,test\nb.jpg,B.,test\n"
    csv_path, notes = captions(tmp_path, body), annotations(tmp_path, "a.jpg", "b.jpg")
    result = build_datasets(csv_path, notes, tmp_path / "out")
    (issue,) = result.issues
    assert (issue.kind, issue.line, issue.image) == ("split_conflict", 3, "a.jpg")
    assert "first row's (row left out)" in issue.message
    images = {
        split: [json.loads(line)["image"] for line in
                (tmp_path / "out" / f"bvpi_sft_{split}.jsonl").read_text().splitlines()]
        for split in ("train", "test")
    }  # fmt: skip
    assert images == {"train": ["x/a.jpg"], "test": ["b.jpg"]}
    # the safety metrics' truth agrees: a.jpg is not a test image
    assert list(load_split_truth(csv_path, notes, "test").scenes) == ["b.jpg"]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\v", "\f"])
def test_a_caption_with_a_line_separator_builds_and_reads_back(tmp_path, separator) -> None:
    # ("\r" and "\n" inside a quoted cell make the row span lines: a malformed row, see above)
    body = f'a.jpg,"Left{separator}right.",train\nb.jpg,Second.,train\n'
    out = tmp_path / "out"
    build_datasets(captions(tmp_path, body), annotations(tmp_path, "a.jpg", "b.jpg"), out)
    records = load_records("bvpi", out / "bvpi_sft_train.jsonl", tmp_path)
    assert [r.line for r in records] == [1, 2]
    assert records[0].answer.endswith(f"Context: Left{separator}right.")


# --- images ----------------------------------------------------------------------------------


def test_a_16_bit_grey_png_reaches_the_model_as_its_picture(tmp_path: Path) -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    pixels = np.asarray(open_image(tmp_path / "g16.png"))
    assert pixels.shape == (64, 64, 3) and pixels.min() == 0 and pixels.max() == 255
    assert (pixels[..., 0] == np.rint(ramp / 257.0)).all()  # 65535 -> 255, not clipped at 255
    assert (pixels[..., 0] == pixels[..., 2]).all()  # grey stays grey


def test_a_decompression_bomb_is_refused_or_skipped_and_counted(tmp_path, png_header_only):
    png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    with pytest.raises(InputError, match=r"400,000,000 pixels is over the limit of 64,000,000"):
        open_image(tmp_path / "bomb.png")
    png_header_only(tmp_path / "big.png", 9000, 9000)  # under PIL's own stop, over ours
    with pytest.raises(InputError, match=r"9000 x 9000 pixels is over the limit of 64,000,000"):
        open_image(tmp_path / "big.png")
    assert MAX_IMAGE_PIXELS == 64_000_000
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    records = [ExampleRecord(name, tmp_path / name, "p", None, tmp_path / "d.jsonl", line)
               for line, name in enumerate(["ok.png", "bomb.png"], start=1)]  # fmt: skip
    kept, bad = check_images(records, "skip")
    assert [r.image for r in kept] == ["ok.png"] and len(bad) == 1
    assert "decompression bomb" in bad.rows[0][3]


def test_a_bad_image_path_says_what_it_is(tmp_path: Path) -> None:
    (tmp_path / "folder.png").mkdir()
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "text.png").write_text("not an image")
    expected = {
        "missing.png": "image not found",
        "folder.png": "is a folder, not an image",
        "pipe.png": "is a named pipe (FIFO), not an image",
        "loop.png": "image is a symbolic link loop",
        "dangling.png": "image is a broken symbolic link",
        "text.png": "unreadable image: UnidentifiedImageError",
    }
    for name, message in expected.items():
        with pytest.raises(InputError) as info:
            open_image(tmp_path / name, source=tmp_path / "d.jsonl", line=3)
        assert message in str(info.value) and "d.jsonl:3" in str(info.value), name
