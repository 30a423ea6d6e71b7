"""`gallery.html`: test images next to the predicted and the true answer and navigation cue.

One self-contained HTML file (images embedded as base64 PNG, no scripts, no network), so it can
be opened from any folder or attached to a message.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from roadscene.io import atomic_write
from roadscene.schema import MOVING_CLASSES, OBJECT_CLASSES, SceneAnnotation, motion_label
from roadscene.targets import cue_for_parsed, cue_for_scene, parse_response

GALLERY_FILE = "gallery.html"


@dataclass(frozen=True)
class GalleryItem:
    """One test image: its file, the true scene and target text, and the model's answer. A clip
    is shown by `png` (e.g. its frames side by side) instead of its file."""

    image_path: Path
    truth: SceneAnnotation
    target: str
    prediction: str
    png: bytes | None = None


def _near_set(near: dict[str, list[str]]) -> set[str]:
    return {cls for cls in OBJECT_CLASSES if near.get(cls)}


def item_verdicts(item: GalleryItem) -> dict[str, bool]:
    """Which parts of the answer are right: sidewalk, road, close-object classes, cue action,
    and for a clip the motions of the close objects both name."""
    parsed = parse_response(item.prediction)
    predicted_near = {cls for cls in parsed.near}
    verdicts = {
        "sidewalk": parsed.sidewalk == item.truth.sidewalk,
        "road": parsed.road == item.truth.road,
        "close objects": predicted_near == _near_set(item.truth.near),
        "cue": cue_for_parsed(parsed).action == cue_for_scene(item.truth).action,
    }
    if item.truth.motion is not None:
        both = [cls for cls in MOVING_CLASSES if cls in parsed.near and item.truth.near.get(cls)]
        verdicts["motion"] = all(
            motion_label(parsed.near[cls].motion) == item.truth.moving(cls) for cls in both
        )
    return verdicts


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.3rem; }
p.note { color: #555; max-width: 60rem; }
table { border-collapse: collapse; }
td, th { border-top: 1px solid #ddd; padding: .5rem .7rem; vertical-align: top; text-align: left; }
th { background: #f4f4f4; }
img { width: 192px; height: 192px; image-rendering: pixelated; border: 1px solid #aaa; }
img.clip { width: auto; }
.cue { font-weight: 600; }
.ok { color: #176f2c; } .bad { color: #b3261e; }
.tag { display: inline-block; margin: 0 .3rem .3rem 0; padding: 0 .4rem; border-radius: .3rem;
       font-size: .85rem; }
.tag.ok { background: #e3f4e6; } .tag.bad { background: #fbe4e2; }
code { white-space: pre-wrap; font-size: .85rem; }
"""


def gallery_html(items: Sequence[GalleryItem], title: str, note: str = "") -> str:
    """The gallery page for `items`."""
    rows = []
    for item in items:
        picture = item.png if item.png is not None else item.image_path.read_bytes()
        data = base64.b64encode(picture).decode("ascii")
        shown = ' class="clip"' if item.png is not None else ""
        predicted_cue = cue_for_parsed(parse_response(item.prediction))
        true_cue = cue_for_scene(item.truth)
        verdicts = item_verdicts(item)
        tags = "".join(
            f'<span class="tag {"ok" if right else "bad"}">{html.escape(name)} '
            f"{'&#10003;' if right else '&#10007;'}</span>"
            for name, right in verdicts.items()
        )
        cue_class = "ok" if verdicts["cue"] else "bad"
        rows.append(
            "<tr>"
            f'<td><img{shown} alt="{html.escape(item.image_path.name)}" '
            f'src="data:image/png;base64,{data}"><br><small>{html.escape(item.image_path.name)}'
            "</small></td>"
            f'<td>{tags}<div class="cue {cue_class}">{html.escape(predicted_cue.text)}</div>'
            f"<code>{html.escape(item.prediction)}</code></td>"
            f'<td><div class="cue">{html.escape(true_cue.text)}</div>'
            f"<code>{html.escape(item.target)}</code></td>"
            "</tr>"
        )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        + (f'<p class="note">{html.escape(note)}</p>' if note else "")
        + "<table><tr><th>image</th><th>predicted: cue and answer</th>"
        "<th>truth: cue and target</th></tr>" + "\n".join(rows) + "</table></body></html>\n"
    )


def write_gallery(
    items: Sequence[GalleryItem], path: str | Path, *, title: str, note: str = ""
) -> Path:
    """Write the gallery page atomically; a missing image is an error naming it."""
    from roadscene.errors import InputError

    for item in items:
        if item.png is None and not item.image_path.is_file():
            raise InputError("gallery image not found", path=item.image_path)
    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(gallery_html(items, title, note))
    return path
