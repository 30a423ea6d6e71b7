"""The conversational export (JSONL and a Hugging Face dataset on disk) reads back as the rows
it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from roadscene.data.formats import export_messages, save_hf_dataset
from roadscene.data.records import load_records
from roadscene.errors import InputError


def test_messages_export_reads_back_as_the_same_records(
    tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    source = tiny_bvpi_dir / "bvpi_sft_train.jsonl"
    out = tmp_path / "export" / "train_messages.jsonl"
    assert export_messages("bvpi", source, out) == 8
    first = json.loads(out.read_text().splitlines()[0])
    assert first["messages"][0] == {
        "role": "user",
        "content": [{"type": "image"}, {"type": "text", "text": "Describe the scene."}],
    }
    assert first["messages"][1]["role"] == "assistant" and len(first["images"]) == 1
    assert not Path(first["images"][0]).is_absolute()  # relative to the file: it moves with it
    original = load_records("bvpi", source, tiny_bvpi_dir)
    again = load_records("bvpi", out, image_root="/nowhere")  # paths resolve against the file
    assert [(r.prompt, r.answer) for r in again] == [(r.prompt, r.answer) for r in original]
    assert [r.image_path.resolve() for r in again] == [r.image_path.resolve() for r in original]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": [], "images": ["a.png"]}, "'messages' must be a non-empty list"),
        ({"messages": [{"role": "user", "content": "hi"}], "images": []}, "'images' must list exactly one image path"),
        ({"messages": [{"role": "assistant", "content": "x"}], "images": ["a.png"]}, "expected a user turn"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "images": ["a.png"]}, "must hold one image part"),
    ],
)  # fmt: skip
def test_bad_conversational_rows_name_their_line(tmp_path: Path, row: dict, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError) as err:
        load_records("bvpi", path, tmp_path)
    assert f"{path}:2" in str(err.value) and message in str(err.value)


def test_hf_dataset_on_disk_holds_messages_and_embedded_images(
    tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    from datasets import load_from_disk

    out = tmp_path / "hf"
    assert save_hf_dataset("bvpi", tiny_bvpi_dir / "bvpi_sft_train.jsonl", out) == 8
    dataset = load_from_disk(str(out))
    assert dataset.column_names == ["messages", "images"] and len(dataset) == 8
    row = dataset[2]
    expected = load_records("bvpi", tiny_bvpi_dir / "bvpi_sft_train.jsonl", tiny_bvpi_dir)[2]
    assert row["messages"][1]["content"][0]["text"] == expected.answer
    original = Image.open(expected.image_path).convert("RGB")
    assert row["images"][0].convert("RGB").tobytes() == original.tobytes()


def test_export_of_a_row_without_its_image_fails_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "c.json"
    data.write_text(json.dumps([{"image": "gone.png", "caption": "a street"}]))
    with pytest.raises(InputError, match="gone.png"):
        export_messages("caption", data, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
