"""Model architectures as data: the real-size configs (and tiny variants) of each family.

Each `resources/arch/<name>.json` holds the architecture fields of a published model config
(`model`, passed to the family's config class), the processor settings that decide how many
image tokens an image costs (`processor`), and the benchmark's input settings (`bench`). No
weights: a model built from these has random weights and exactly the real model's cost.
`list_archs()` names them; `load_arch(name)` hands out a fresh copy.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from pydantic import BaseModel, Field

from roadscene.errors import InputError

_ARCH_PACKAGE = "roadscene.resources.arch"


class ArchSpec(BaseModel):
    """One stored architecture."""

    name: str = Field(description="registry name, the file name without .json")
    family: str = Field(description="model family (`roadscene.models.get_family`)")
    description: str = Field(default="", description="what the architecture is")
    source: str = Field(default="", description="where the values come from")
    model: dict[str, Any] = Field(description="keyword arguments of the family's config class")
    processor: dict[str, Any] = Field(
        default_factory=dict, description="image-processor settings (sizes, tiling)"
    )
    bench: dict[str, Any] = Field(
        default_factory=dict, description="benchmark inputs (image size, reduced processor)"
    )


def _arch_files() -> dict[str, Any]:
    folder = resources.files(_ARCH_PACKAGE)
    return {
        entry.name.removesuffix(".json"): entry
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    }


def list_archs() -> list[str]:
    """Names accepted by `load_arch`."""
    return sorted(_arch_files())


def load_arch(name: str) -> ArchSpec:
    """A fresh copy of the architecture `name`; an unknown name lists the valid ones."""
    files = _arch_files()
    entry = files.get(name)
    if entry is None:
        raise InputError(
            f"unknown architecture '{name}'; valid: {', '.join(sorted(files))}", field="arch"
        )
    spec = ArchSpec.model_validate(json.loads(entry.read_text(encoding="utf-8")))
    if spec.name != name:
        raise InputError(
            f"architecture file names '{spec.name}' but is stored as '{name}.json'", field="name"
        )
    return spec
