"""A PNG grid of one image under every augmentation transform, so a person can see what
training sees (`roadscene data augment-preview`)."""

from __future__ import annotations

from pathlib import Path

from roadscene.data.augment import (
    TRANSFORMS,
    Augmenter,
    AugmentSection,
    TransformSettings,
    item_generators,
)
from roadscene.data.images import open_image


def preview_rows(
    image_path: str | Path,
    section: AugmentSection | None = None,
    *,
    samples: int = 4,
    strength: float | None = None,
    seed: int = 0,
) -> list[tuple[str, list]]:
    """(label, images) rows: the original; each transform alone, always firing, at its
    strength in `section` (or `strength`, default 0.5), over `samples` seeds; the flip; and,
    when `section` is given, the whole configured pipeline over `samples` items."""
    from PIL import ImageOps

    image = open_image(Path(image_path))
    configured = section.transforms if section is not None else {}
    rows: list[tuple[str, list]] = [("original", [image])]
    for name in TRANSFORMS:
        level = (
            strength if strength is not None else configured.get(name, TransformSettings()).strength
        )
        alone = Augmenter(
            AugmentSection(transforms={name: TransformSettings(p=1.0, strength=level)}), seed
        )
        images = [
            alone.augment_image(image, item_generators(seed, 0, i))[0] for i in range(samples)
        ]
        rows.append((f"{name} {level:.2f}", images))
    rows.append(("hflip", [ImageOps.mirror(image)]))
    if section is not None and section.active:
        whole = Augmenter(section, seed)
        rows.append(
            (
                "configured",
                [
                    whole.augment_image(image, item_generators(whole.seed, 0, i))[0]
                    for i in range(samples)
                ],
            )
        )
    return rows


def write_preview_grid(rows: list[tuple[str, list]], out: str | Path, scale: int = 2) -> Path:
    """Draw the rows as one PNG (a label column, then the images, scaled up by `scale`)."""
    from PIL import Image, ImageDraw

    from roadscene.io import atomic_write

    first = rows[0][1][0]
    width, height = first.width * scale, first.height * scale
    label_width = 130
    columns = max(len(images) for _, images in rows)
    grid = Image.new(
        "RGB", (label_width + columns * (width + 4), len(rows) * (height + 4)), "white"
    )
    draw = ImageDraw.Draw(grid)
    for row, (label, images) in enumerate(rows):
        top = row * (height + 4)
        draw.text((4, top + height // 2 - 6), label, fill=(0, 0, 0))
        for column, image in enumerate(images):
            tile = image.resize((width, height), Image.Resampling.NEAREST)
            grid.paste(tile, (label_width + column * (width + 4), top))
    out = Path(out)
    with atomic_write(out, "wb") as handle:
        grid.save(handle, format="PNG")
    return out
