"""Opening an uploaded image from bytes: the formats allowed, the pixel limit checked from the
header before decoding, and every bad upload one InputError naming it."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from roadscene.data.images import open_image_bytes
from roadscene.errors import InputError


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_allowed_formats_open_as_rgb(fmt) -> None:
    data = _encoded(Image.new("RGB", (64, 48), (200, 30, 30)), fmt)
    image = open_image_bytes(data, max_pixels=10_000)
    assert image.mode == "RGB" and image.size == (64, 48)
    grey = _encoded(Image.new("L", (8, 8), 90), "PNG")
    assert open_image_bytes(grey, max_pixels=100).mode == "RGB"


def test_a_decompression_bomb_is_refused_from_its_header(png_bomb) -> None:
    assert len(png_bomb) < 300_000  # a small upload
    start = time.perf_counter()
    with pytest.raises(
        InputError, match=r"400,000,000 pixels is over the limit of 24,000,000"
    ) as err:
        open_image_bytes(png_bomb, name="bomb.png", max_pixels=24_000_000)
    assert time.perf_counter() - start < 1.0  # the header only, never the pixels
    assert err.value.path == "bomb.png"
    # below PIL's own guard, our limit is checked from the header the same way
    big = _encoded(Image.new("1", (4000, 3000)), "PNG")
    with pytest.raises(InputError, match=r"4000 x 3000 pixels is over the limit of 6,000,000"):
        open_image_bytes(big, max_pixels=6_000_000)
    with pytest.raises(InputError, match=r"65 x 48 pixels is over the limit of 3,000"):
        open_image_bytes(_encoded(Image.new("RGB", (65, 48)), "PNG"), max_pixels=3_000)


def test_bad_uploads_are_named() -> None:
    jpeg = _encoded(Image.new("RGB", (320, 240), (10, 120, 200)), "JPEG")
    with pytest.raises(InputError, match="unreadable image: OSError: image file is truncated"):
        open_image_bytes(jpeg[: len(jpeg) // 2], name="frame.jpg", max_pixels=10**6)
    with pytest.raises(InputError, match="not a JPEG, PNG or WEBP image"):
        open_image_bytes(b"Sidewalk: left. Road: right.\n", max_pixels=10**6)
    gif = _encoded(Image.new("RGB", (8, 8)), "GIF")
    with pytest.raises(InputError, match="not a JPEG, PNG or WEBP image"):
        open_image_bytes(gif, max_pixels=10**6)
    with pytest.raises(InputError, match="empty image upload"):
        open_image_bytes(b"", max_pixels=10**6)
