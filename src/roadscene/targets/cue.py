"""The navigation cue: one short, actionable sentence for a pedestrian, from the structured fields.

A deterministic rule table (first matching rule wins; documented in docs/structured.md):

| rule | when                                                        | action                    |
|------|-------------------------------------------------------------|---------------------------|
| R1   | road `front` or relation `crossing_front`                   | stop_crossing             |
| R2   | a close object in the center (an approaching one is named   | step_left / step_right /  |
|      |   first: it outranks a static one);                         | step_either /             |
|      |   free side = no close object there and no road there;      | stop_blocked              |
|      |   both free -> the sidewalk's side if it is left or right   |                           |
| R3   | road `center`                                               | keep_{sidewalk side} /    |
|      |                                                             | caution                   |
| R4   | close objects on one side only -> keep to the other side,   | keep_left / keep_right /  |
|      |   unless the road or the sidewalk is there; on both sides   | caution / straight        |
|      |   -> straight on                                            |                           |
| R5   | nothing close: keep toward a left/right sidewalk (caution   | keep_left / keep_right /  |
|      |   if the road is on that side too), straight on a center    | straight / caution        |
|      |   sidewalk, caution when no sidewalk is seen                |                           |

"Road side" means the side the road field names (left/right) and the side the relation implies
(`left_of` -> left, `right_of` -> right): an inconsistent answer blocks both, so a cue never sends
anyone toward a road any field mentions.

Answers about clips may say how close objects move (`approaching`, `moving away`, `crossing`):
an approaching object is the one a cue names at its position, its sentence says "approaching",
and it makes the cue's urgency high wherever it is.

For a live assistant every cue also has an urgency (`cue_urgency`: high for a crossing,
something close in the path or something approaching, low only when the path is clear), objects are given as clock
directions ("person at 12 o'clock, close"; `clock_directions`), and `spoken_cue` composes what is
said at a chosen verbosity. A frame too poor to read gets `unclear_view_cue()` (rule R0) instead
of a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from roadscene.schema import OBJECT_CLASSES, POSITIONS, SceneAnnotation
from roadscene.targets.answer import OBJECT_NAMES, ObjectMention, ParsedResponse, scene_from_parsed

CueAction = Literal[
    "stop_crossing",
    "step_left",
    "step_right",
    "step_either",
    "stop_blocked",
    "keep_left",
    "keep_right",
    "straight",
    "caution",
]
CUE_ACTIONS: tuple[str, ...] = CueAction.__args__  # type: ignore[attr-defined]
# Not from the table: the frame itself was unusable (rule R0).
ViewAction = Literal["raise_phone"]
UNCLEAR_VIEW_TEXT = "Camera view unclear: raise the phone."
SIDES: tuple[str, str] = ("left", "right")
PATH_CLEAR = "Path clear"

Urgency = Literal["low", "medium", "high"]
URGENCY_LEVELS: tuple[str, ...] = Urgency.__args__  # type: ignore[attr-defined]  # low -> high
Verbosity = Literal["brief", "normal", "detailed"]
# Positions as clock hours for a walker facing 12 o'clock.
CLOCK_HOURS: dict[str, int] = {"left": 10, "center": 12, "right": 2}


def cue_urgency(action: str, rule: str, approaching: bool = False) -> Urgency:
    """high: a crossing (R1), something close in the path (R2) or something close approaching
    (a clip's answer); low: nothing close and a sidewalk to follow (R5 keep / straight); medium:
    everything else (the road ahead in the center, objects close beside the path, no sidewalk
    seen, an unclear view)."""
    if rule in ("R1", "R2") or approaching:
        return "high"
    if rule == "R5" and action != "caution":
        return "low"
    return "medium"


@dataclass(frozen=True)
class NavigationCue:
    """The cue: what to do (`action`), which rule chose it, the sentence to show or say, and
    whether something close is approaching (answers about clips)."""

    action: CueAction | ViewAction
    rule: str
    text: str
    approaching: bool = False

    @property
    def urgency(self) -> Urgency:
        return cue_urgency(self.action, self.rule, self.approaching)

    def to_dict(self) -> dict[str, Any]:
        """action, rule, text, urgency; `approaching` only when true (still-image cues read as
        before)."""
        out: dict[str, Any] = {
            "action": self.action,
            "rule": self.rule,
            "text": self.text,
            "urgency": self.urgency,
        }
        if self.approaching:
            out["approaching"] = True
        return out


def unclear_view_cue() -> NavigationCue:
    """The cue for a frame too dark, uniform or blurred to read: say so instead of guessing."""
    return NavigationCue("raise_phone", "R0", UNCLEAR_VIEW_TEXT)


def _other(side: str) -> str:
    return "right" if side == "left" else "left"


def road_sides(road: str, relation: str) -> set[str]:
    """Sides (left/right) where any field puts the road."""
    sides = {road} & set(SIDES)
    if relation == "left_of":
        sides.add("left")
    elif relation == "right_of":
        sides.add("right")
    return sides


def _objects_at(
    near: dict[str, list[str]], position: str, approaching: frozenset[str] = frozenset()
) -> str:
    """`Obstacle`, `2 people`, `Objects`: what is close at one position (render order); the
    approaching classes there, when any, outrank the rest."""
    counts = {cls: near.get(cls, []).count(position) for cls in OBJECT_CLASSES}
    present = [cls for cls, count in counts.items() if count]
    if any(cls in approaching for cls in present):
        present = [cls for cls in present if cls in approaching]
    if len(present) > 1:
        return "Objects"
    cls = present[0]
    singular, plural = OBJECT_NAMES[cls]
    name = singular if counts[cls] == 1 else plural
    return name[0].upper() + name[1:]


def _objects_on_sides(near: dict[str, list[str]], sides: list[str]) -> str:
    names = {_objects_at(near, side) for side in sides}
    return names.pop() if len(names) == 1 else "Objects"


def navigation_cue(
    sidewalk: str,
    road: str,
    relation: str,
    near: dict[str, list[str]] | None = None,
    motion: dict[str, str] | None = None,
) -> NavigationCue:
    """The cue for normalised fields and close objects (class -> one position per object), with
    their motions when the answer is about a clip (class -> motion word)."""
    near = {cls: list(positions) for cls, positions in (near or {}).items()}
    approaching = frozenset(
        cls for cls, word in (motion or {}).items() if word == "approaching" and near.get(cls)
    )
    cue = _table_cue(sidewalk, road, relation, near, approaching)
    return replace(cue, approaching=True) if approaching else cue


def _moving_at(near: dict[str, list[str]], position: str, approaching: frozenset[str]) -> bool:
    return any(position in near.get(cls, []) for cls in approaching)


def _table_cue(
    sidewalk: str,
    road: str,
    relation: str,
    near: dict[str, list[str]],
    approaching: frozenset[str],
) -> NavigationCue:
    """The rule table (module docstring), first matching rule."""
    occupied = {p for positions in near.values() for p in positions if p in POSITIONS}
    roads = road_sides(road, relation)

    # R1: a road crossing ahead outranks everything.
    if road == "front" or relation == "crossing_front":
        return NavigationCue(
            "stop_crossing", "R1", "Road crossing ahead: stop and check for traffic."
        )

    # R2: something close in the center of the path (an approaching object named first).
    if "center" in occupied:
        what = _objects_at(near, "center", approaching)
        what += " approaching" if _moving_at(near, "center", approaching) else " close"
        free = [side for side in SIDES if side not in occupied and side not in roads]
        if len(free) == 2 and sidewalk in SIDES:
            free = [sidewalk]
        if len(free) == 1:
            return NavigationCue(f"step_{free[0]}", "R2", f"{what} ahead: step to the {free[0]}.")
        if len(free) == 2:
            return NavigationCue(
                "step_either", "R2", f"{what} ahead: step around it, left or right."
            )
        return NavigationCue(
            "stop_blocked", "R2", f"{what} ahead, no free side: stop and go around with care."
        )

    # R3: the road runs straight ahead in the middle of the image.
    if road == "center":
        if sidewalk in SIDES and sidewalk not in roads and sidewalk not in occupied:
            return NavigationCue(
                f"keep_{sidewalk}",
                "R3",
                f"Road ahead in the center: keep to the sidewalk on your {sidewalk}.",
            )
        return NavigationCue(
            "caution", "R3", "Road ahead in the center: you may be on the road, walk with care."
        )

    # R4: close objects on the sides only.
    sides_taken = [side for side in SIDES if side in occupied]
    if len(sides_taken) == 2:
        what = _objects_on_sides(near, sides_taken)
        return NavigationCue(
            "straight", "R4", f"{what} close on both sides: go straight ahead with care."
        )
    if len(sides_taken) == 1:
        side = sides_taken[0]
        what = _objects_at(near, side, approaching)
        what += " approaching" if _moving_at(near, side, approaching) else " close"
        other = _other(side)
        if other in roads:
            return NavigationCue(
                "caution",
                "R4",
                f"{what} on the {side}, road on the {other}: go straight with care.",
            )
        if sidewalk == side:
            return NavigationCue(
                "caution", "R4", f"{what} on your sidewalk on the {side}: pass with care."
            )
        return NavigationCue(f"keep_{other}", "R4", f"{what} on the {side}: keep {other}.")

    # R5: nothing close.
    if sidewalk in SIDES:
        if sidewalk in roads:
            return NavigationCue(
                "caution",
                "R5",
                f"{PATH_CLEAR}, but the road is also on your {sidewalk}: walk with care.",
            )
        return NavigationCue(
            f"keep_{sidewalk}", "R5", f"{PATH_CLEAR}: keep to the sidewalk on your {sidewalk}."
        )
    if sidewalk == "center":
        return NavigationCue("straight", "R5", f"{PATH_CLEAR}: continue straight on the sidewalk.")
    return NavigationCue("caution", "R5", f"{PATH_CLEAR}, but no sidewalk seen: walk with care.")


def cue_for_scene(scene: SceneAnnotation) -> NavigationCue:
    """The cue for a normalised scene (annotation or parsed answer)."""
    return navigation_cue(scene.sidewalk, scene.road, scene.relation, scene.near, scene.motion)


def cue_for_parsed(parsed: ParsedResponse) -> NavigationCue:
    """The cue for a parsed answer: missing fields count as `unknown`, and a mention without a
    position counts as being in the center (the cautious reading)."""
    scene = scene_from_parsed(parsed)
    # keep the answer's own relation (scene_from_parsed re-derives it from sidewalk and road)
    relation = parsed.relation or "unknown"
    return navigation_cue(scene.sidewalk, scene.road, relation, scene.near, scene.motion)


# --- clock directions and the spoken sentence ----------------------------------------------------


def clock_phrase(
    cls: str, count: int, positions: Sequence[str], distance: str, motion: str | None = None
) -> str:
    """`person at 12 o'clock, close`, `2 cars at 10 and 2 o'clock, far`, `person at 12
    o'clock, close, approaching` (a clip); an object without a position: `person close,
    direction unknown`."""
    singular, plural = OBJECT_NAMES[cls]
    name = singular if count == 1 else f"{count} {plural}"
    hours = [str(CLOCK_HOURS[p]) for p in POSITIONS if p in positions]
    if not hours:
        phrase = f"{name} {distance}, direction unknown"
    else:
        where = hours[0] if len(hours) == 1 else f"{', '.join(hours[:-1])} and {hours[-1]}"
        phrase = f"{name} at {where} o'clock, {distance}"
    return f"{phrase}, {motion}" if motion else phrase


def _clock_phrases(mentions: dict[str, ObjectMention], distance: str) -> list[str]:
    ranked = []
    for order, cls in enumerate(OBJECT_CLASSES):
        mention = mentions.get(cls)
        if mention is None:
            continue
        count = mention.count or len(mention.positions) or 1
        # approaching first, then in the path (or of unknown direction: the cautious reading)
        calm = mention.motion != "approaching"
        beside = bool(mention.positions) and "center" not in mention.positions
        phrase = clock_phrase(cls, count, mention.positions, distance, mention.motion)
        ranked.append((calm, beside, order, phrase))
    return [phrase for *_, phrase in sorted(ranked)]


def clock_directions(parsed: ParsedResponse) -> dict[str, list[str]]:
    """Close and far objects of an answer as clock directions, objects approaching or in the
    path first."""
    return {"close": _clock_phrases(parsed.near, "close"), "far": _clock_phrases(parsed.far, "far")}


def _sentence(phrases: list[str]) -> str:
    text = "; ".join(phrases)
    return text[0].upper() + text[1:] + "."


def spoken_cue(
    cue: NavigationCue,
    directions: dict[str, list[str]],
    verbosity: Verbosity = "normal",
    caption: str | None = None,
) -> str:
    """What a live assistant says: brief = the cue; normal = the cue and where the close
    objects are; detailed = also the far objects and the caption."""
    parts = [cue.text]
    if verbosity != "brief" and directions.get("close"):
        parts.append(_sentence(directions["close"]))
    if verbosity == "detailed":
        if directions.get("far"):
            parts.append(_sentence(directions["far"]))
        if caption:
            parts.append(caption if caption.endswith((".", "!", "?")) else caption + ".")
    return " ".join(parts)
