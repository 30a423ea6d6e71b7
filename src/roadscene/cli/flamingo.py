"""`roadscene model convert-openflamingo`: assemble the published OpenFlamingo-3B pieces into one
folder that `--model DIR` loads (registered on the `model` sub-app)."""

from __future__ import annotations

from pathlib import Path

import typer


def convert_openflamingo(
    checkpoint: Path = typer.Option(
        ...,
        "--checkpoint",
        help="OpenFlamingo checkpoint.pt (openflamingo/OpenFlamingo-3B-vitl-mpt1b).",
    ),
    lm: str = typer.Option(
        "mosaicml/mpt-1b-redpajama-200b",
        "--lm",
        help="MPT-1B: hub id or local folder (config.json + weights).",
    ),
    vision: str = typer.Option(
        "openai/clip-vit-large-patch14", "--vision", help="CLIP ViT-L/14: hub id or local folder."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write (written atomically)."),
    tokenizer: str | None = typer.Option(
        None,
        "--tokenizer",
        help="GPT-NeoX-20B tokenizer id or folder (default: the LM folder's, else "
        "EleutherAI/gpt-neox-20b).",
    ),
) -> None:
    """Checkpoint + MPT-1B + CLIP -> safetensors, config, tokenizer (+3 tokens, 50280 rows)."""
    from roadscene.models.flamingo.convert import convert_openflamingo as convert

    path = convert(checkpoint, lm, vision, out, tokenizer=tokenizer)
    typer.echo(f"wrote OpenFlamingo model to {path} (load it with --model {path})")
