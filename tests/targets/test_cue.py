"""The navigation cue: every combination of the field enums and close-object positions gets a
cue, and no cue contradicts the fields it came from; its urgency, the clock directions and the
spoken sentence."""

from __future__ import annotations

import itertools

import pytest

from roadscene.schema import OBJECT_CLASSES, POSITIONS, RELATION_VALUES, SceneAnnotation
from roadscene.targets import OBJECT_NAMES, parse_response, render_response
from roadscene.targets.cue import (
    CUE_ACTIONS,
    PATH_CLEAR,
    URGENCY_LEVELS,
    clock_directions,
    clock_phrase,
    cue_for_parsed,
    cue_for_scene,
    navigation_cue,
    road_sides,
    spoken_cue,
    unclear_view_cue,
)

SIDEWALKS = ("left", "center", "right", "front", "unknown")  # every value SceneAnnotation allows
ROADS = ("left", "center", "right", "front", "unknown")
# what is close at each position: nothing or one object of a class
SLOT_CHOICES = (None, *OBJECT_CLASSES)


def _all_cases():
    for sidewalk, road, relation in itertools.product(SIDEWALKS, ROADS, RELATION_VALUES):
        for slots in itertools.product(SLOT_CHOICES, repeat=len(POSITIONS)):
            near: dict[str, list[str]] = {cls: [] for cls in OBJECT_CLASSES}
            for position, cls in zip(POSITIONS, slots, strict=True):
                if cls is not None:
                    near[cls].append(position)
            yield sidewalk, road, relation, near


def _check_consistent(sidewalk, road, relation, near, cue) -> None:
    occupied = {p for positions in near.values() for p in positions}
    roads = road_sides(road, relation)
    text = cue.text
    where = f"{sidewalk}/{road}/{relation}/{near}: {cue}"
    assert cue.action in CUE_ACTIONS, where
    assert text.endswith(".") and text[0].isupper() and len(text) <= 80, where
    # a road crossing ahead always stops the pedestrian, and nothing else does
    crossing = road == "front" or relation == "crossing_front"
    assert (cue.action == "stop_crossing") == crossing, where
    if crossing:
        assert "crossing" in text and "stop" in text, where
        return
    # "path clear" only when nothing is close; with nothing close and no road ahead, always
    if PATH_CLEAR in text:
        assert not occupied, where
    if not occupied and road != "center":
        assert PATH_CLEAR in text, where
    # never toward a road, an occupied side, or away from the sidewalk's side
    if cue.action.startswith(("step_", "keep_")) and cue.action != "step_either":
        side = cue.action.split("_")[1]
        assert side not in roads, where
        assert side not in occupied, where
        assert f"the {side}" in text or f"your {side}" in text or f"keep {side}" in text, where
        if cue.action.startswith("keep_"):  # never away from a sidewalk on the other side
            assert sidewalk != ("right" if side == "left" else "left"), where
            assert "center" not in occupied, where
    if cue.action == "step_either":
        assert not roads and not occupied & {"left", "right"}, where
    if cue.action == "stop_blocked":
        assert all(side in occupied or side in roads for side in ("left", "right")), where
    # an object in the center is always the subject of the cue
    if "center" in occupied:
        assert cue.rule == "R2" and "ahead" in text, where
        names = [c for c in OBJECT_CLASSES if "center" in near[c]]
        if len(names) == 1:
            assert OBJECT_NAMES[names[0]][0] in text.lower(), where
    else:
        assert cue.action not in {"step_left", "step_right", "step_either", "stop_blocked"}, where
    if cue.action == "straight":
        assert road not in {"center", "front"} and "center" not in occupied, where
    # the cue never names a side as having a close object that has none
    for side in ("left", "right"):
        if f"close on the {side}" in text:
            assert side in occupied, where


def test_every_combination_has_a_consistent_cue() -> None:
    seen_actions: set[str] = set()
    count = 0
    for sidewalk, road, relation, near in _all_cases():
        cue = navigation_cue(sidewalk, road, relation, near)
        _check_consistent(sidewalk, road, relation, near, cue)
        # deterministic
        assert navigation_cue(sidewalk, road, relation, near) == cue
        seen_actions.add(cue.action)
        count += 1
    assert count == 5 * 5 * 4 * 7**3
    assert seen_actions == set(CUE_ACTIONS)  # every row of the table is reachable


@pytest.mark.parametrize(
    ("sidewalk", "road", "near", "action", "text"),
    [
        ("left", "front", {}, "stop_crossing", "Road crossing ahead: stop and check for traffic."),
        (
            "left",
            "right",
            {"obstacle": ["center"]},
            "step_left",
            "Obstacle close ahead: step to the left.",
        ),
        (
            "center",
            "left",
            {"person": ["center", "right"]},
            "stop_blocked",
            "Person close ahead, no free side: stop and go around with care.",
        ),
        (
            "center",
            "unknown",
            {"person": ["center"]},
            "step_either",
            "Person close ahead: step around it, left or right.",
        ),
        ("right", "left", {}, "keep_right", "Path clear: keep to the sidewalk on your right."),
        ("center", "unknown", {}, "straight", "Path clear: continue straight on the sidewalk."),
        ("unknown", "unknown", {}, "caution", "Path clear, but no sidewalk seen: walk with care."),
        (
            "center",
            "unknown",
            {"car": ["left", "left"]},
            "keep_right",
            "Cars close on the left: keep right.",
        ),
        (
            "left",
            "center",
            {},
            "keep_left",
            "Road ahead in the center: keep to the sidewalk on your left.",
        ),
    ],
)
def test_table_rows(sidewalk, road, near, action, text) -> None:
    scene = SceneAnnotation.build("x.jpg", sidewalk, road, near=near)
    cue = cue_for_scene(scene)
    assert (cue.action, cue.text) == (action, text)


def test_cue_from_a_parsed_answer_matches_the_scene() -> None:
    scene = SceneAnnotation.build(
        "x.jpg", "right", "left", near={"obstacle": ["center"], "person": ["left"]}
    )
    parsed = parse_response(render_response(scene, "A quiet street."))
    assert cue_for_parsed(parsed) == cue_for_scene(scene)
    assert cue_for_parsed(parsed).action == "step_right"


def test_cue_from_an_incomplete_answer_is_cautious() -> None:
    # no fields at all: unknown everywhere, nothing close
    assert cue_for_parsed(parse_response("")).action == "caution"
    # an object without a position counts as in the center
    cue = cue_for_parsed(parse_response("Sidewalk: left. Nearby: a person close."))
    assert cue.rule == "R2"


# --- urgency, clock directions, the spoken sentence -------------------------------------------


def test_urgency_of_every_combination() -> None:
    seen: set[str] = set()
    for sidewalk, road, relation, near in _all_cases():
        cue = navigation_cue(sidewalk, road, relation, near)
        occupied = {p for positions in near.values() for p in positions}
        crossing = road == "front" or relation == "crossing_front"
        where = f"{sidewalk}/{road}/{relation}/{near}: {cue}"
        # high exactly when a crossing is ahead or something is close in the path
        assert (cue.urgency == "high") == (crossing or "center" in occupied), where
        # low only when nothing is close, the road is not ahead and there is a way to follow
        if cue.urgency == "low":
            assert not occupied and road not in {"center", "front"}, where
            assert cue.action in {"keep_left", "keep_right", "straight"}, where
            assert PATH_CLEAR in cue.text, where
        assert cue.to_dict()["urgency"] == cue.urgency
        seen.add(cue.urgency)
    assert seen == set(URGENCY_LEVELS)


def test_unclear_view_cue_is_not_a_guess() -> None:
    cue = unclear_view_cue()
    assert cue.text == "Camera view unclear: raise the phone."
    assert cue.action not in CUE_ACTIONS and cue.rule == "R0"
    assert cue.urgency == "medium"
    assert spoken_cue(cue, {"close": [], "far": []}, "detailed") == cue.text


@pytest.mark.parametrize(
    ("cls", "count", "positions", "distance", "phrase"),
    [
        ("person", 1, ["center"], "close", "person at 12 o'clock, close"),
        ("car", 2, ["left", "right"], "close", "2 cars at 10 and 2 o'clock, close"),
        (
            "obstacle",
            3,
            ["left", "center", "right"],
            "far",
            "3 obstacles at 10, 12 and 2 o'clock, far",
        ),
        ("traffic_light", 1, ["right"], "far", "traffic light at 2 o'clock, far"),
        ("bicycle", 1, [], "close", "bicycle close, direction unknown"),
    ],
)
def test_clock_phrase(cls, count, positions, distance, phrase) -> None:
    assert clock_phrase(cls, count, positions, distance) == phrase


def test_clock_directions_of_an_answer_put_the_path_first() -> None:
    answer = (
        "Sidewalk: center. Road: left. RoadVsSidewalk: left_of. Nearby: 2 cars close on the left "
        "and right; a person close on the center. Far: a traffic light farther away on the right."
    )
    parsed = parse_response(answer)
    directions = clock_directions(parsed)
    assert directions == {
        "close": ["person at 12 o'clock, close", "2 cars at 10 and 2 o'clock, close"],
        "far": ["traffic light at 2 o'clock, far"],
    }
    cue = cue_for_parsed(parsed)
    assert cue.urgency == "high"
    assert spoken_cue(cue, directions, "brief") == cue.text
    assert spoken_cue(cue, directions, "normal") == (
        f"{cue.text} Person at 12 o'clock, close; 2 cars at 10 and 2 o'clock, close."
    )
    assert spoken_cue(cue, directions, "detailed", caption="A busy street") == (
        f"{cue.text} Person at 12 o'clock, close; 2 cars at 10 and 2 o'clock, close. "
        "Traffic light at 2 o'clock, far. A busy street."
    )
    nothing = parse_response("Sidewalk: left. Road: right. RoadVsSidewalk: right_of. "
                             "Nearby: no important close objects visible.")  # fmt: skip
    assert clock_directions(nothing) == {"close": [], "far": []}
    assert spoken_cue(cue_for_parsed(nothing), clock_directions(nothing), "normal") == (
        "Path clear: keep to the sidewalk on your left."
    )
