"""Fixtures shared by the whole suite. Nothing here reaches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests build tiny models locally; nothing may come from the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

from roadscene.paths import sensation_dir as _sensation_dir  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sensation_dir() -> Path:
    """The real SENSATION data (read-only, beside the checkout or $ROADSCENE_SENSATION_DIR)."""
    path = _sensation_dir()
    if not (path / "captions.csv").is_file():
        pytest.fail(
            f"SENSATION data not found at {path}: set ROADSCENE_SENSATION_DIR to the folder "
            "holding captions.csv and annotations.csv"
        )
    return path
