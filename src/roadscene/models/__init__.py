"""Model families by name. Each family module is imported only when asked for.

Adding a family: write `roadscene/models/<name>.py` with a `ModelFamily` subclass, add one line
to `_FAMILIES` and a recipe in `configs/`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from roadscene.errors import InputError

if TYPE_CHECKING:
    from roadscene.models.base import ModelFamily

# name -> "module:Class" (lazy: importing torch/transformers only when a family is used)
_FAMILIES: dict[str, str] = {
    "smolvlm": "roadscene.models.smolvlm:SmolVLMFamily",
    "flamingo": "roadscene.models.flamingo.family:FlamingoFamily",
}


def list_families() -> list[str]:
    """Names accepted by `get_family`."""
    return sorted(_FAMILIES)


def get_family(name: str) -> ModelFamily:
    """A fresh family object for `name`; an unknown name is an InputError listing valid ones."""
    target = _FAMILIES.get(name)
    if target is None:
        raise InputError(
            f"unknown model family '{name}'; valid families: {', '.join(list_families())}",
            field="family",
        )
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)()
