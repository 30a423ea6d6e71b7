"""`roadscene model ...`: build tiny random-init checkpoints for tests and demos."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Model checkpoints: tiny random-init models.", no_args_is_help=True)


@app.command("tiny")
def tiny(
    out: Path = typer.Option(..., "--out", help="Folder to write the checkpoint to."),
    family: str = typer.Option("smolvlm", "--family", help="Model family (smolvlm, ...)."),
    corpus: Path | None = typer.Option(
        None,
        "--corpus",
        help="Text to train the tokenizer on: a JSON/JSONL data file (its prompt/response/caption "
        "strings) or a text file, one text per line. A built-in corpus is always included.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for weights and tokenizer."),
    image_size: int = typer.Option(96, help="Image side in pixels (one tile, no splitting)."),
    patch_size: int = typer.Option(12, help="Vision patch size in pixels."),
    vision_hidden_size: int = typer.Option(64, help="Vision encoder width."),
    vision_layers: int = typer.Option(2, help="Vision encoder layers."),
    text_hidden_size: int = typer.Option(64, help="Language model width."),
    text_layers: int = typer.Option(2, help="Language model layers."),
    vocab_size: int = typer.Option(1000, help="Upper bound on the BPE vocabulary."),
) -> None:
    """Build a tiny random-init checkpoint that loads like the real model (`--model OUT`)."""
    from roadscene.models import get_family

    family_obj = get_family(family)
    texts = None
    if corpus is not None:
        from roadscene.models.smolvlm import read_corpus

        texts = read_corpus(corpus)
    sizes = {}
    if family == "smolvlm":
        sizes = dict(
            image_size=image_size,
            patch_size=patch_size,
            vision_hidden_size=vision_hidden_size,
            vision_layers=vision_layers,
            text_hidden_size=text_hidden_size,
            text_layers=text_layers,
            vocab_size=vocab_size,
        )
    path = family_obj.build_tiny(out, corpus=texts, seed=seed, **sizes)
    typer.echo(f"wrote tiny {family} checkpoint to {path}")
