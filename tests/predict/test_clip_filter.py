"""The CLIP image-caption filter on a tiny random CLIP: kept / dropped counts equal the cosines
computed by hand, a rerun reads the cache, and a folder that is not CLIP is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roadscene.errors import InputError
from roadscene.models.clip import build_tiny_clip, embed_images, embed_texts, load_clip
from roadscene.predict.clip_filter import filter_by_clip

CAPTIONS = ["a red car on the left", "two people near a crossing", "an empty sidewalk",
            "a bicycle by the road", "cones ahead", "a tree and a sign", "night street",
            "a bus stop", "grass and a path", "a parked van"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip", seed=2)


@pytest.fixture(scope="module")
def caption_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pairs")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for index, caption in enumerate(CAPTIONS):
        pixels = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{index}.png")
        rows.append({"image": f"images/{index}.png", "caption": caption})
    rows.append({"image": "images/0.png", "caption": ""})  # nothing to score: kept, counted
    path = root / "captions_train.json"
    path.write_text(json.dumps(rows))
    return path


def _hand_cosines(clip_dir: Path, root: Path) -> list[float]:
    model, processor = load_clip(str(clip_dir))
    images = [Image.open(root / "images" / f"{i}.png").convert("RGB") for i in range(len(CAPTIONS))]
    return (
        (embed_images(model, processor, images) * embed_texts(model, processor, CAPTIONS))
        .sum(-1)
        .tolist()
    )


def test_kept_and_dropped_counts_follow_the_cosine_and_a_rerun_is_cached(
    tiny_clip_dir: Path, caption_file: Path, tmp_path: Path
) -> None:
    cosines = _hand_cosines(tiny_clip_dir, caption_file.parent)
    threshold = float(np.median(cosines))
    expected_kept = sum(c >= threshold for c in cosines)
    out = tmp_path / "filtered"
    first = filter_by_clip(
        caption_file, out, str(tiny_clip_dir), threshold=threshold, batch_size=4, progress=False
    )
    assert (first.kept, first.dropped, first.unscored) == (
        expected_kept + 1,
        len(CAPTIONS) - expected_kept,
        1,
    )
    assert first.computed == 2 * len(CAPTIONS)
    kept = json.loads((out / "captions_train.json").read_text())  # the input's format
    dropped = [
        json.loads(line) for line in (out / "captions_train.dropped.jsonl").read_text().splitlines()
    ]
    assert len(kept) == first.kept and len(dropped) == first.dropped
    by_caption = dict(zip(CAPTIONS, cosines, strict=True))
    for row in dropped:
        assert row["clip_score"] == pytest.approx(by_caption[row["caption"]], abs=1e-5)
        assert row["clip_score"] < threshold
    report = json.loads((out / "filter_report.json").read_text())
    assert report["kept"] == first.kept and report["unscored_kept"] == 1
    assert sum(report["histogram"]["counts"]) == len(CAPTIONS)
    assert (out / "clip_scores.png").read_bytes()[:4] == b"\x89PNG"

    again = filter_by_clip(
        caption_file, out, str(tiny_clip_dir), threshold=threshold, progress=False
    )
    assert again.computed == 0  # every embedding came from the cache; no model was loaded
    assert (again.kept, again.dropped) == (first.kept, first.dropped)


def test_structured_answers_are_scored_by_their_context_caption() -> None:
    from roadscene.predict.clip_filter import caption_text

    row = {
        "response": "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: no important close objects visible. Context: a quiet street."
    }
    assert caption_text(row) == "a quiet street."
    assert (
        caption_text(
            {"response": "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: none."}
        )
        is None
    )


def test_a_folder_that_is_not_clip_is_one_clear_error(
    caption_file: Path, tmp_path: Path, run_cli
) -> None:
    from transformers import LlamaConfig

    folder = tmp_path / "llama"
    LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=2).save_pretrained(folder)  # fmt: skip
    with pytest.raises(InputError, match="not a CLIP model .*model_type 'llama'"):
        load_clip(str(folder))
    result = run_cli(
        "data",
        "filter",
        str(caption_file),
        "--clip-model",
        str(folder),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert (
        "not a CLIP model" in result.stderr
        and not (tmp_path / "out" / "captions_train.json").exists()
    )
