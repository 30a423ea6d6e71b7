"""What every registered model family does the same way, run over `list_families()`: a tiny model
built offline loads through its family's detection, only answer tokens carry loss, batches equal
one-by-one answers, wrong sizes and wrong folders are clear errors, and training works with every
fine-tuning method the family takes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from roadscene.data.examples import VisionTextExample
from roadscene.errors import InputError
from roadscene.models import detect_family, get_family, list_families
from roadscene.models.base import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = list_families()
ANSWER = (
    "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a person close on the left."
)


def _images() -> list:
    from PIL import Image

    sizes = [(64, 48), (40, 72), (96, 96)]
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    return [Image.new("RGB", size, colour) for size, colour in zip(sizes, colours, strict=True)]


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request: pytest.FixtureRequest, tiny_model_dir_for):
    """(family, loaded model) for each registered family's tiny model (fp32, CPU)."""
    family = get_family(request.param)
    return family, family.load(tiny_model_dir_for(request.param), device="cpu")


@pytest.mark.parametrize("name", FAMILIES)
def test_tiny_model_folder_finds_its_family(name: str, tiny_model_dir_for) -> None:
    folder = tiny_model_dir_for(name)
    assert detect_family(folder).name == name
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] in get_family(name).model_types


@pytest.mark.parametrize("name", FAMILIES)
def test_a_folder_of_another_family_is_a_clear_error(name: str, tiny_model_dir_for) -> None:
    other = next(n for n in FAMILIES if n != name)
    with pytest.raises(InputError, match=f"not a {name} model"):
        get_family(name).load(tiny_model_dir_for(other), device="cpu")


@pytest.mark.parametrize("name", FAMILIES)
def test_unknown_and_bad_sizes_are_errors(name: str, tmp_path: Path) -> None:
    family = get_family(name)
    with pytest.raises(InputError, match=f"the {name} family has no size 'no_such_size'"):
        family.build_tiny(tmp_path / "m", sizes={"no_such_size": 3})
    with pytest.raises(InputError, match="size 'image_size'"):
        family.sizes({"image_size": -1})
    assert not (tmp_path / "m").exists()
    # the demo's sizes are valid sizes of the family
    family.sizes(family.demo_sizes)


def test_unknown_model_type_names_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(InputError, match="model type 'gpt2' belongs to no roadscene family"):
        detect_family(tmp_path)


def test_hub_id_not_in_the_cache_asks_for_the_family() -> None:
    with pytest.raises(InputError, match="pass --family"):
        detect_family("someone/unknown-vlm")
    # a family's own default id needs no lookup
    for name in FAMILIES:
        assert detect_family(get_family(name).default_model_id).name == name


def test_only_answer_tokens_carry_loss(family_model) -> None:
    family, loaded = family_model
    [image] = _images()[:1]
    features = family.encode(
        loaded.processor, VisionTextExample(images=[image], prompt="Describe.", answer=ANSWER)
    )
    labels = features["labels"]
    supervised = features["input_ids"][labels != IGNORE_INDEX]
    # exactly a suffix: the answer tokens, then the family's end-of-answer token
    first = int((labels != IGNORE_INDEX).nonzero()[0])
    assert torch.equal(labels[first:], features["input_ids"][first:])
    assert int(supervised[-1]) in family.stop_token_ids(loaded.processor)
    tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
    assert tokenizer.decode(supervised, skip_special_tokens=True).strip() == ANSWER
    # without an answer: the same prompt, no labels
    prompt_only = family.encode(
        loaded.processor, VisionTextExample(images=[image], prompt="Describe.")
    )
    assert "labels" not in prompt_only
    assert torch.equal(prompt_only["input_ids"], features["input_ids"][:first])


def test_batched_generation_equals_one_by_one(family_model) -> None:
    family, loaded = family_model
    examples = [VisionTextExample(images=[im], prompt="Describe the scene.") for im in _images()]
    together = family.generate(loaded.model, loaded.processor, examples, max_new_tokens=8)
    alone = [
        family.generate(loaded.model, loaded.processor, [ex], max_new_tokens=8)[0]
        for ex in examples
    ]
    assert together == alone


def test_padded_batch_loss_equals_the_examples_losses(
    family_model, token_weighted_loss_check
) -> None:
    """Right padding carries no loss: the batch's token-weighted loss is the examples'."""
    family, loaded = family_model
    examples = [
        VisionTextExample(images=[im], prompt="Describe.", answer=ANSWER[: 20 + 15 * i])
        for i, im in enumerate(_images())
    ]
    features = [family.encode(loaded.processor, ex) for ex in examples]
    token_weighted_loss_check(family, loaded, features)


def test_generate_returns_answer_text_only(family_model) -> None:
    family, loaded = family_model
    example = VisionTextExample(images=_images()[:1], prompt="Describe the scene.")
    [text] = family.generate(loaded.model, loaded.processor, [example], max_new_tokens=6)
    assert "Describe the scene" not in text and "<" not in text
    # the example itself is not changed (its answer stays None)
    assert replace(example).answer is None


TRAINING_CASES = [
    (name, method) for name in FAMILIES for method in get_family(name).finetune_methods
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "method"), TRAINING_CASES)
def test_training_updates_what_the_method_trains(
    name: str, method: str, tiny_model_dir_for, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    from roadscene.train.config import load_config
    from roadscene.train.runner import run_training

    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    overrides = [
        f"model.family={name}",
        f"model.name_or_path={tiny_model_dir_for(name)}",
        f"finetune.method={method}",
        f"data.data_dir={tiny_bvpi_dir}",
        "data.eval_split=null",
        f"train.output_dir={tmp_path / 'run'}",
        "train.max_steps=2",
        "train.batch_size=4",
        "train.grad_accum=1",
        "train.learning_rate=0.01",
        "train.num_threads=1",
        "generation_eval.enabled=false",
    ]
    result = run_training(load_config(None, overrides))
    saved = {path.name for path in result.model_dir.iterdir()}
    if method == "full":
        assert "model.safetensors" in saved
    else:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= saved
    assert {"roadscene_config.yaml", "roadscene_prompts.json"} <= saved
    summary = json.loads((result.model_dir / "training_summary.json").read_text())
    assert summary["global_step"] == 2
    assert torch.isfinite(torch.tensor(summary["metrics"]["train_loss"]))


def test_fsdp_shards_every_transformer_layer(family_model) -> None:
    """accelerate's FSDP2 wrap policy over the family's `fsdp_wrap_classes` finds every class
    in the model and makes each vision and language layer (each `...Layer` / `...Block` of a
    layer list) a shard unit of its own."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    family, loaded = family_model
    model = loaded.model
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=list(family.fsdp_wrap_classes),
    )
    policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
    units = {name for name, module in model.named_modules() if policy(module)}
    layers = {
        f"{list_name}.{index}"
        for list_name, modules in model.named_modules()
        if isinstance(modules, torch.nn.ModuleList)
        for index, module in enumerate(modules)
        if type(module).__name__.endswith(("Layer", "Block"))
    }
    assert layers and layers <= units
    # no unit inside another: each is one layer (or the perceiver), not a tower
    assert not [a for a in units for b in units if a != b and a.startswith(b + ".")]
