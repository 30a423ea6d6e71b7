"""Target rendering and parsing: the published format and its inverse."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from roadscene.schema import OBJECT_CLASSES, POSITIONS, SceneAnnotation
from roadscene.targets import describe_positions, object_phrase, parse_response, render_response


def test_render_matches_published_example():
    scene = SceneAnnotation.build(
        "a.jpg", "Center", "Right", near={"person": ["left", "center"]}, far={"obstacle": ["right"]}
    )
    assert render_response(scene, "A caption. ") == (
        "Sidewalk: center. Road: right. RoadVsSidewalk: right_of. "
        "Nearby: 2 people close on the left and center. "
        "Far: an obstacle farther away on the right. Context: A caption. "
    )


def test_render_without_objects_or_caption():
    scene = SceneAnnotation.build("a.jpg", "Outside", "Front")
    assert render_response(scene, "  ") == (
        "Sidewalk: unknown. Road: front. RoadVsSidewalk: crossing_front. "
        "Nearby: no important close objects visible."
    )


def test_positions_and_quantities():
    assert describe_positions(["right", "left", "right"]) == "on the left and right"
    assert describe_positions(["center", "right", "left"]) == "across the left, center, and right"
    assert object_phrase("obstacle", ["left"], "close") == "an obstacle close on the left"
    assert (
        object_phrase("traffic_sign", ["right"] * 3, "close")
        == "3 traffic signs close on the right"
    )
    assert object_phrase("car", ["center"], "farther away") == "a car farther away on the center"


def test_parse_is_tolerant_of_case_spacing_and_synonyms():
    parsed = parse_response(
        "sidewalk :CENTRE.  road: Ahead. Road vs sidewalk: crossing front. NEARBY: two pedestrians "
        "close on both sides; a bike close in the middle. Far: Cars farther away on the left."
    )
    assert (parsed.sidewalk, parsed.road, parsed.relation) == ("center", "front", "crossing_front")
    assert parsed.near["person"].count == 2
    assert parsed.near["person"].positions == ["left", "right"]
    assert parsed.near["bicycle"].positions == ["center"]
    assert parsed.far["car"].count is None
    assert parsed.complete


def test_parse_never_matches_inside_words():
    parsed = parse_response(
        "Sidewalk: left. Road: unknown. RoadVsSidewalk: unknown. Nearby: a signpost and carrying "
        "bags. Context: a significant manhole."
    )
    assert parsed.near == {}
    assert parsed.unparsed == ["a signpost and carrying bags"]
    assert parsed.context == "a significant manhole."


def test_parse_missing_fields_and_context_headers_are_text():
    parsed = parse_response("Road: left. Context: Sidewalk: right is what the sign says.")
    assert parsed.sidewalk is None
    assert parsed.road == "left"
    assert not parsed.complete
    assert parsed.context == "Sidewalk: right is what the sign says."


position_lists = st.lists(st.sampled_from(POSITIONS), min_size=0, max_size=5)
scenes = st.builds(
    SceneAnnotation.build,
    image=st.just("x.jpg"),
    sidewalk=st.sampled_from(["Left", "Center", "Right", "Outside", "", "centre", "front"]),
    road=st.sampled_from(["Left", "Right", "Front", "Not present", "center", "nan"]),
    near=st.fixed_dictionaries({c: position_lists for c in OBJECT_CLASSES}),
    far=st.fixed_dictionaries({c: position_lists for c in OBJECT_CLASSES}),
)


@settings(max_examples=300, deadline=None)
@given(scene=scenes, caption=st.text(max_size=60))
def test_parse_inverts_render(scene: SceneAnnotation, caption: str):
    parsed = parse_response(render_response(scene, caption))
    assert (parsed.sidewalk, parsed.road, parsed.relation) == (
        scene.sidewalk,
        scene.road,
        scene.relation,
    )
    for side, mentions in ((scene.near, parsed.near), (scene.far, parsed.far)):
        expected = {c: p for c, p in side.items() if p}
        assert set(mentions) == set(expected)
        for cls, positions in expected.items():
            assert mentions[cls].count == len(positions)
            assert mentions[cls].positions == [p for p in POSITIONS if p in positions]
    assert parsed.nearby_none == (not any(scene.near.values()))
    assert parsed.unparsed == []
    if caption.strip():
        assert parsed.context == caption.strip()


# Fragments of answers, mangled: the parser and the cue take whatever a model or a file says.
answer_pieces = st.sampled_from(
    ["Sidewalk:", "Road:", "RoadVsSidewalk:", "Nearby:", "Far:", "Context:", "left", "right",
     "center", "front", "unknown", "left_of", "crossing_front", "2", "an", "people", "cars",
     "close on the", "farther away on the", "and", ",", ".", ";", "-", "no important close "
     "objects visible", "\u2028", "\r\n", "\x00", "\u0085", "  "]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(text=st.lists(answer_pieces | st.text(max_size=8), max_size=40).map(" ".join))
def test_any_text_parses_into_a_json_view_and_a_cue(text: str):
    import json

    from roadscene.targets import cue_for_parsed

    parsed = parse_response(text)
    json.dumps(parsed.to_dict())  # the prediction file's `parsed` field
    assert cue_for_parsed(parsed).text.strip()
    for field_value in (parsed.sidewalk, parsed.road, parsed.relation):
        assert field_value is None or field_value in text.lower()
