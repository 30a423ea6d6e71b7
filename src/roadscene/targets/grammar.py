"""The answer format as a grammar: an EBNF text (xgrammar / GBNF dialect) that accepts exactly the
structured answers `render_response` writes,

    Sidewalk: {sw}. Road: {rd}. RoadVsSidewalk: {rel}. Nearby: ... [Far: ...] [Context: ...]

(with `motion`, a close person, bicycle or car may end with `, standing still`, `, approaching`,
`, moving away` or `, crossing`), so a decoder constrained by it always produces an answer that
parses. The model still chooses every value; the grammar only removes what would break the format
(docs/structured.md).
Compiling it for a tokenizer and masking logits is `roadscene.predict.decoding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from roadscene.schema import (
    MOTIONS,
    MOVING_CLASSES,
    OBJECT_CLASSES,
    ROAD_VALUES,
    SIDEWALK_VALUES,
    road_vs_sidewalk,
)
from roadscene.targets.answer import NO_NEARBY, OBJECT_NAMES

RELATION_CHOICES: tuple[str, ...] = ("left_of", "right_of", "crossing_front", "unknown")
WHERE_ONE: tuple[str, ...] = ("on the left", "on the center", "on the right")
WHERE_TWO: tuple[str, ...] = (
    "on the left and center",
    "on the left and right",
    "on the center and right",
)
WHERE_THREE = "across the left, center, and right"
CONTEXT_BLOCK = 100  # characters per block of the bounded free-text context (see answer_grammar)


@dataclass(frozen=True)
class GrammarOptions:
    """What the structured-answer grammar allows.

    relation_from_fields: the relation must be the one docs/targets.md derives from the sidewalk and
        road just generated (otherwise the model chooses any of the four).
    max_count: the largest object count a phrase may state (2..max_count in digits).
    context_max_chars: length bound of the free-text `Context:` part (0 = no context allowed).
    allow_far: whether the optional `Far:` list may be generated.
    closing_reserve_tokens: when this few new tokens are left, lists start no new item, so the
        answer's mandatory part ends in time; None = `closing_reserve`.
    motion: whether a close person, bicycle or car may end with a motion word (answers about
        clips); still-image answers have none.
    """

    relation_from_fields: bool = False
    max_count: int = 20
    context_max_chars: int = 600
    allow_far: bool = True
    closing_reserve_tokens: int | None = None
    motion: bool = False

    @property
    def closing_reserve(self) -> int:
        """Tokens kept in reserve to finish the answer (see `GrammarLogitsProcessor`): by default
        the longest object phrase in characters plus its "." -- enough even for a tokenizer
        that spells every character separately."""
        if self.closing_reserve_tokens is not None:
            return self.closing_reserve_tokens
        longest = max(len(n[1]) for n in OBJECT_NAMES.values())
        reserve = len(f"{self.max_count} ") + longest + len(" farther away ") + len(WHERE_THREE) + 1
        return reserve + (max(len(f", {m}") for m in MOTIONS) if self.motion else 0)

    def __post_init__(self) -> None:
        if not 2 <= self.max_count <= 99:
            raise ValueError(f"max_count must be in 2..99, got {self.max_count}")
        if not 0 <= self.context_max_chars <= 2000:
            raise ValueError(f"context_max_chars must be in 0..2000, got {self.context_max_chars}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alternatives(texts: Sequence[str]) -> str:
    return "(" + " | ".join(_quote(t) for t in texts) + ")"


def _count_rule(low: int, high: int) -> str:
    """EBNF alternatives for the decimal numbers low..high (no leading zeros)."""
    return "(" + " | ".join(_quote(str(n)) for n in range(low, high + 1)) + ")"


def answer_grammar(options: GrammarOptions | None = None) -> str:
    """The EBNF grammar (xgrammar / GBNF dialect) of one structured answer.

    Objects follow the renderer exactly: classes in render order, each at most once, `an` before
    a vowel, one object -> one position, two objects -> one or two positions, three or more ->
    any; positions ordered left < center < right.
    """
    options = options or GrammarOptions()
    rules: list[str] = []
    # An optional leading space: SmolVLM answers follow "Assistant:" with one.
    root = '" "? header " " nearby'
    if options.allow_far:
        root += " far?"
    if options.context_max_chars > 0:
        root += " context?"
    rules.append(f"root ::= {root}")

    if options.relation_from_fields:
        per_sidewalk = []
        for sidewalk in SIDEWALK_VALUES:
            roads = " | ".join(
                _quote(f"{road}. RoadVsSidewalk: {road_vs_sidewalk(sidewalk, road)}.")
                for road in ROAD_VALUES
            )
            per_sidewalk.append(f'"{sidewalk}. Road: " ({roads})')
        rules.append('header ::= "Sidewalk: " (' + " | ".join(per_sidewalk) + ")")
    else:
        rules.append(
            'header ::= "Sidewalk: " sidewalk ". Road: " road ". RoadVsSidewalk: " relation "."'
        )
        rules.append(f"sidewalk ::= {_alternatives(SIDEWALK_VALUES)}")
        rules.append(f"road ::= {_alternatives(ROAD_VALUES)}")
        rules.append(f"relation ::= {_alternatives(RELATION_CHOICES)}")

    rules.append(f"where1 ::= {_alternatives(WHERE_ONE)}")
    rules.append(f"where12 ::= {_alternatives((*WHERE_ONE, *WHERE_TWO))}")
    rules.append(f"where123 ::= {_alternatives((*WHERE_ONE, *WHERE_TWO, WHERE_THREE))}")
    rules.append(f"many ::= {_count_rule(3, options.max_count)}")
    if options.motion:
        rules.append(f"motion ::= {_alternatives([f', {m}' for m in MOTIONS])}")
    for distance, tag in (("close", "near"), ("farther away", "far")):
        if tag == "far" and not options.allow_far:
            continue
        for cls in OBJECT_CLASSES:
            singular, plural = OBJECT_NAMES[cls]
            article = "an" if singular[0] in "aeiou" else "a"
            phrase = (
                f'"{article} {singular} {distance} " where1'
                f' | "2 {plural} {distance} " where12'
                f' | many " {plural} {distance} " where123'
            )
            if options.motion and tag == "near" and cls in MOVING_CLASSES:
                phrase = f"({phrase}) motion?"
            rules.append(f"{tag}_{cls} ::= {phrase}")
        # An ordered, non-empty subset of the classes joined by "; ": tail_i may continue with
        # any later class, so each class appears at most once and in render order.
        for index, cls in enumerate(OBJECT_CLASSES):
            later = [f'"; " {tag}_{c} {tag}_tail_{c}' for c in OBJECT_CLASSES[index + 1 :]]
            tail = f"({' | '.join(later)})?" if later else '""'
            rules.append(f"{tag}_tail_{cls} ::= {tail}")
        firsts = " | ".join(f"{tag}_{c} {tag}_tail_{c}" for c in OBJECT_CLASSES)
        rules.append(f"{tag}_list ::= {firsts}")

    rules.append(f'nearby ::= "Nearby: " ({_quote(NO_NEARBY + ".")} | near_list ".")')
    if options.allow_far:
        rules.append('far ::= " Far: " far_list "."')
    if options.context_max_chars > 0:
        # Free text on one line: no control characters, no "<"/">" (nothing that looks like a
        # special token), not starting with a space. The length bound is spelled as whole
        # 100-character blocks plus a short tail: xgrammar matches a long `{0,n}` repetition
        # (n > 128) far more slowly per token, which would dominate decoding time
        # (docs/performance.md).
        text_char = "[^\\x00-\\x1f\\x7f<>]"
        first_char = "[^\\x00-\\x20\\x7f<>]"
        rest = options.context_max_chars - 1
        blocks, tail = divmod(rest, CONTEXT_BLOCK)
        lengths = [
            f"context_block{{{k}}} {text_char}{{0,{CONTEXT_BLOCK - 1}}}" for k in range(blocks)
        ]
        lengths.append(f"context_block{{{blocks}}} {text_char}{{0,{tail}}}")
        lengths = [alt.replace("context_block{0} ", "") for alt in lengths]
        rules.append(f'context ::= " Context: " {first_char} ({" | ".join(lengths)})')
        if blocks:
            rules.append(f"context_block ::= {text_char}{{{CONTEXT_BLOCK}}}")
    return "\n".join(rules) + "\n"
