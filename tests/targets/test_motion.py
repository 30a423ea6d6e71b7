"""Motion words of close objects (answers about clips): rendered and parsed, accepted by the
grammar only where they belong, kept by mirroring, ranked by the cue, and spoken when new."""

from __future__ import annotations

import random

import pytest

from roadscene.schema import (
    MOTIONS,
    MOVING_CLASSES,
    OBJECT_CLASSES,
    POSITIONS,
    ROAD_VALUES,
    SIDEWALK_VALUES,
    SceneAnnotation,
)
from roadscene.targets import (
    clock_directions,
    cue_for_parsed,
    cue_for_scene,
    mirror_response,
    navigation_cue,
    parse_response,
    render_response,
)
from roadscene.targets.announce import CueAnnouncer
from roadscene.targets.grammar import GrammarOptions, answer_grammar

xgr = pytest.importorskip("xgrammar")


def _scene(rng: random.Random) -> SceneAnnotation:
    near = {
        c: [rng.choice(POSITIONS) for _ in range(rng.choice([0, 1, 2, 3]))] for c in OBJECT_CLASSES
    }
    far = {c: [rng.choice(POSITIONS) for _ in range(rng.choice([0, 0, 1]))] for c in OBJECT_CLASSES}
    motion = {c: rng.choice(MOTIONS) for c in MOVING_CLASSES if rng.random() < 0.7}
    return SceneAnnotation.build(
        "clip.webm",
        rng.choice(SIDEWALK_VALUES),
        rng.choice(ROAD_VALUES),
        near=near,
        far=far,
        motion=motion,
    )


def test_motion_is_rendered_after_the_positions_and_parsed_back() -> None:
    scene = SceneAnnotation.build(
        "c.webm",
        "center",
        "left",
        near={"person": ["center"], "obstacle": ["left"], "car": ["left", "right"]},
        motion={"person": "approaching", "car": "crossing", "obstacle": "moving away"},
    )
    text = render_response(scene, None)
    assert "Nearby: an obstacle close on the left; a person close on the center, approaching; " in (
        text
    )
    assert text.endswith("2 cars close on the left and right, crossing.")
    assert scene.motion == {"person": "approaching", "car": "crossing"}  # obstacles never move
    parsed = parse_response(text)
    assert parsed.near["person"].motion == "approaching"
    assert parsed.near["person"].positions == ["center"]
    assert parsed.near["car"].motion == "crossing" and parsed.near["obstacle"].motion is None
    assert parsed.to_dict()["near"]["person"] == {
        "count": 1,
        "positions": ["center"],
        "motion": "approaching",
    }
    assert "motion" not in parsed.to_dict()["near"]["obstacle"]  # still answers read as before


def test_synonyms_and_positions_after_the_motion_word() -> None:
    parsed = parse_response(
        "Nearby: a pedestrian close on the left, coming towards you; 2 bikes close on the right,"
        " walking away. Far: a car farther away on the right."
    )
    assert parsed.near["person"].motion == "approaching"
    assert parsed.near["bicycle"].motion == "moving away"
    assert parsed.far["car"].motion is None  # "farther away" is a distance, not a motion
    # words after the motion word are not positions ("crossing to the right")
    crossing = parse_response("Nearby: a person close on the left, crossing to the right.")
    assert crossing.near["person"].positions == ["left"]
    assert crossing.near["person"].motion == "crossing"


def test_a_clip_names_standing_still_and_the_cue_treats_it_as_static() -> None:
    scene = SceneAnnotation.build(
        "c.webm", "right", "left", near={"person": ["center"]}, motion={"person": "standing still"}
    )
    text = render_response(scene, None)
    assert text.endswith("Nearby: a person close on the center, standing still.")
    parsed = parse_response(text)
    assert parsed.near["person"].motion == "standing still"
    assert scene.moving("person") == "static"  # scored like a clip's answer without a word
    for synonym in ("not moving", "stationary"):
        said = parse_response(f"Nearby: a person close on the center, {synonym}.")
        assert said.near["person"].motion == "standing still", synonym
    still_cue = navigation_cue("right", "left", "left_of", {"person": ["center"]})
    assert cue_for_scene(scene) == still_cue and cue_for_parsed(parsed) == still_cue


def test_still_answers_are_unchanged() -> None:
    still = SceneAnnotation.build("a.jpg", "left", "right", near={"person": ["center"]})
    assert still.motion is None and still.moving("person") == "static"
    assert render_response(still, None).endswith("Nearby: a person close on the center.")


def _compiled(**options):
    vocab = [bytes([byte]) for byte in range(256)] + [b""]
    info = xgr.TokenizerInfo(
        vocab, xgr.VocabType.RAW, vocab_size=len(vocab), stop_token_ids=[len(vocab) - 1]
    )
    return xgr.GrammarCompiler(info, max_threads=1).compile_grammar(
        answer_grammar(GrammarOptions(**options))
    )


def _accepts(compiled, text: str) -> bool:
    matcher = xgr.GrammarMatcher(compiled)
    return matcher.accept_string(text) and matcher.is_completed()


def test_grammar_accepts_motion_only_for_close_moving_objects_and_only_when_asked() -> None:
    with_motion, without = _compiled(motion=True), _compiled()
    rng = random.Random(0)
    for _ in range(100):
        scene = _scene(rng)
        text = render_response(scene, rng.choice([None, "A caption."]))
        assert _accepts(with_motion, text), text
        assert _accepts(without, text) == (not scene.motion), text
        still = render_response(scene.model_copy(update={"motion": None}), None)
        assert _accepts(with_motion, still)  # motion words stay optional
    base = "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: "
    for wrong in (
        "an obstacle close on the left, approaching.",  # obstacles do not move
        "a person close on the left, running.",  # not a motion word
        "a person close on the left. Far: a car farther away on the right, crossing.",  # far
    ):
        assert not _accepts(with_motion, base + wrong), wrong
    assert GrammarOptions(motion=True).closing_reserve > GrammarOptions().closing_reserve


def test_mirroring_keeps_motion_words() -> None:
    text = (
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a person close on the "
        "left, approaching; a car close on the right, crossing."
    )
    mirrored = mirror_response(text)
    assert mirrored == (
        "Sidewalk: right. Road: left. RoadVsSidewalk: left_of. Nearby: a person close on the "
        "right, approaching; a car close on the left, crossing."
    )
    assert mirror_response(mirrored) == text


def test_an_approaching_object_in_the_path_outranks_a_static_one() -> None:
    near = {"obstacle": ["center"], "person": ["center"]}
    static = navigation_cue("right", "left", "left_of", near)
    assert static.text == "Objects close ahead: step to the right."
    approaching = navigation_cue("right", "left", "left_of", near, {"person": "approaching"})
    assert approaching.text == "Person approaching ahead: step to the right."
    assert approaching.action == static.action and approaching.approaching
    moving_away = navigation_cue("right", "left", "left_of", near, {"person": "moving away"})
    assert moving_away.text == static.text and not moving_away.approaching


def test_an_approaching_object_raises_urgency() -> None:
    beside = navigation_cue("center", "unknown", "unknown", {"car": ["left"]})
    assert (beside.action, beside.urgency) == ("keep_right", "medium")
    coming = navigation_cue(
        "center", "unknown", "unknown", {"car": ["left"]}, {"car": "approaching"}
    )
    assert (coming.action, coming.urgency) == ("keep_right", "high")
    assert coming.text == "Car approaching on the left: keep right."
    assert coming.to_dict()["approaching"] is True and "approaching" not in beside.to_dict()
    # a motion of a class that is not close changes nothing
    assert navigation_cue("center", "unknown", "unknown", {}, {"car": "approaching"}) == (
        navigation_cue("center", "unknown", "unknown", {})
    )


def test_cue_of_a_parsed_answer_uses_its_motion() -> None:
    rng = random.Random(1)
    for _ in range(200):
        scene = _scene(rng)
        parsed = parse_response(render_response(scene, None))
        from_answer, from_truth = cue_for_parsed(parsed), cue_for_scene(scene)
        # (the text may count differently: an answer spreads a count over its positions)
        assert (from_answer.action, from_answer.approaching, from_answer.urgency) == (
            from_truth.action,
            from_truth.approaching,
            from_truth.urgency,
        )
        assert ("approaching" in from_answer.text) == ("approaching" in from_truth.text)


def test_clock_directions_name_motion_and_put_approaching_first() -> None:
    parsed = parse_response(
        "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: an obstacle close on the "
        "center; a bicycle close on the right, approaching."
    )
    assert clock_directions(parsed)["close"] == [
        "bicycle at 2 o'clock, close, approaching",
        "obstacle at 12 o'clock, close",
    ]


def test_announcer_speaks_changes_and_newly_approaching_objects_only() -> None:
    ahead = navigation_cue("right", "left", "left_of", {"person": ["center"]})
    coming = navigation_cue(
        "right", "left", "left_of", {"person": ["center"]}, {"person": "approaching"}
    )
    clear = navigation_cue("right", "left", "left_of")
    announcer = CueAnnouncer()
    cues = [clear, clear, ahead, ahead, coming, coming, clear]
    said = [_decide(announcer, cue, now) for now, cue in enumerate(cues)]
    assert said == [
        (True, "first"),
        (False, "unchanged"),
        (True, "action changed"),
        (False, "unchanged"),
        (True, "approaching"),  # same action and urgency (high), but now it approaches
        (False, "unchanged"),
        (True, "action changed"),
    ]


def _decide(announcer: CueAnnouncer, cue, now: float) -> tuple[bool, str]:
    decision = announcer.decide(cue, float(now))
    return decision.say, decision.reason
