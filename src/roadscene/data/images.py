"""Images of data rows: resolving their paths and opening them.

A missing or unreadable image raises InputError naming it (and the data row); with
`on_bad_image="skip"` the row is skipped and counted. Never a substituted image.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


# What an upload may be: formats every browser can encode and PIL decodes without extra libraries.
UPLOAD_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")


def open_image_bytes(
    data: bytes,
    *,
    name: str = "upload",
    max_pixels: int,
    formats: Sequence[str] = UPLOAD_FORMATS,
) -> Image.Image:
    """An image received as bytes (an upload), as RGB.

    The size is read from the file's header and refused above `max_pixels` before any pixel is
    decoded, so a decompression bomb (a small file of huge dimensions) costs nothing. A format
    outside `formats`, a truncated or unreadable file is an InputError naming `name`.
    """
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError("empty image upload", path=name)
    try:
        with warnings.catch_warnings():
            # PIL only warns between its own limit and twice it; any such image is refused too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(formats)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise InputError(
                        f"image of {width} x {height} pixels is over the limit of "
                        f"{max_pixels:,} pixels",
                        path=name,
                    )
                return image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # PIL's own guard fired first (it runs inside Image.open); its message gives the size
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(found.group(1)):,} pixels" if found else "pixels"
        raise InputError(
            f"image of {size} is over the limit of {min(max_pixels, _pil_limit()):,} pixels",
            path=name,
        ) from None
    except UnidentifiedImageError:
        raise InputError(
            f"not a {', '.join(formats[:-1])} or {formats[-1]} image", path=name
        ) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"unreadable image: {err}", path=name) from None


def _pil_limit() -> int:
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS or 2**63


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
