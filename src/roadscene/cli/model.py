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
    image_size: int | None = typer.Option(None, help="Image side in pixels."),
    patch_size: int | None = typer.Option(None, help="Vision patch size in pixels."),
    vision_hidden_size: int | None = typer.Option(None, help="Vision encoder width."),
    vision_layers: int | None = typer.Option(None, help="Vision encoder layers."),
    text_hidden_size: int | None = typer.Option(None, help="Language model width."),
    text_layers: int | None = typer.Option(None, help="Language model layers."),
    vocab_size: int | None = typer.Option(None, help="Upper bound on the BPE vocabulary."),
    size: list[str] | None = typer.Option(
        None,
        "--size",
        help="Any other size of the family as name=value (repeatable), e.g. num_latents=16.",
    ),
) -> None:
    """Build a tiny random-init checkpoint that loads like the real model (`--model OUT`).
    Sizes not given keep the family's defaults; a size the family does not have is an error."""
    from roadscene.errors import InputError
    from roadscene.io import check_output
    from roadscene.models import get_family
    from roadscene.models.base import is_model_output
    from roadscene.models.tokenizer import read_corpus

    family_obj = get_family(family)
    named = {
        "image_size": image_size,
        "patch_size": patch_size,
        "vision_hidden_size": vision_hidden_size,
        "vision_layers": vision_layers,
        "text_hidden_size": text_hidden_size,
        "text_layers": text_layers,
        "vocab_size": vocab_size,
    }
    sizes: dict[str, object] = {name: value for name, value in named.items() if value is not None}
    for item in size or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--size '{item}' is not name=value", field="size")
        sizes[name.strip()] = value.strip()
    family_obj.sizes(sizes)  # a wrong name or value fails before any work
    check_output(out, folder=True, ours=is_model_output, what="a model folder")
    texts = read_corpus(corpus) if corpus is not None else None
    path = family_obj.build_tiny(out, corpus=texts, seed=seed, sizes=sizes)
    typer.echo(f"wrote tiny {family} checkpoint to {path}")
