"""Caption metrics: pairing and cleaning, SPICE jar detection, CLIPScore, the published CIDEr."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest

from roadscene.errors import InputError
from roadscene.metrics.captions import CaptionPair, build_caption_pairs, read_references
from roadscene.metrics.clipscore import clip_scores
from roadscene.metrics.records import PredictionRecord, clean_text
from roadscene.metrics.spice import SPICE_CORENLP_JARS, SPICE_JARS_ENV, find_spice_jars

CAPTION_FILE = "predictions/smol_caption_base_test.json"


def test_clean_auto_keeps_the_answer_after_the_last_chat_marker() -> None:
    text = "User:<image>Describe.\nAssistant: first\nUser: again\nAssistant:  The road.  "
    assert clean_text(text, "auto") == "The road."
    assert clean_text(text, "none") == text
    assert clean_text("no marker here ", "auto") == "no marker here "
    with pytest.raises(InputError, match="auto, none"):
        clean_text("x", "strip")


def test_pairs_with_references_count_missing_and_unknown_images() -> None:
    references = {"a.jpg": ("imgs/a.jpg", "ref a"), "b.jpg": ("imgs/b.jpg", "ref b")}
    records = [
        PredictionRecord("imgs/a.jpg", "User: hi Assistant: pred a", line=1),
        PredictionRecord("imgs/zzz.jpg", "stray", line=2),
    ]
    pairs, counts = build_caption_pairs(records, references)
    assert [(p.image, p.prediction, p.missing) for p in pairs] == [
        ("imgs/a.jpg", "pred a", False),
        ("imgs/b.jpg", "", True),
    ]
    assert (counts["missing"], counts["unknown_images"]) == (1, 1)
    assert pairs[0].raw_prediction == "User: hi Assistant: pred a"


def test_pairs_without_references_need_a_target_and_refuse_duplicates() -> None:
    with pytest.raises(InputError, match="target"):
        build_caption_pairs([PredictionRecord("a.jpg", "x", line=7)], None)
    records = [
        PredictionRecord("a.jpg", "x", line=1, extra={"target": "t"}),
        PredictionRecord("a.jpg", "y", line=2, extra={"target": "t"}),
    ]
    with pytest.raises(InputError, match="a.jpg") as err:
        build_caption_pairs(records, None)
    assert err.value.line == 2
    pairs, counts = build_caption_pairs(records, None, on_duplicate="last")
    assert [p.prediction for p in pairs] == ["y"] and counts["duplicates"] == 1


def test_references_from_captions_csv_filtered_by_split(sensation_dir: Path) -> None:
    references = read_references(sensation_dir / "captions.csv", split="test")
    assert len(references) == 333
    predictions = json.loads((sensation_dir / CAPTION_FILE).read_text(encoding="utf-8"))
    first = predictions[0]
    key = first["image_path"].rsplit("/", 1)[-1]
    assert references[key] == (first["image_path"], first["target"])
    with pytest.raises(InputError, match="split"):
        read_references(sensation_dir / "captions.csv", split="nope")
    with pytest.raises(InputError, match="--split"):
        read_references(sensation_dir / "captions.csv")


def test_spice_is_unavailable_without_corenlp_and_never_downloaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(SPICE_JARS_ENV, raising=False)
    import pycocoevalcap.spice

    lib = Path(pycocoevalcap.spice.__file__).parent / "lib"
    if all((lib / name).is_file() for name in SPICE_CORENLP_JARS):
        pytest.skip("CoreNLP jars are installed in pycocoevalcap here")
    folder, reason = find_spice_jars(None)
    assert folder is None
    assert "stanford-corenlp-3.6.0.jar" in reason and "never" in reason
    # a folder the user names must hold both jars
    (tmp_path / SPICE_CORENLP_JARS[0]).write_bytes(b"")
    with pytest.raises(InputError, match="models"):
        find_spice_jars(tmp_path)
    (tmp_path / SPICE_CORENLP_JARS[1]).write_bytes(b"")
    assert find_spice_jars(tmp_path) == (tmp_path, None)
    monkeypatch.setenv(SPICE_JARS_ENV, str(tmp_path))
    assert find_spice_jars(None) == (tmp_path, None)
    with pytest.raises(InputError, match="not found"):
        find_spice_jars(tmp_path / "absent")


# --- CLIPScore with a tiny random CLIP ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP (32 px images, width 32, one layer) and a character-level CLIP
    tokenizer, saved to a local folder."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase + string.digits + ".,;:'":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        projection_dim=16,
    )
    torch.manual_seed(2)  # a seed whose cosines have both signs, so the clamp is exercised
    folder = tmp_path_factory.mktemp("tiny_clip") / "clip"
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    (root / "testing" / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(4):
        pixels = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "testing" / "images" / f"img{index}.jpg")
    return root


def _hand_clipscore(folder: Path, pairs: list[CaptionPair], root: Path) -> list[float]:
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    model, processor = (
        CLIPModel.from_pretrained(folder).eval(),
        CLIPProcessor.from_pretrained(folder),
    )

    def tensor(output: Any) -> torch.Tensor:
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    scores = []
    with torch.no_grad():
        for pair in pairs:
            image = Image.open(root / pair.image).convert("RGB")
            pixels = processor(images=image, return_tensors="pt")["pixel_values"]
            tokens = processor(text=[pair.prediction], return_tensors="pt", padding=True)
            image_emb = tensor(model.get_image_features(pixel_values=pixels))[0]
            text_emb = tensor(model.get_text_features(**tokens))[0]
            cos = torch.nn.functional.cosine_similarity(image_emb, text_emb, dim=0).item()
            scores.append(100 * max(cos, 0.0))
    return scores


def test_clipscore_equals_the_formula_from_the_models_own_embeddings(
    tiny_clip: Path, image_root: Path
) -> None:
    texts = ["a red car.", "two people on the left", "sidewalk ahead", "a bicycle, 3 cones"]
    pairs = [
        CaptionPair(f"testing/images/img{i}.jpg", text, "ref", text) for i, text in enumerate(texts)
    ]
    got = clip_scores(pairs, image_root, str(tiny_clip))
    expected = _hand_clipscore(tiny_clip, pairs, image_root)
    assert got == pytest.approx(expected, abs=1e-4)
    assert any(value == 0.0 for value in expected) and any(value > 0 for value in expected)
    assert sum(got) / len(got) == pytest.approx(sum(expected) / len(expected), abs=1e-4)
    empty = CaptionPair("testing/images/img0.jpg", "", "ref", "User: hi Assistant:")
    assert clip_scores([empty], image_root, str(tiny_clip)) == [0.0]  # no answer, no credit


def test_clipscore_missing_image_is_an_error_naming_the_path(
    tiny_clip: Path, image_root: Path
) -> None:
    pairs = [CaptionPair("testing/images/absent.jpg", "a car", "ref", "a car")]
    with pytest.raises(InputError, match="absent.jpg") as err:
        clip_scores(pairs, image_root, str(tiny_clip))
    assert "image not found" in str(err.value)


def test_clip_model_that_cannot_load_is_an_input_error(image_root: Path, tmp_path: Path) -> None:
    pairs = [CaptionPair("testing/images/img0.jpg", "a car", "ref", "a car")]
    with pytest.raises(InputError, match="cannot load CLIP model"):
        clip_scores(pairs, image_root, str(tmp_path / "no-model"))


def test_spice_failure_is_reported_with_the_java_cause(tmp_path: Path) -> None:
    from roadscene.metrics.spice import run_spice

    for name in SPICE_CORENLP_JARS:  # placeholders: SPICE starts, then misses CoreNLP classes
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(RuntimeError, match="SPICE failed.*NoClassDefFoundError"):
        run_spice({0: ["a man walks"]}, {0: ["a man walking"]}, tmp_path)
