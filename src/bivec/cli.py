"""The ``bivec`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from bivec.training.cli import app as train_app

app = typer.Typer(
    help="Turn decoder-only language models into text encoders (LLM2Vec).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ModelOption = Annotated[
    Optional[str], typer.Option("--model", "-m", help="Local model directory; default: the embedded SmolLM2-135M-Instruct.")
]

app.add_typer(train_app, name="train")


@app.callback()
def _quiet_loading() -> None:
    from transformers.utils import logging

    # Loading bars for every weight file drown the command's own output.
    logging.disable_progress_bar()


def _fail(problem: Exception | str) -> NoReturn:
    typer.echo(f"Error: {problem}", err=True)
    raise typer.Exit(2)


@app.command(
    epilog='Example: bivec encode "A man plays a guitar." "Someone is playing music." --normalize -o vectors.npy'
)
def encode(
    texts: Annotated[list[str], typer.Argument(help="Texts to embed.")],
    model: ModelOption = None,
    instruction: Annotated[str, typer.Option(help="Instruction put before every text; not pooled.")] = "",
    pooling: Annotated[str, typer.Option(help="mean, weighted_mean, eos, last, bos or first.")] = "mean",
    causal: Annotated[bool, typer.Option("--causal", help="Keep the model's causal attention.")] = False,
    normalize: Annotated[bool, typer.Option(help="L2-normalise the vectors.")] = False,
    max_length: Annotated[int, typer.Option(help="Tokens per text; longer texts are cut.")] = 512,
    dtype: Annotated[Optional[str], typer.Option(help="float32, bfloat16 or float16.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Save the vectors as .npy.")] = None,
) -> None:
    """Embed texts and print their cosine similarities (or save the vectors with -o)."""
    import numpy as np

    if output is not None and output.suffix != ".npy":
        _fail(f"--output {output}: only .npy is supported")

    from bivec.encoder import Encoder

    try:
        encoder = Encoder.from_pretrained(
            model, bidirectional=not causal, pooling=pooling, max_length=max_length, dtype=dtype
        )
        vectors = encoder.encode([[instruction, t] for t in texts] if instruction else texts, normalize=normalize)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    if output is not None:
        np.save(output, vectors)
        typer.echo(f"saved {vectors.shape[0]} x {vectors.shape[1]} float32 vectors to {output}")
        return
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    typer.echo(f"{vectors.shape[0]} texts -> {vectors.shape[1]}-dim vectors ({encoder.pooling} pooling, "
               f"{'causal' if causal else 'bidirectional'})")
    for i, (text, vector) in enumerate(zip(texts, vectors)):
        head = " ".join(f"{x:+.3f}" for x in vector[:4])
        typer.echo(f"[{i}] {text!r}: [{head} ...] norm {np.linalg.norm(vector):.2f}")
    if len(texts) > 1:
        typer.echo("cosine similarity:")
        for i, row in enumerate(unit @ unit.T):
            typer.echo(f"[{i}] " + " ".join(f"{x:6.3f}" for x in row))


@app.command(epilog="Example: bivec info ~/models/Mistral-7B-Instruct-v0.2")
def info(model: Annotated[Optional[str], typer.Argument(help="Model directory; default: the embedded model.")] = None) -> None:
    """Print a model's architecture, embedding size and whether it can be made bidirectional."""
    from bivec.attention import BidirectionalError, make_bidirectional
    from bivec.encoder import Encoder

    try:
        encoder = Encoder.from_pretrained(model, bidirectional=False)
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)

    try:
        make_bidirectional(encoder.model)
        bidirectional = "yes (checked on the loaded weights)"
    except BidirectionalError as exc:
        bidirectional = f"no: {exc}"
    config = encoder.model.config.get_text_config()
    rows = {
        "architecture": f"{type(encoder.model).__name__} ({config.model_type})",
        "layers": config.num_hidden_layers,
        "embedding dim": encoder.dim,
        "parameters": f"{sum(p.numel() for p in encoder.model.parameters()) / 1e6:.1f} M",
        "dtype": str(encoder.model.dtype).removeprefix("torch."),
        "attention": encoder.model.config._attn_implementation,
        "chat template": "yes" if getattr(encoder.tokenizer, "chat_template", None) else "no",
        "pooling": encoder.pooling,
        "bidirectional": bidirectional,
    }
    for key, value in rows.items():
        typer.echo(f"{key:>14}: {value}")


def main() -> None:
    app()
