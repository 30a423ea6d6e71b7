"""Flamingo training recipe: trainable set, embedding row mask, optimizer groups, gate
regularisation, text dropout."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from roadscene.data.examples import VisionTextExample
from roadscene.models.base import IGNORE_INDEX
from roadscene.models.flamingo.family import FlamingoFamily
from roadscene.models.flamingo.recipe import FIELD_LABELS, FlamingoTrainingSection
from roadscene.models.flamingo.tiny import build_tiny_flamingo
from roadscene.models.flamingo.training import (
    FlamingoTrainer,
    drop_field_labels,
    gate_penalty,
    label_token_sequences,
    parameter_groups,
    prepare_for_training,
)
from roadscene.train.collator import TrainingCollator

ANSWERS = [
    "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a person close on the left.",
    "Sidewalk: right. Road: left. RoadVsSidewalk: left_of. Nearby: no important close objects visible.",
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _examples(count: int = 4) -> list[VisionTextExample]:
    return [
        VisionTextExample(
            images=[Image.new("RGB", (40, 36), (60 * i % 256, 40, 200 - 30 * i))],
            prompt="Describe the scene for a blind pedestrian.",
            answer=ANSWERS[i % 2],
        )
        for i in range(count)
    ]


def _trainer(tmp_path, model, processor, recipe, max_steps: int = 2, lr: float = 1e-2):
    from transformers import TrainingArguments

    family = FlamingoFamily()
    features = [family.encode(processor, example) for example in _examples()]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        learning_rate=lr,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        use_cpu=True,
        seed=0,
    )
    return FlamingoTrainer(
        model=model,
        args=args,
        train_dataset=features,
        data_collator=TrainingCollator(family, processor),
        processing_class=processor,
        recipe=recipe,
    )


def test_only_the_recipe_parameters_train_and_other_embedding_rows_stay(tmp_path) -> None:
    model, processor = build_tiny_flamingo(seed=0, gate_init=0.5)
    recipe = FlamingoTrainingSection(text_dropout=0.0)
    prepare_for_training(model, recipe)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    expected = {
        name
        for name, _ in model.named_parameters()
        if name.startswith("perceiver.")
        or ".gated_cross_attn_layer." in name
        or name == "lang_encoder.transformer.wte.weight"
    }
    assert trainable == expected
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    _trainer(tmp_path, model, processor, recipe).train()
    after = dict(model.named_parameters())
    for name, old in before.items():
        changed = not torch.equal(after[name].detach(), old)
        if name == "lang_encoder.transformer.wte.weight":
            rows = (after[name].detach() != old).any(dim=1).nonzero().flatten().tolist()
            assert sorted(rows) == sorted(
                [model.config.endofchunk_token_id, model.config.media_token_id]
            )
        elif name in expected:
            assert changed, f"{name} did not train"
        else:
            assert not changed, f"frozen {name} changed"


def test_optimizer_groups_give_gates_the_multiplied_rate() -> None:
    model, _ = build_tiny_flamingo(seed=0)
    recipe = FlamingoTrainingSection(gate_lr_multiplier=50, cross_attention_weight_decay=0.1)
    prepare_for_training(model, recipe)
    gates, decayed, plain = parameter_groups(model, 3e-5, recipe)
    assert gates["lr"] == pytest.approx(1.5e-3) and gates["weight_decay"] == 0.0
    assert len(gates["params"]) == 2 * model.config.text_config.n_layers
    assert decayed["weight_decay"] == 0.1 and all(p.ndim == 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0
    assert any(p is model.get_input_embeddings().weight for p in plain["params"])
    total = sum(len(group["params"]) for group in (gates, decayed, plain))
    assert total == sum(p.requires_grad for p in model.parameters())


def test_gate_regularisation_is_added_to_the_loss(tmp_path) -> None:
    model, processor = build_tiny_flamingo(seed=0, gate_init=0.5)
    recipe = FlamingoTrainingSection(text_dropout=0.0, gate_regularization=0.2)
    prepare_for_training(model, recipe)
    trainer = _trainer(tmp_path, model, processor, recipe)
    batch = TrainingCollator(FlamingoFamily(), processor)(
        [FlamingoFamily().encode(processor, e) for e in _examples(2)]
    )
    model.train()
    with torch.no_grad():
        plain = model(**batch, use_cache=False).loss
        total = trainer.compute_loss(model, dict(batch))
    assert gate_penalty(model).item() == pytest.approx(torch.tanh(torch.tensor(0.5)).item() ** 2)
    assert total.item() == pytest.approx(plain.item() + 0.2 * gate_penalty(model).item(), rel=1e-6)


def test_text_dropout_removes_field_labels_only_from_the_answer() -> None:
    _, processor = build_tiny_flamingo(seed=0)
    family = FlamingoFamily()
    example = VisionTextExample(
        images=[Image.new("RGB", (32, 32))], prompt="Sidewalk: Road: what?", answer=ANSWERS[0]
    )
    batch = TrainingCollator(family, processor)([family.encode(processor, example)])
    sequences = label_token_sequences(processor.tokenizer)
    generator = torch.Generator().manual_seed(0)
    kept = drop_field_labels(batch, sequences, 0.0, processor.tokenizer.pad_token_id, generator)
    assert torch.equal(kept["input_ids"], batch["input_ids"])
    dropped = drop_field_labels(batch, sequences, 1.0, processor.tokenizer.pad_token_id, generator)
    text = processor.tokenizer.decode(dropped["input_ids"][0], skip_special_tokens=False)
    answer = text.split("Assistant:")[1]
    prompt = text.split("Assistant:")[0]
    assert "Sidewalk: Road: what?" in prompt  # prompt untouched
    for label in FIELD_LABELS:
        assert label not in answer
    assert answer.startswith(" left. right. right_of. a person close on the left.")
    removed = int(batch["attention_mask"].sum() - dropped["attention_mask"].sum())
    assert removed > 0
    assert dropped["input_ids"].shape == batch["input_ids"].shape
    assert (dropped["labels"][0, -removed:] == IGNORE_INDEX).all()
    supervised = dropped["labels"][0] != IGNORE_INDEX
    assert torch.equal(dropped["labels"][0][supervised], dropped["input_ids"][0][supervised])


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    model, processor = build_tiny_flamingo(seed=1, gate_init=0.5)
    prepare_for_training(model, FlamingoTrainingSection())
    family = FlamingoFamily()
    batch = TrainingCollator(family, processor)([family.encode(processor, e) for e in _examples(2)])
    model.train()

    def gradients() -> dict[str, torch.Tensor]:
        model.zero_grad()
        model(**batch, use_cache=False).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    calls: list[int] = []
    # a pre-hook: the recompute stops early, before the last module returns
    block = model.lang_encoder.transformer.blocks[0]
    block.mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    plain = gradients()
    assert len(calls) == 1
    model.activation_checkpointing_enable({"use_reentrant": False})
    checkpointed = gradients()
    assert len(calls) == 3  # forward + recompute in the backward pass
    assert plain.keys() == checkpointed.keys() and any(
        ".gated_cross_attn_layer." in n for n in plain
    )
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6)
