"""The ``bivec`` command."""

from __future__ import annotations

import typer

from bivec.corpus.cli import app as corpus_app
from bivec.encoder_cli import ENCODE_EXAMPLES, INFO_EXAMPLE, encode, info
from bivec.evaluation.cli import ANALYZE_EXAMPLE, analyze
from bivec.evaluation.cli import app as eval_app
from bivec.export.cli import app as convert_app
from bivec.serving.cli import SERVE_EXAMPLE, serve
from bivec.training.cli import app as train_app

app = typer.Typer(
    help="Turn decoder-only language models into text encoders (LLM2Vec).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _quiet_loading() -> None:
    from transformers.utils import logging

    # Loading bars for every weight file drown the command's own output.
    logging.disable_progress_bar()


app.command(epilog=ENCODE_EXAMPLES)(encode)
app.command(epilog=INFO_EXAMPLE)(info)
app.add_typer(convert_app, name="convert")
app.command(epilog=SERVE_EXAMPLE)(serve)
app.add_typer(corpus_app)
app.add_typer(eval_app, name="eval")
app.command(epilog=ANALYZE_EXAMPLE)(analyze)
app.add_typer(train_app, name="train")


def main() -> None:
    app()


def run(argv: list[str]) -> None:
    """Run a bivec command from Python as the shell would, but raise ``SystemExit`` only when it
    fails (the command has printed why), so a script goes on after a command that succeeded.

    Example:
        >>> run(["encode", "a text", "-o", "vectors.npy"])  # doctest: +SKIP
    """
    code = app(argv, standalone_mode=False)
    if code:
        raise SystemExit(code)
