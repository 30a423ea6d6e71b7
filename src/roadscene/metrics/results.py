"""What every evaluation returns: the report (results) and per-sample details, kept apart."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any


@dataclass
class EvaluationResult:
    """`report`: corpus figures + signature (JSON-ready). `details`: one row per item."""

    report: dict[str, Any]
    details: list[dict[str, Any]] = field(default_factory=list)


def _file_name(value: Any) -> Any:
    return Path(value).name if isinstance(value, str | Path) and value else value


def signature(
    *, metrics: dict[str, Any], settings: dict[str, Any], data: dict[str, Any]
) -> dict[str, Any]:
    """Reproducibility signature (as sacrebleu prints one): versions, settings, data files."""
    try:
        own = metadata.version("roadscene")
    except metadata.PackageNotFoundError:
        own = None
    return {
        "roadscene": own,
        "metric_versions": metrics,
        "settings": settings,
        "data": {key: _file_name(value) for key, value in data.items()},
        "python": platform.python_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
