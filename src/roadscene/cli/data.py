"""`roadscene data ...`: annotation schema, validation and dataset building."""

from __future__ import annotations

import typer

app = typer.Typer(help="Annotation schema, validation and dataset building.", no_args_is_help=True)
