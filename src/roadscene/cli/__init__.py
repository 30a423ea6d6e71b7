"""The `roadscene` command line: one Typer app; each sub-command lives in its own module."""
