"""Weather augmentation: the MIT library, config errors, seeding, and the flip's label mirroring."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from roadscene.data.augment import (
    TRANSFORMS,
    AugmentedExamples,
    Augmenter,
    AugmentSection,
    load_albumentations,
    mirror_example,
    weather_preset,
)
from roadscene.data.examples import VisionTextExample
from roadscene.data.records import ANNOTATED_PROMPT, annotation_json
from roadscene.data.synth import SceneDistribution, image_seed, render_scene, sample_scenes
from roadscene.errors import InputError
from roadscene.schema import SceneAnnotation
from roadscene.targets import (
    cue_for_scene,
    mirror_text,
    parse_response,
    render_response,
    scene_from_parsed,
)
from roadscene.train.config import load_config

SCENES = list(sample_scenes(SceneDistribution.builtin().with_object_rate(0.8), 40, seed=3))


def _example(
    index: int, caption: str | None = "A path runs on the left, the road right."
) -> VisionTextExample:
    scene = SCENES[index]
    image = Image.fromarray(render_scene(scene, image_seed(3, index)))
    response = render_response(scene, caption)
    return VisionTextExample([image], "Describe the scene.", response, meta={"response": response})


def test_the_installed_albumentations_is_the_mit_release_and_never_calls_home() -> None:
    load_albumentations()
    assert metadata.version("albumentations") == "2.0.8"
    assert "MIT" in (metadata.metadata("albumentations").get("License") or "") + " ".join(
        metadata.metadata("albumentations").get_all("Classifier") or []
    )
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution("albumentationsx")  # AGPL, same import name
    assert os.environ["NO_ALBUMENTATIONS_UPDATE"] == "1"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.augment={transforms: {snow: {p: 0.5}}}", "unknown transform 'snow'; allowed: color_jitter"),
        ("data.augment={transforms: {rain: {p: 1.5}}}", "'data.augment.transforms.rain.p': must be in [0, 1]; got 1.5"),
        ("data.augment={hflip: -0.1}", "'data.augment.hflip': must be in [0, 1]; got -0.1"),
        ("data.augment={transforms: {fog: {p: 0.5}}}", None),
    ],
)  # fmt: skip
def test_augment_config_errors_are_one_line(override: str, message: str | None) -> None:
    if message is None:
        config = load_config(None, [override, "model.family=smolvlm"])
        assert config.data.augment.transforms["fog"].p == 0.5 and config.data.augment.active
        return
    with pytest.raises(InputError) as err:
        load_config(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_augmentation_and_encoded_cache_cannot_be_combined() -> None:
    with pytest.raises(InputError, match="cache_encoded"):
        load_config(None, ["data.augment={hflip: 0.5}", "data.cache_encoded=true"])


def test_the_same_seed_gives_the_same_pixels_in_any_order() -> None:
    examples = [_example(i) for i in range(12)]
    section = AugmentSection(transforms=weather_preset(0.5, 0.8).transforms, hflip=0.5)
    forward = AugmentedExamples(examples, Augmenter(section, seed=7), "bvpi")
    backward = AugmentedExamples(examples, Augmenter(section, seed=7), "bvpi")
    first = [forward[i] for i in range(12)]
    np.random.seed(123)  # the global generators play no part
    second = [backward[i] for i in reversed(range(12))][::-1]
    for a, b in zip(first, second, strict=True):
        assert a.images[0].tobytes() == b.images[0].tobytes()
        assert a.answer == b.answer and a.meta["augment"] == b.meta["augment"]
    fired = [name for a in first for name in a.meta["augment"]["transforms"]]
    assert len(set(fired)) >= 6  # transforms fire independently of each other
    assert len({a.meta["augment"]["hflip"] for a in first}) == 2
    other_seed = AugmentedExamples(examples, Augmenter(section, seed=8), "bvpi")
    assert any(other_seed[i].images[0].tobytes() != first[i].images[0].tobytes() for i in range(12))
    forward.set_epoch(1)  # another epoch sees other draws
    assert any(forward[i].images[0].tobytes() != first[i].images[0].tobytes() for i in range(12))
    assert examples[0].images[0].tobytes() == _example(0).images[0].tobytes()  # input untouched


def test_workers_of_a_dataloader_give_the_same_pixels() -> None:
    import torch

    examples = [_example(i) for i in range(8)]
    dataset = AugmentedExamples(examples, Augmenter(weather_preset(0.6, 0.7), seed=1), "bvpi")

    def pixels(workers: int) -> list[bytes]:
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, shuffle=False, num_workers=workers
        )
        return [item.images[0].tobytes() for item in loader]

    assert pixels(0) == pixels(2)


def test_every_transform_changes_the_image_at_full_probability() -> None:
    example = _example(1)
    for name in TRANSFORMS:
        section = AugmentSection(transforms={name: {"p": 1.0, "strength": 0.8}})
        out = Augmenter(section, seed=0)(example, 0, task="bvpi")
        assert out.meta["augment"]["transforms"] == [name]
        assert out.images[0].tobytes() != example.images[0].tobytes(), name


@pytest.mark.parametrize("index", range(len(SCENES)))
def test_a_flipped_example_has_the_target_of_the_mirrored_annotation(index: int) -> None:
    caption = "Trees on the left, a shop on the Right."
    example = _example(index, caption)
    flipped = Augmenter(AugmentSection(hflip=1.0), seed=0)(example, index, task="bvpi")
    assert flipped.meta["augment"]["hflip"] is True
    assert flipped.images[0].tobytes() == ImageOps.mirror(example.images[0]).tobytes()
    mirrored: SceneAnnotation = SCENES[index].mirrored()
    assert flipped.answer == render_response(mirrored, "Trees on the right, a shop on the Left.")
    # the fields, objects, relation and cue of the answer are those of the mirrored scene
    parsed = parse_response(flipped.answer)
    assert (parsed.sidewalk, parsed.road, parsed.relation) == (
        mirrored.sidewalk,
        mirrored.road,
        mirrored.relation,
    )
    assert cue_for_scene(scene_from_parsed(parsed)) == cue_for_scene(mirrored)
    # the annotated task: annotation in the prompt and cue + context rebuilt from the mirror
    annotated = mirror_example(example, "annotated")
    annotation, answer = annotation_json(
        render_response(mirrored, "Trees on the right, a shop on the Left.")
    )
    assert annotated.prompt == ANNOTATED_PROMPT.format(annotation=annotation)
    assert annotated.answer == answer
    # flipping twice gives the original back
    assert mirror_example(mirror_example(example, "bvpi"), "bvpi").answer == example.answer


def test_the_cue_of_a_mirrored_scene_is_the_mirrored_cue() -> None:
    swap = {"step_left": "step_right", "step_right": "step_left", "keep_left": "keep_right",
            "keep_right": "keep_left"}  # fmt: skip
    for scene in SCENES:
        cue, mirrored = cue_for_scene(scene), cue_for_scene(scene.mirrored())
        assert mirrored.action == swap.get(cue.action, cue.action)
        if cue.action != "step_either":  # "step around it, left or right" reads the same
            assert mirrored.text == mirror_text(cue.text)


def test_caption_answers_have_left_and_right_swapped() -> None:
    example = VisionTextExample([Image.new("RGB", (8, 8))], "Describe.", "Left lane; right_of it.")
    assert mirror_example(example, "caption").answer == "Right lane; left_of it."
    assert mirror_example(example, "caption").prompt == "Describe."


def test_augment_preview_grid_has_a_row_per_transform(tmp_path: Path) -> None:
    from roadscene.data.augment_preview import preview_rows, write_preview_grid

    image = tmp_path / "scene.png"
    Image.fromarray(render_scene(SCENES[0], image_seed(3, 0))).save(image)
    section = AugmentSection(transforms={"rain": {"p": 0.5, "strength": 0.9}}, hflip=0.5)
    rows = preview_rows(image, section, samples=3)
    labels = [label for label, _ in rows]
    assert labels[0] == "original" and labels[-2:] == ["hflip", "configured"]
    assert labels[1:-2] == [f"{name} {0.9 if name == 'rain' else 0.5:.2f}" for name in TRANSFORMS]
    out = write_preview_grid(rows, tmp_path / "grid.png")
    assert Image.open(out).size == (130 + 3 * (96 * 2 + 4), len(rows) * (96 * 2 + 4))


def test_bad_augment_settings_exit_2_with_one_line(run_cli, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data:\n  augment:\n    transforms:\n      snow: {p: 0.5}\n")
    result = run_cli("train", str(recipe))
    assert result.returncode == 2
    assert "unknown transform 'snow'" in result.stderr and result.stderr.count("\n") == 1
