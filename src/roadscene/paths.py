"""Where the shared SENSATION data lives (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

SENSATION_ENV = "ROADSCENE_SENSATION_DIR"


def sensation_dir() -> Path:
    """The SENSATION folder: `$ROADSCENE_SENSATION_DIR`, else `../shared/sensation` beside the
    checkout (found from this file, then from the working directory)."""
    env = os.environ.get(SENSATION_ENV)
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    for base in (checkout, Path.cwd()):
        candidate = base.parent / "shared" / "sensation"
        if candidate.is_dir():
            return candidate
    return checkout.parent / "shared" / "sensation"
