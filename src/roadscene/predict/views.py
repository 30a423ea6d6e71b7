"""Views of one predicted answer added to its output line: the parsed fields, the navigation cue
and, on request, the answer as an annotation form."""

from __future__ import annotations

from typing import Any

from roadscene.targets import cue_for_parsed, parse_response, scene_from_parsed


def answer_annotation(prediction: str, image: str) -> dict[str, Any]:
    """The parsed answer as an annotation form (valid against the annotation JSON schema)."""
    scene = scene_from_parsed(parse_response(prediction), image=image)
    return scene.to_form().model_dump(mode="json", exclude_none=True)


def parsed_fields(prediction: str) -> dict[str, Any]:
    """The parsed view of a prediction, as stored in the output line."""
    return parse_response(prediction).to_dict()


def prediction_views(prediction: str, image: str, *, json_view: bool = False) -> dict[str, Any]:
    """Extra keys of a structured prediction line: always `cue`; with `json_view` also
    `annotation`."""
    views: dict[str, Any] = {"cue": cue_for_parsed(parse_response(prediction)).to_dict()}
    if json_view:
        views["annotation"] = answer_annotation(prediction, image)
    return views
