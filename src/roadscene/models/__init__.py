"""Model families by name. Each family module is imported only when asked for.

Adding a family: write `roadscene/models/<name>.py` with a `ModelFamily` subclass that declares
what it is (docs/architecture.md), add one line to `_FAMILIES` and a recipe in `configs/`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from roadscene.errors import InputError

if TYPE_CHECKING:
    from roadscene.models.base import ModelFamily

# name -> "module:Class" (lazy: importing torch/transformers only when a family is used)
_FAMILIES: dict[str, str] = {
    "smolvlm": "roadscene.models.smolvlm:SmolVLMFamily",
    "qwen3vl": "roadscene.models.qwen3vl:Qwen3VLFamily",
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
    from roadscene.models.loading import quiet_optional_kernel_notices

    quiet_optional_kernel_notices()  # before a family's imports reach bitsandbytes
    module = importlib.import_module(module_name)
    return getattr(module, class_name)()


def family_for_model_type(model_type: str) -> ModelFamily | None:
    """The family that loads config.json's `model_type`, or None."""
    for name in list_families():
        family = get_family(name)
        if model_type in family.model_types:
            return family
    return None


def detect_family(source: str | Path) -> ModelFamily:
    """The family of a local model folder (its config.json's `model_type`) or of a hub id
    (its config in the local hub cache, or a family's default id). Anything else is an
    InputError asking for `--family`."""
    from roadscene.models.base import read_model_type

    path = Path(source)
    if path.is_dir():
        model_type = read_model_type(path)
    else:
        for name in list_families():
            family = get_family(name)
            if family.default_model_id == str(source):
                return family
        model_type = _cached_hub_model_type(str(source))
        if model_type is None:
            raise InputError(
                "cannot tell the model family: not a local folder and no config in the local "
                f"hub cache; pass --family ({', '.join(list_families())})",
                path=source,
            )
    family = family_for_model_type(model_type)
    if family is None:
        types = {t: n for n in list_families() for t in get_family(n).model_types}
        raise InputError(
            f"model type '{model_type}' belongs to no roadscene family (known: "
            f"{', '.join(f'{t} -> {n}' for t, n in sorted(types.items()))})",
            path=source,
        )
    return family


def _cached_hub_model_type(hub_id: str) -> str | None:
    """`model_type` of a hub model's config.json if it is in the local cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return None
    try:
        cached = try_to_load_from_cache(hub_id, "config.json")
    except Exception:  # an id that is not a valid repo name
        return None
    if not isinstance(cached, str):
        return None
    from roadscene.io import read_json

    try:
        config = read_json(cached)
    except InputError:
        return None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return model_type if isinstance(model_type, str) else None
