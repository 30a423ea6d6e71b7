"""Answers of a horizontally flipped image: left and right swapped wherever the text says them.

A structured answer is parsed, its scene mirrored (`SceneAnnotation.mirrored`) and rendered
again, so the mirrored text is exactly what `render_response` writes for the mirrored
annotation (positions listed left < center < right, the relation derived anew); the cue of the
mirrored fields is the cue of the mirrored scene. Free text (a caption, the `Context:` part)
has the whole words `left` and `right` swapped, keeping their case.
"""

from __future__ import annotations

import re

from roadscene.targets.answer import parse_response, render_response, scene_from_parsed

# letters only around the word, so `left_of` and `keep_left` swap but `leftover` does not
_SIDE_WORD = re.compile(r"(?<![a-z])(left|right)(?![a-z])", re.IGNORECASE)


def _swap(match: re.Match[str]) -> str:
    word = match.group(1)
    other = "right" if word.lower() == "left" else "left"
    if word.isupper():
        return other.upper()
    if word[0].isupper():
        return other.capitalize()
    return other


def mirror_text(text: str) -> str:
    """`left` <-> `right` as whole words (also in `left_of` / `right_of`), case kept."""
    return _SIDE_WORD.sub(_swap, text)


def mirror_response(text: str) -> str:
    """The answer for the mirrored image.

    A complete structured answer (fields and `Nearby:`) is rendered again from its mirrored
    scene, with its `Context:` caption mirrored as free text; anything else is mirrored as free
    text.
    """
    parsed = parse_response(text)
    if not parsed.complete or parsed.unparsed:
        return mirror_text(text)
    scene = scene_from_parsed(parsed).mirrored()
    context = mirror_text(parsed.context) if parsed.context else None
    return render_response(scene, context)
