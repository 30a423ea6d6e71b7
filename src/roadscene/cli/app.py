"""Entry point of the `roadscene` command. This module only registers commands.

Heavy imports (torch, transformers) happen inside the commands, so `roadscene --help` is instant.
Any :class:`roadscene.errors.InputError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import os
import sys

import click
import typer

from roadscene.cli import bench as bench_cli
from roadscene.cli import data as data_cli
from roadscene.cli import demo as demo_cli
from roadscene.cli import describe as describe_cli
from roadscene.cli import evaluate as evaluate_cli
from roadscene.cli import flamingo as flamingo_cli
from roadscene.cli import model as model_cli
from roadscene.cli import predict as predict_cli
from roadscene.cli import recipe as recipe_cli
from roadscene.cli import serve as serve_cli
from roadscene.cli import synth as synth_cli
from roadscene.cli import train as train_cli
from roadscene.errors import InputError

app = typer.Typer(
    name="roadscene",
    help="Describe street scenes for blind and visually impaired pedestrians: data, training, "
    "prediction and evaluation of small vision-language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cli.app, name="data")
data_cli.app.command("synth")(synth_cli.synth)
data_cli.app.command("augment-preview")(recipe_cli.augment_preview)
data_cli.app.command("filter")(recipe_cli.filter_pairs)
data_cli.app.command("export")(recipe_cli.export)
app.add_typer(evaluate_cli.app, name="evaluate")
app.add_typer(model_cli.app, name="model")
model_cli.app.command("convert-openflamingo")(flamingo_cli.convert_openflamingo)
app.command("train")(train_cli.train)
app.command("predict")(predict_cli.predict)
app.command("demo")(demo_cli.demo)
app.command("describe")(describe_cli.describe)
app.command("serve")(serve_cli.serve)
app.add_typer(bench_cli.app, name="bench")


INTERRUPTED = (
    "interrupted: outputs are written atomically; predict, train and demo continue where they "
    "stopped when run again (train with --resume)"
)


@functools.cache
def _command() -> click.Command:
    """The click command tree of `app` (typer builds it from the signatures: built once)."""
    return typer.main.get_command(app)


def main() -> None:
    try:
        # With standalone_mode=False click returns the code of a typer.Exit instead of exiting.
        code = _command()(standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into Exit(130), which click returns here
            print(INTERRUPTED, file=sys.stderr)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except (typer.Exit, SystemExit) as err:
        code = getattr(err, "exit_code", getattr(err, "code", 0))
        sys.exit(code)
    except typer.Abort:  # Ctrl-C seen by click
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # stdout closed early (`roadscene data schema | head -1`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except Exception as err:  # click usage errors and the like
        # typer 0.29 raises its vendored click's exceptions (subclasses of TyperException).
        if isinstance(err, click.ClickException | typer.TyperException) and hasattr(err, "show"):
            err.show()
            sys.exit(2)
        raise
