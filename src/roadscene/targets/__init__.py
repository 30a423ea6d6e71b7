"""The answer format: rendering and parsing the structured answer (`answer`), the navigation cue
derived from its fields (`cue`) and its grammar for constrained decoding (`grammar`).
Layer 2: imports only `roadscene.schema` below it."""

from roadscene.targets.answer import (
    CAPTION_PROMPT,
    DEFAULT_PROMPT,
    NO_NEARBY,
    OBJECT_NAMES,
    ObjectMention,
    ParsedResponse,
    describe_positions,
    header_text,
    object_phrase,
    parse_response,
    render_response,
    scene_from_parsed,
)
from roadscene.targets.cue import (
    CUE_ACTIONS,
    URGENCY_LEVELS,
    NavigationCue,
    Urgency,
    Verbosity,
    clock_directions,
    cue_for_parsed,
    cue_for_scene,
    navigation_cue,
    spoken_cue,
    unclear_view_cue,
)
from roadscene.targets.grammar import GrammarOptions, answer_grammar
from roadscene.targets.mirror import mirror_response, mirror_text

__all__ = [
    "CAPTION_PROMPT",
    "CUE_ACTIONS",
    "DEFAULT_PROMPT",
    "NO_NEARBY",
    "OBJECT_NAMES",
    "URGENCY_LEVELS",
    "GrammarOptions",
    "NavigationCue",
    "ObjectMention",
    "ParsedResponse",
    "Urgency",
    "Verbosity",
    "answer_grammar",
    "clock_directions",
    "cue_for_parsed",
    "cue_for_scene",
    "describe_positions",
    "header_text",
    "mirror_response",
    "mirror_text",
    "navigation_cue",
    "object_phrase",
    "parse_response",
    "render_response",
    "scene_from_parsed",
    "spoken_cue",
    "unclear_view_cue",
]
