"""Flamingo family: prompt formats, answer-only labels, few-shot prompts and shot selection."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from roadscene.data.examples import VisionTextExample
from roadscene.data.records import ExampleRecord
from roadscene.errors import InputError
from roadscene.models.base import IGNORE_INDEX
from roadscene.models.flamingo.family import FlamingoFamily, prompt_text
from roadscene.predict.fewshot import ShotSelector
from roadscene.targets import CAPTION_PROMPT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded(tiny_flamingo_dir: Path):
    return FlamingoFamily().load(tiny_flamingo_dir, device="cpu")


def _image(shade: int) -> Image.Image:
    return Image.new("RGB", (48, 40), (shade, 255 - shade, (3 * shade) % 256))


def test_instruction_example_supervises_only_the_answer(loaded) -> None:
    processor = loaded.processor
    example = VisionTextExample(images=[_image(10)], prompt="Describe.", answer="Sidewalk: left.")
    features = FlamingoFamily().encode(processor, example)
    tokenizer = processor.tokenizer
    assert tokenizer.decode(features["input_ids"]) == (
        "<image>User: Describe.\nAssistant: Sidewalk: left.<|endofchunk|>"
    )
    supervised = features["labels"] != IGNORE_INDEX
    assert tokenizer.decode(features["labels"][supervised]) == " Sidewalk: left.<|endofchunk|>"
    assert not (features["labels"] == processor.media_token_id).any()
    assert features["vision_x"].shape == (1, 1, 3, 32, 32)


def test_caption_example_uses_the_output_format(loaded) -> None:
    example = VisionTextExample(images=[_image(10)], prompt=CAPTION_PROMPT, answer="A street.")
    ids = FlamingoFamily().encode(loaded.processor, example)["input_ids"]
    assert loaded.processor.tokenizer.decode(ids) == "<image>Output:A street.<|endofchunk|>"


def test_few_shot_prompt_puts_demonstration_images_in_order(loaded) -> None:
    processor = loaded.processor
    demonstrations = [
        VisionTextExample(images=[_image(40)], prompt=CAPTION_PROMPT, answer="first"),
        VisionTextExample(images=[_image(140)], prompt=CAPTION_PROMPT, answer="second"),
    ]
    query = VisionTextExample(
        images=[_image(240)], prompt=CAPTION_PROMPT, demonstrations=demonstrations
    )
    assert prompt_text(query) == (
        "<image>Output:first<|endofchunk|>\n<image>Output:second<|endofchunk|>\n<image>Output:"
    )
    features = FlamingoFamily().encode(processor, query)
    expected = processor.pixels([_image(40), _image(140), _image(240)])  # (3, 3, H, W)
    assert torch.equal(features["vision_x"][:, 0], expected)
    assert "labels" not in features
    # The i-th <image> token is followed by the i-th demonstration's text.
    text_time = (features["input_ids"] == processor.media_token_id).cumsum(0)
    tokenizer = processor.tokenizer
    segment = lambda j: tokenizer.decode(features["input_ids"][text_time == j])  # noqa: E731
    assert segment(1).startswith("<image>Output:first")
    assert segment(2).startswith("<image>Output:second")
    assert segment(3) == "<image>Output:"


def test_zero_and_few_shot_generation_run_batched(loaded) -> None:
    family = FlamingoFamily()
    demos = [VisionTextExample(images=[_image(9)], prompt="Describe.", answer="Sidewalk: left.")]
    queries = [
        VisionTextExample(images=[_image(50)], prompt="Describe.", demonstrations=demos),
        VisionTextExample(images=[_image(90)], prompt="Describe the scene.", demonstrations=demos),
    ]
    answers = family.generate(
        loaded.model, loaded.processor, queries, max_new_tokens=4, num_beams=2
    )
    alone = family.generate(
        loaded.model, loaded.processor, queries[1:], max_new_tokens=4, num_beams=2
    )
    assert len(answers) == 2 and answers[1] == alone[0]
    zero_shot = family.generate(
        loaded.model,
        loaded.processor,
        [VisionTextExample(images=[_image(5)], prompt="Describe.")],
        max_new_tokens=3,
    )
    assert len(zero_shot) == 1


def _records(tmp_path: Path, shades: list[int]) -> list[ExampleRecord]:
    records = []
    for line, shade in enumerate(shades, start=1):
        path = tmp_path / f"img{line}.png"
        Image.new("RGB", (32, 32), (shade, shade, shade)).save(path)
        records.append(
            ExampleRecord(
                image=path.name,
                image_path=path,
                prompt=CAPTION_PROMPT,
                answer=f"caption {line}",
                source=tmp_path / "train.json",
                line=line,
            )
        )
    return records


def test_random_shots_are_deterministic_and_never_the_query(tmp_path: Path) -> None:
    pool = _records(tmp_path, [0, 50, 100, 150, 200])
    selector = ShotSelector(pool, 3, "random", seed=7)
    first = selector.select(pool[:2])
    assert first == ShotSelector(pool, 3, "random", seed=7).select(pool[:2])
    for query, chosen in zip(pool[:2], first, strict=True):
        assert len({r.line for r in chosen}) == 3
        assert query.line not in {r.line for r in chosen}


def test_similar_shots_are_nearest_by_image_embedding_closest_last(tmp_path: Path) -> None:
    pool = _records(tmp_path, [0, 60, 120, 250])
    query_dir = tmp_path / "query"
    query_dir.mkdir()
    query = _records(query_dir, [110])[0]

    def brightness(images):  # 2-d embedding whose angle follows the grey level
        level = torch.tensor([img.convert("L").getpixel((0, 0)) / 255.0 for img in images])
        return torch.stack([torch.cos(level), torch.sin(level)], dim=-1)

    chosen = ShotSelector(pool, 2, "similar", embed_images=brightness).select([query])[0]
    assert [r.line for r in chosen] == [2, 3]  # 60 then 120: the closest (120) next to the query
    # A query that is itself in the pool never gets its own image back.
    own = ShotSelector(pool, 1, "similar", embed_images=brightness).select([pool[2]])[0]
    assert own[0].line != pool[2].line


def test_too_few_shot_rows_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="3 shots need more than 3"):
        ShotSelector(_records(tmp_path, [0, 1, 2]), 3, "random")


def _bvpi_file(path: Path, shades: list[int]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, shade in enumerate(shades):
        image = path.parent / f"{path.stem}-{index}.png"
        Image.new("RGB", (40, 30), (shade, 100, 255 - shade)).save(image)
        response = f"Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: {index} cars."
        lines.append(json.dumps({"image": image.name, "prompt": "Describe.", "response": response}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_predict_file_with_shots_and_zero_shot(tiny_flamingo_dir: Path, tmp_path: Path) -> None:
    import json

    from roadscene.predict.predictor import ModelCard
    from roadscene.predict.runner import predict_file
    from roadscene.predict.settings import PredictSettings

    train = _bvpi_file(tmp_path / "train" / "bvpi_sft_train.jsonl", [0, 60, 120, 180])
    test = _bvpi_file(tmp_path / "test" / "bvpi_sft_test.jsonl", [30, 200, 90])
    card = ModelCard.read(tiny_flamingo_dir)
    common = {"batch_size": 2, "max_new_tokens": 4}
    outputs = []
    for name in ("a", "b"):
        settings = PredictSettings(
            **common, shots=2, shots_from=train, shot_selection="random", shot_seed=3
        )
        predict_file(test, tmp_path / f"{name}.jsonl", card, settings, progress=False)
        outputs.append(
            [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        )
    assert outputs[0] == outputs[1]  # same shots, same answers
    train_images = {f"bvpi_sft_train-{i}.png" for i in range(4)}
    for row in outputs[0]:
        assert len(row["shots"]) == 2 and set(row["shots"]) <= train_images
    similar = PredictSettings(**common, shots=1, shots_from=train, shot_selection="similar")
    predict_file(test, tmp_path / "s.jsonl", card, similar, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [len(row["shots"]) for row in rows] == [1, 1, 1]
    predict_file(test, tmp_path / "zero.jsonl", card, PredictSettings(**common), progress=False)
    zero = [json.loads(line) for line in (tmp_path / "zero.jsonl").read_text().splitlines()]
    assert len(zero) == 3 and all("shots" not in row for row in zero)


def test_shot_options_are_checked_before_any_model_work(tmp_path: Path) -> None:
    from roadscene.predict.predictor import ModelCard
    from roadscene.predict.runner import predict_file
    from roadscene.predict.settings import PredictSettings

    test = _bvpi_file(tmp_path / "bvpi_sft_test.jsonl", [1])
    # No model behind this card: any model work would fail differently.
    card = ModelCard(base=str(tmp_path / "no-model"), adapter=None, family="flamingo")
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match="--shots needs --shots-from"):
        predict_file(test, out, card, PredictSettings(shots=2), progress=False)
    with pytest.raises(InputError, match="--shots-from needs --shots"):
        predict_file(test, out, card, PredictSettings(shots=0, shots_from=test), progress=False)
    with pytest.raises(
        InputError, match=r"--shot-selection: .*'random' or 'similar' \(got 'nearest'\)"
    ):
        PredictSettings.from_options(shots=2, shots_from=test, shot_selection="nearest")
    assert not out.exists()
    zero_shot = PredictSettings.from_options(shots=0, shots_from=None).for_task("bvpi")
    assert (zero_shot.shots, zero_shot.shots_from) == (0, None)


def test_tiny_flamingo_takes_size_options_and_refuses_unknown_ones(tmp_path):
    from roadscene.models import get_family
    from roadscene.models.flamingo.configuration_flamingo import FlamingoConfig

    family = get_family("flamingo")
    out = family.build_tiny(
        tmp_path / "m", sizes={"image_size": 48, "patch_size": 12, "num_latents": 4}
    )
    config = FlamingoConfig.from_pretrained(out)
    assert (config.vision_config.image_size, config.vision_config.patch_size) == (48, 12)
    assert config.perceiver_num_latents == 4
    loaded = family.load(str(out))
    assert loaded.processor.image_processor.crop_size["height"] == 48
    with pytest.raises(InputError, match="scale_factor"):
        family.build_tiny(tmp_path / "n", sizes={"scale_factor": 2})
