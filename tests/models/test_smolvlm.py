"""SmolVLM family: tiny checkpoint, loading, answer-only labels, padding, generation, LoRA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from roadscene.data.examples import VisionTextExample
from roadscene.errors import InputError
from roadscene.models import get_family, list_families
from roadscene.models.base import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _image(seed: int, size: tuple[int, int] = (120, 80)) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


@pytest.fixture(scope="module")
def loaded(tiny_smolvlm_dir: Path):
    return get_family("smolvlm").load(tiny_smolvlm_dir)


def test_registry_lists_valid_names_for_unknown_family() -> None:
    assert "smolvlm" in list_families()
    with pytest.raises(InputError, match="valid families: .*smolvlm"):
        get_family("llava")


def test_tiny_checkpoint_loads_through_auto_classes(tiny_smolvlm_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_smolvlm_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_smolvlm_dir)
    assert type(model).__name__ == "SmolVLMForConditionalGeneration"
    assert type(processor).__name__ == "SmolVLMProcessor"
    assert processor.chat_template and "Assistant:" in processor.chat_template
    tokenizer = processor.tokenizer
    for token in ("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"):
        assert tokenizer.convert_tokens_to_ids(token) != tokenizer.unk_token_id
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<image>")
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)


def test_unavailable_model_is_one_clear_input_error(tmp_path: Path) -> None:
    family = get_family("smolvlm")
    with pytest.raises(InputError) as err:
        family.load("HuggingFaceTB/SmolVLM2-2.2B-Instruct")
    message = str(err.value)
    assert "HuggingFaceTB/SmolVLM2-2.2B-Instruct" in message and "\n" not in message
    assert "huggingface-cli download" in message
    with pytest.raises(InputError, match="missing-folder"):
        family.load(tmp_path / "missing-folder")


def test_only_answer_tokens_carry_loss(loaded) -> None:
    family = get_family("smolvlm")
    processor = loaded.processor
    tokenizer = processor.tokenizer
    example = VisionTextExample(
        images=[_image(0)], prompt="Describe this road scene.", answer="Sidewalk: left."
    )
    features = family.encode(processor, example)
    tokens = tokenizer.convert_ids_to_tokens(features["input_ids"])
    supervised = [t for t, label in zip(tokens, features["labels"], strict=True) if label != -100]
    # Exactly the answer and the end-of-utterance token, nothing of prompt or image.
    assert tokenizer.convert_tokens_to_string(supervised) == " Sidewalk: left.<end_of_utterance>"
    prompt_len = len(tokens) - len(supervised)
    assert tokens[prompt_len - 1] == ":" and "Assistant" in tokenizer.convert_tokens_to_string(
        tokens[prompt_len - 6 : prompt_len]
    )
    assert (features["labels"][:prompt_len] == IGNORE_INDEX).all()
    assert tokens.count("<image>") == processor.image_seq_len
    # labels are the input ids on the answer positions
    answer = features["labels"][prompt_len:]
    assert torch.equal(answer, features["input_ids"][prompt_len:])

    # Padding: right for training, never supervised; left for generation.
    short = family.encode(processor, VisionTextExample(images=[_image(1)], prompt="Hi", answer="x"))
    batch = family.collate(processor, [features, short])
    pad = len(features["input_ids"]) - len(short["input_ids"])
    assert pad > 0
    assert (batch["labels"][1, -pad:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][1, -pad:] == 0).all()
    assert (batch["input_ids"][1, -pad:] == tokenizer.pad_token_id).all()
    left = family.collate(processor, [features, short], padding_side="left")
    assert (left["attention_mask"][1, :pad] == 0).all()
    assert torch.equal(left["input_ids"][1, pad:], short["input_ids"])
    fixed = family.collate(processor, [features, short], pad_to_length=96)
    assert fixed["input_ids"].shape == (2, 96)


def test_generate_returns_answer_text_only(loaded) -> None:
    family = get_family("smolvlm")
    examples = [
        VisionTextExample(images=[_image(i)], prompt="Describe this road scene.") for i in range(2)
    ]
    texts = family.generate(loaded.model, loaded.processor, examples, max_new_tokens=6)
    assert len(texts) == 2
    for text in texts:
        assert "Assistant" not in text and "<" not in text and "User" not in text


def test_lora_default_targets_only_text_attention(loaded) -> None:
    from peft import LoraConfig, get_peft_model

    family = get_family("smolvlm")
    fresh = get_family("smolvlm").load(loaded.source).model
    peft_model = get_peft_model(
        fresh, LoraConfig(r=4, lora_alpha=8, target_modules=family.lora_targets(None))
    )
    adapted = [
        n
        for n, m in peft_model.named_modules()
        if hasattr(m, "lora_A") and "lora_" not in n.split(".")[-1]
    ]
    assert adapted, "no module adapted"
    assert all(".text_model." in n and n.split(".")[-1] in {"q_proj", "v_proj"} for n in adapted)
    n_layers = fresh.config.text_config.num_hidden_layers
    assert len(adapted) == 2 * n_layers
    assert family.lora_targets(["k_proj"]) == r".*\.text_model\..*\.(k_proj)"


def test_encode_reuses_prompt_ids_but_matches_the_processor(loaded) -> None:
    family = get_family("smolvlm")
    processor = loaded.processor
    examples = [
        VisionTextExample(images=[_image(seed, size)], prompt=prompt)
        for seed, size, prompt in [
            (0, (120, 80), "Describe this road scene."),
            (1, (50, 90), "Describe this road scene."),  # same prompt: cached ids
            (2, (96, 96), "Another prompt."),
            (3, (300, 200), "Describe this road scene."),
        ]
    ]
    for example in examples:
        features = family.encode(processor, example)
        reference = processor(
            text=[family.prompt_text(processor, example)],
            images=[example.images],
            return_tensors="pt",
        )
        assert torch.equal(features["input_ids"], reference["input_ids"][0])
        assert torch.equal(features["pixel_values"], reference["pixel_values"][0])
        assert torch.equal(
            features["pixel_attention_mask"], reference["pixel_attention_mask"][0].bool()
        )
    assert len(family._prompt_ids[processor]) == 2


def test_qlora_without_bitsandbytes_is_a_clear_error(monkeypatch) -> None:
    import sys

    from roadscene.models.finetune import bnb_4bit_config

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import now raises ImportError
    with pytest.raises(InputError, match=r"QLoRA needs bitsandbytes.*roadscene\[qlora\]"):
        bnb_4bit_config()
