"""Images of data rows: resolving their paths and opening them.

`open_image` is the one way an image reaches a model. A missing or unreadable image raises
InputError naming it (and the data row) and saying what is wrong: not found, a folder, a named
pipe, a broken link or a link loop, not an image, truncated, or larger than MAX_IMAGE_PIXELS (a
decompression bomb is refused before it is decoded). With `on_bad_image="skip"` the row is
skipped and counted. Never a substituted image. 16-bit and 32-bit grey images are scaled to 8
bits (not clipped to white).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from roadscene.errors import InputError, exception_summary
from roadscene.io import regular_file

if TYPE_CHECKING:
    from PIL import Image

    from roadscene.data.records import ExampleRecord

OnBadImage = Literal["error", "skip"]

#: Largest image opened: 64 megapixels (8000 x 8000). Models see a few hundred pixels a side;
#: anything far bigger is a mistake or a decompression bomb (a small file that decodes to GBs).
MAX_IMAGE_PIXELS = 64_000_000


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


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB without losing the picture: wide grey modes are scaled to 8 bits first (PIL's own
    conversion clips them, so a 16-bit PNG would come out white)."""
    import numpy as np
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F" and values.size and values.max() <= 1.0:
            top = 1.0  # a float image in [0, 1]
        elif image.mode.startswith("I;16") or (values.size and values.max() > 255):
            top = 65535.0
        else:
            top = 255.0
        scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        image = Image.fromarray(scaled, mode="L")
    return image.convert("RGB")


@contextmanager
def _decoding(name: str | Path, where: str, max_pixels: int) -> Iterator[None]:
    """One InputError naming the image for whatever decoding it raises: too many pixels (PIL's
    own guard or ours), not an image, truncated, out of memory."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Our own limit applies; PIL's warning between 89 and 179 megapixels is not needed.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except InputError:
        raise
    except Image.DecompressionBombError as err:  # PIL's own stop, above twice its limit
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"of {int(pixels.group(1)):,} pixels" if pixels else "too large"
        raise InputError(
            f"image {size} is over the limit of {max_pixels:,} pixels (a decompression bomb?)"
            f"{where}",
            path=name,
        ) from None
    except MemoryError:
        raise InputError(f"image does not fit in memory{where}", path=name) from None
    except Exception as err:  # PIL raises OSError, ValueError, SyntaxError, struct.error...
        raise InputError(f"unreadable image: {exception_summary(err)}{where}", path=name) from None


def _decoded(image: Image.Image, name: str | Path, where: str, max_pixels: int) -> Image.Image:
    """The opened image as RGB, refused from its header's size before any pixel is decoded."""
    width, height = image.size
    if width * height > max_pixels:
        raise InputError(
            f"image of {width} x {height} pixels is over the limit of {max_pixels:,} pixels (a "
            f"decompression bomb?){where}",
            path=name,
        )
    image.load()
    return _to_rgb(image)


def open_image(path: Path, *, source: Path | None = None, line: int | None = None) -> Image.Image:
    """The image as RGB; missing or unreadable -> InputError naming the image (and data row)."""
    from PIL import Image

    where = f" (row {source}:{line})" if source is not None else ""
    try:
        regular_file(path, "image")
    except InputError as err:
        raise InputError(f"{err.reason}{where}", path=path) from None
    with _decoding(path, where, MAX_IMAGE_PIXELS), Image.open(path) as image:
        return _decoded(image, path, where, MAX_IMAGE_PIXELS)


# What an upload may be: formats every browser can encode and PIL decodes without extra libraries.
UPLOAD_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP")


def open_image_bytes(
    data: bytes,
    *,
    name: str = "upload",
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: Sequence[str] = UPLOAD_FORMATS,
) -> Image.Image:
    """An image received as bytes (an upload), as RGB, through the same checks as `open_image`:
    the size is read from the header and refused above `max_pixels` before any pixel is decoded
    (a decompression bomb costs nothing), wide grey modes are scaled; a format outside `formats`,
    a truncated or unreadable file is an InputError naming `name`."""
    import io

    from PIL import Image

    if not data:
        raise InputError("empty image upload", path=name)
    try:
        with (
            _decoding(name, "", max_pixels),
            Image.open(io.BytesIO(data), formats=list(formats)) as image,
        ):
            return _decoded(image, name, "", max_pixels)
    except InputError as err:
        if "UnidentifiedImageError" in err.reason:
            raise InputError(
                f"not a {', '.join(formats[:-1])} or {formats[-1]} image", path=name
            ) from None
        raise


def check_images(
    records: list[ExampleRecord], on_bad_image: OnBadImage
) -> tuple[list[ExampleRecord], BadImages]:
    """Open every image (and clip) once up front so a bad one fails before any model work
    starts. Also takes preference pairs (`PairRecord`, whose `clip` is always None)."""
    kept: list[ExampleRecord] = []
    bad = BadImages()
    for record in records:
        clip = record.clip
        try:
            if clip is not None:
                clip.open(source=record.source, line=record.line)
            else:
                open_image(record.image_path, source=record.source, line=record.line)
        except InputError as err:
            if on_bad_image == "error":
                raise
            # the file at fault: for a clip, the video or the frame that failed
            where = err.path if clip is not None and err.path else str(record.image_path)
            bad.rows.append((str(record.source), record.line, where, err.reason))
            continue
        kept.append(record)
    return kept, bad
