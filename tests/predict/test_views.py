"""Views of a predicted answer added to its output line (`roadscene.predict.views`): the
navigation cue and the answer as an annotation form."""

from __future__ import annotations

import random

import jsonschema

from roadscene.predict.views import answer_annotation, prediction_views
from roadscene.schema import (
    OBJECT_CLASSES,
    POSITIONS,
    ROAD_VALUES,
    SIDEWALK_VALUES,
    SceneAnnotation,
    form_json_schema,
)
from roadscene.targets import parse_response, render_response


def _random_scene(rng: random.Random) -> SceneAnnotation:
    def objects() -> dict[str, list[str]]:
        return {
            cls: [rng.choice(POSITIONS) for _ in range(rng.choice([0, 0, 0, 1, 2, 3, 7, 20]))]
            for cls in OBJECT_CLASSES
        }

    return SceneAnnotation.build(
        "x.jpg", rng.choice(SIDEWALK_VALUES), rng.choice(ROAD_VALUES), near=objects(), far=objects()
    )


def test_json_view_is_valid_against_the_annotation_schema(
    annotation_form_reference_schema,
) -> None:
    schemas = [form_json_schema(), annotation_form_reference_schema]
    rng = random.Random(2)
    for _ in range(100):
        scene = _random_scene(rng)
        text = render_response(scene, "A street.")
        annotation = answer_annotation(text, "img.jpg")
        for schema in schemas:
            jsonschema.validate(annotation, schema)
        assert annotation["image"] == "img.jpg"
        assert annotation["object_present"] == ("Yes" if any(scene.near.values()) else "No")
    # even an answer missing every field gives a valid form
    for schema in schemas:
        jsonschema.validate(answer_annotation("", "img.jpg"), schema)


def test_prediction_views_carry_the_cue() -> None:
    text = (
        "Sidewalk: left. Road: front. RoadVsSidewalk: crossing_front. Nearby: no important "
        "close objects visible."
    )
    views = prediction_views(text, "a.jpg", json_view=True)
    assert views["cue"]["action"] == "stop_crossing"
    assert views["annotation"]["road_pos"] == "Front"
    assert set(prediction_views(text, "a.jpg")) == {"cue"}
    assert parse_response(text).complete
