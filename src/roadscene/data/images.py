"""Images of data rows: resolving their paths and opening them.

A missing or unreadable image raises InputError naming it (and the data row); with
`on_bad_image="skip"` the row is skipped and counted. Never a substituted image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from roadscene.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

    from roadscene.data.records import ExampleRecord

OnBadImage = Literal["error", "skip"]


@dataclass
class BadImages:
    """Rows skipped with `on_bad_image=skip`: (data file, line, image path, reason)."""

    rows: list[tuple[str, int, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


def resolve_image(image: str, image_root: str | Path) -> Path:
    """An image path as written in a data file, resolved against `image_root` (absolute paths
    are kept)."""
    path = Path(image)
    return path if path.is_absolute() else Path(image_root) / path


def open_image(path: Path, *, source: Path | None = None, line: int | None = None) -> Image.Image:
    """The image as RGB; missing or unreadable -> InputError naming the image (and data row)."""
    from PIL import Image, UnidentifiedImageError

    where = f" (row {source}:{line})" if source is not None else ""
    if not path.is_file():
        raise InputError(f"image not found{where}", path=path)
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise InputError(f"unreadable image: {err}{where}", path=path) from None


def check_images(
    records: list[ExampleRecord], on_bad_image: OnBadImage
) -> tuple[list[ExampleRecord], BadImages]:
    """Open every image once up front so a bad one fails before any model work starts."""
    kept: list[ExampleRecord] = []
    bad = BadImages()
    for record in records:
        try:
            open_image(record.image_path, source=record.source, line=record.line)
        except InputError as err:
            if on_bad_image == "error":
                raise
            bad.rows.append((str(record.source), record.line, str(record.image_path), err.reason))
            continue
        kept.append(record)
    return kept, bad
