"""From an uploaded file to what the model sees: the frames of one example.

Each accepted media type has a reader turning the upload's bytes into frames (RGB images). An image
is one frame. A short clip would be its sampled frames: adding clips means adding their media
types here with a reader; the request path, batching and answers stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from roadscene.data.images import open_image_bytes
from roadscene.errors import InputError
from roadscene.serve.guard import ApiError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
CLIP_TYPES = frozenset({"video/mp4", "video/webm", "video/quicktime", "video/x-matroska"})


@dataclass(frozen=True)
class UploadLimits:
    max_pixels: int


FrameReader = Callable[[bytes, str, UploadLimits], list["Image.Image"]]


def _image_frames(data: bytes, content_type: str, limits: UploadLimits) -> list[Image.Image]:
    # any of the image formats, whatever the declared one: browsers label files loosely
    return [open_image_bytes(data, name="upload", max_pixels=limits.max_pixels)]


READERS: dict[str, FrameReader] = dict.fromkeys(IMAGE_TYPES, _image_frames)


def read_frames(data: bytes, content_type: str | None, limits: UploadLimits) -> list[Image.Image]:
    """The frames of an upload; an unsupported type is a 415 error, unreadable content a 400,
    each naming the problem."""
    media = (content_type or "").split(";")[0].strip().lower()
    reader = READERS.get(media)
    if reader is None:
        accepted = ", ".join(sorted(READERS))
        if media in CLIP_TYPES:
            detail = f"video clips ({media}) are not supported yet: send one frame ({accepted})"
        else:
            detail = f"unsupported upload type '{media or 'none'}': send {accepted}"
        raise ApiError(415, "unsupported_media_type", detail)
    try:
        return reader(data, media, limits)
    except InputError as err:
        raise ApiError(400, "bad_image", str(err)) from None
