"""Training targets: the published "priority caption" and its parser.

``render_response`` writes the text exactly as the SENSATION exports do (docs/targets.md);
``parse_response`` reads such a text back (also a model's imperfect version of it): fields,
near and far object lists with counts, positions and (clips) the motion of close objects, and
the context caption. Parsing is tolerant of case, spacing and common synonyms, and never matches
inside a word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from roadscene.schema import MOTIONS, OBJECT_CLASSES, POSITIONS, SceneAnnotation

DEFAULT_PROMPT = (
    "Describe the scene for a blind pedestrian. You MUST always output: Sidewalk position and "
    "Road position (relative to the image). Then output RoadVsSidewalk (is the road "
    "left_of/right_of the sidewalk, or crossing_front if the road is in front). After that, always "
    "mention CLOSE objects first with left/center/right. If no close objects are visible, "
    "explicitly say so. Only mention objects you can see."
)
CAPTION_PROMPT = "Describe this road scene."
NO_NEARBY = "no important close objects visible"

# singular / plural names in render order
OBJECT_NAMES: dict[str, tuple[str, str]] = {
    "obstacle": ("obstacle", "obstacles"),
    "person": ("person", "people"),
    "bicycle": ("bicycle", "bicycles"),
    "car": ("car", "cars"),
    "traffic_sign": ("traffic sign", "traffic signs"),
    "traffic_light": ("traffic light", "traffic lights"),
}


# --- rendering ---------------------------------------------------------------------------------------


def describe_positions(positions: list[str]) -> str:
    """`on the left`, `on the left and right`, `across the left, center, and right`."""
    distinct = [p for p in POSITIONS if p in set(positions)]
    if len(distinct) == 1:
        return f"on the {distinct[0]}"
    if len(distinct) == 2:
        return f"on the {distinct[0]} and {distinct[1]}"
    return "across the left, center, and right"


def object_phrase(cls: str, positions: list[str], distance: str, motion: str | None = None) -> str:
    """`2 people close on the left and center`, `an obstacle farther away on the right`, and
    with a motion (clips): `a person close on the center, approaching`."""
    singular, plural = OBJECT_NAMES[cls]
    count = len(positions)
    if count == 1:
        article = "an" if singular[0] in "aeiou" else "a"
        quantity = f"{article} {singular}"
    else:
        quantity = f"{count} {plural}"
    phrase = f"{quantity} {distance} {describe_positions(positions)}"
    return f"{phrase}, {motion}" if motion else phrase


def header_text(sidewalk: str, road: str, relation: str) -> str:
    return f"Sidewalk: {sidewalk}. Road: {road}. RoadVsSidewalk: {relation}."


def render_response(scene: SceneAnnotation, caption: str | None) -> str:
    """The published target text for a scene and its free-text caption; a clip's close objects
    that move get their motion word after their positions (a still image has none)."""
    parts = [header_text(scene.sidewalk, scene.road, scene.relation)]
    motion = scene.motion or {}
    near = [
        object_phrase(c, scene.near[c], "close", motion.get(c))
        for c in OBJECT_CLASSES
        if scene.near.get(c)
    ]
    far = [
        object_phrase(c, scene.far[c], "farther away") for c in OBJECT_CLASSES if scene.far.get(c)
    ]
    parts.append(f"Nearby: {'; '.join(near)}." if near else f"Nearby: {NO_NEARBY}.")
    if far:
        parts.append(f"Far: {'; '.join(far)}.")
    if caption is not None and caption.strip():
        parts.append(f"Context: {caption}")
    return " ".join(parts)


# --- parsing -------------------------------------------------------------------------------------------


@dataclass
class ObjectMention:
    """One object class mentioned in a `Nearby:` or `Far:` list.

    `count` is None when the text gives no quantity (e.g. "people close on the left").
    `positions` are the distinct positions named, ordered left < center < right. `motion` is
    the motion word the phrase ends with (`MOTIONS`), None when it names none (a still image's
    answer).
    """

    count: int | None
    positions: list[str]
    motion: str | None = None


@dataclass
class ParsedResponse:
    """What a structured answer says. Fields are None when the answer does not give them."""

    sidewalk: str | None = None
    road: str | None = None
    relation: str | None = None
    near: dict[str, ObjectMention] = field(default_factory=dict)
    far: dict[str, ObjectMention] = field(default_factory=dict)
    nearby_none: bool = False
    has_nearby: bool = False
    has_far: bool = False
    context: str | None = None
    unparsed: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """All three fields present and a `Nearby:` section given."""
        return (
            self.sidewalk is not None
            and self.road is not None
            and self.relation is not None
            and self.has_nearby
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON view: the fields, near/far objects as {class: {count, positions}}, whether the
        answer says nothing is close, and whether it is complete. An object's `motion` is
        listed only when the answer names one, so still-image answers read as before."""

        def objects(mentions: dict[str, ObjectMention]) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for cls, mention in mentions.items():
                view: dict[str, Any] = {
                    "count": mention.count,
                    "positions": list(mention.positions),
                }
                if mention.motion is not None:
                    view["motion"] = mention.motion
                out[cls] = view
            return out

        return {
            "sidewalk": self.sidewalk,
            "road": self.road,
            "relation": self.relation,
            "near": objects(self.near),
            "far": objects(self.far),
            "nearby_none": self.nearby_none,
            "complete": self.complete,
        }


_SECTION = re.compile(
    r"\b(?P<name>road\s*[_\- ]?\s*vs\.?\s*[_\- ]?\s*sidewalk|sidewalk|road|nearby|close|far|context)"
    r"\s*:",
    re.IGNORECASE,
)
_SECTION_NAMES = {
    "sidewalk": "sidewalk",
    "road": "road",
    "nearby": "nearby",
    "close": "nearby",
    "far": "far",
    "context": "context",
}

_POSITION_WORDS = {
    "left": "left",
    "center": "center",
    "centre": "center",
    "middle": "center",
    "central": "center",
    "right": "right",
    "front": "front",
    "ahead": "front",
    "unknown": "unknown",
    "none": "unknown",
    "absent": "unknown",
    "unclear": "unknown",
}
_RELATION_WORDS = {
    "left_of": "left_of",
    "left of": "left_of",
    "leftof": "left_of",
    "right_of": "right_of",
    "right of": "right_of",
    "rightof": "right_of",
    "crossing_front": "crossing_front",
    "crossing front": "crossing_front",
    "crossing in front": "crossing_front",
    "crossing": "crossing_front",
    "unknown": "unknown",
    "none": "unknown",
}

_NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "single": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
# object name (singular or plural, with synonyms) -> class; longest first when matching
_OBJECT_WORDS: dict[str, str] = {
    "traffic signs": "traffic_sign",
    "traffic sign": "traffic_sign",
    "road signs": "traffic_sign",
    "road sign": "traffic_sign",
    "street signs": "traffic_sign",
    "street sign": "traffic_sign",
    "signs": "traffic_sign",
    "sign": "traffic_sign",
    "traffic lights": "traffic_light",
    "traffic light": "traffic_light",
    "traffic signals": "traffic_light",
    "traffic signal": "traffic_light",
    "obstacles": "obstacle",
    "obstacle": "obstacle",
    "people": "person",
    "persons": "person",
    "person": "person",
    "pedestrians": "person",
    "pedestrian": "person",
    "bicycles": "bicycle",
    "bicycle": "bicycle",
    "bikes": "bicycle",
    "bike": "bicycle",
    "cars": "car",
    "car": "car",
    "vehicles": "car",
    "vehicle": "car",
}
_OBJECT_PATTERN = "|".join(re.escape(w) for w in sorted(_OBJECT_WORDS, key=len, reverse=True))
_PHRASE = re.compile(
    rf"^(?:(?P<quantity>\d+|{'|'.join(_NUMBER_WORDS)})\s+)?(?P<object>{_OBJECT_PATTERN})\b"
    r"(?P<rest>.*)$",
    re.IGNORECASE,
)
# motion words and their synonyms, longest first; "crossing" only as a whole word
_MOTION_WORDS: dict[str, str] = {
    "coming towards you": "approaching",
    "coming toward you": "approaching",
    "coming closer": "approaching",
    "approaching": "approaching",
    "moving away": "moving away",
    "walking away": "moving away",
    "going away": "moving away",
    "receding": "moving away",
    "crossing": "crossing",
    "standing still": "standing still",
    "not moving": "standing still",
    "stationary": "standing still",
}
_MOTION = re.compile(
    r"\b(" + "|".join(re.escape(w) for w in sorted(_MOTION_WORDS, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_WHERE_WORDS = re.compile(r"\b(left|right|center|centre|middle|central|ahead|front)\b", re.I)
_BOTH_SIDES = re.compile(r"\bboth sides\b|\beither side\b", re.IGNORECASE)
_ALL_SIDES = re.compile(r"\b(all sides|everywhere|all around)\b", re.IGNORECASE)


def _first_word_value(text: str, vocabulary: dict[str, str]) -> str | None:
    """The first vocabulary entry at the start of `text` (whole words, longest first)."""
    candidate = text.strip().lower()
    for word in sorted(vocabulary, key=len, reverse=True):
        if re.match(rf"{re.escape(word)}(?![\w])", candidate):
            return vocabulary[word]
    return None


def _positions(text: str) -> list[str]:
    found: set[str] = set()
    if _ALL_SIDES.search(text):
        found.update(POSITIONS)
    if _BOTH_SIDES.search(text):
        found.update({"left", "right"})
    for word in _WHERE_WORDS.findall(text):
        value = _POSITION_WORDS[word.lower()]
        found.add("center" if value == "front" else value)
    return [p for p in POSITIONS if p in found]


def _parse_objects(text: str, unparsed: list[str]) -> tuple[dict[str, ObjectMention], bool]:
    """Object mentions of a `Nearby:`/`Far:` section; also whether it says "none"."""
    body = text.strip().rstrip(".").strip()
    if not body:
        return {}, False
    if re.search(r"\bno\b.*\bobjects?\b|\bnone\b|\bnothing\b", body, re.IGNORECASE):
        return {}, True
    mentions: dict[str, ObjectMention] = {}
    for piece in re.split(r";|,\s*(?=(?:\d+|an?|one|two|three)\s)", body):
        piece = piece.strip().rstrip(".").strip()
        if not piece:
            continue
        match = _PHRASE.match(piece)
        if not match:
            unparsed.append(piece)
            continue
        cls = _OBJECT_WORDS[match.group("object").lower()]
        quantity = match.group("quantity")
        count: int | None
        if quantity is None:
            count = None
        elif quantity.isdigit():
            count = int(quantity)
        else:
            count = _NUMBER_WORDS[quantity.lower()]
        rest = match.group("rest")
        moving = _MOTION.search(rest)
        motion = _MOTION_WORDS[moving.group(1).lower()] if moving else None
        positions = _positions(rest[: moving.start()] if moving else rest)
        if cls in mentions:  # the same class twice: add counts, unite positions
            old = mentions[cls]
            total = None if old.count is None or count is None else old.count + count
            merged = [p for p in POSITIONS if p in set(old.positions) | set(positions)]
            mentions[cls] = ObjectMention(total, merged, old.motion or motion)
        else:
            mentions[cls] = ObjectMention(count, positions, motion)
    return mentions, False


def parse_response(text: str | None) -> ParsedResponse:
    """Parse a (possibly imperfect) structured answer into fields and object lists."""
    result = ParsedResponse()
    if not text:
        return result
    sections: list[tuple[str, int, int]] = []  # (name, start of value, end of header)
    for match in _SECTION.finditer(text):
        raw = re.sub(r"[\s_\-.]", "", match.group("name").lower())
        name = "relation" if raw.startswith("roadvs") else _SECTION_NAMES[raw]
        sections.append((name, match.end(), match.start()))
        if name == "context":
            break  # the free-text caption runs to the end; headers inside it are text
    seen: set[str] = set()
    for index, (name, start, _) in enumerate(sections):
        end = sections[index + 1][2] if index + 1 < len(sections) else len(text)
        value = text[start:end]
        if name in seen:
            continue  # first occurrence wins
        seen.add(name)
        if name == "sidewalk":
            result.sidewalk = _first_word_value(value, _POSITION_WORDS)
        elif name == "road":
            result.road = _first_word_value(value, _POSITION_WORDS)
        elif name == "relation":
            result.relation = _first_word_value(value.replace("-", "_"), _RELATION_WORDS)
        elif name == "nearby":
            result.has_nearby = True
            result.near, result.nearby_none = _parse_objects(value, result.unparsed)
        elif name == "far":
            result.has_far = True
            result.far, _ = _parse_objects(value, result.unparsed)
        elif name == "context":
            result.context = value.strip()
    return result


def scene_from_parsed(parsed: ParsedResponse, image: str = "") -> SceneAnnotation:
    """A normalised scene from a parsed answer (missing fields -> unknown; unknown counts ->
    one object per named position; close objects' motions when the answer names any)."""

    def objects(mentions: dict[str, ObjectMention]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for cls, mention in mentions.items():
            positions = mention.positions or ["center"]
            count = mention.count if mention.count is not None else len(positions)
            # spread the count over the named positions, in order
            out[cls] = [positions[i % len(positions)] for i in range(max(count, len(positions)))]
        return out

    motion = {cls: m.motion for cls, m in parsed.near.items() if m.motion in MOTIONS}
    return SceneAnnotation.build(
        image=image,
        sidewalk=parsed.sidewalk or "unknown",
        road=parsed.road or "unknown",
        near=objects(parsed.near),
        far=objects(parsed.far),
        motion=motion or None,
    )
