"""``bivec convert``: write bivec encoders in other libraries' formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Convert a model to another library's format.", no_args_is_help=True)


@app.command(
    "sentence-transformers",
    epilog="Example: bivec convert sentence-transformers McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp sheared-st "
    "--adapter McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-unsup-simcse",
)
def sentence_transformers(
    model: Annotated[str, typer.Argument(help="Model directory, published LLM2Vec -mntp directory or cached hub name.")],
    out: Annotated[Path, typer.Argument(help="New directory for the sentence-transformers model.")],
    adapter: Annotated[list[str] | None, typer.Option(help="LoRA adapter merged on top, in order; repeatable.")] = None,
    pooling: Annotated[str | None, typer.Option(help="Pooling; default: the checkpoint's, else mean.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per text; default: the checkpoint's, else 512.")] = None,
    normalize: Annotated[bool, typer.Option(help="Add a Normalize module (unit-length vectors).")] = False,
    dtype: Annotated[str | None, typer.Option(help="Saved dtype: float32, bfloat16 or float16.")] = None,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow pickle (.bin) weights; they can run code.")] = False,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Run code shipped with the model.")] = False,
    verify: Annotated[bool, typer.Option(help="Reload the export and compare its vectors with bivec's.")] = True,
) -> None:
    """Write a sentence-transformers model that embeds plain texts exactly as bivec does."""
    from tqdm.auto import tqdm

    from bivec.cli import _fail
    from bivec.encoder import Encoder
    from bivec.export.sentence_transformers import export_sentence_transformers, verify_export

    steps = tqdm(total=3 if verify else 2, desc="convert", unit="step")
    try:
        steps.set_postfix_str("load")
        encoder = Encoder.from_pretrained(
            model, adapters=adapter or [], pooling=pooling, max_length=max_length, dtype=dtype,
            allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
        )
        steps.update()
        steps.set_postfix_str("write")
        export_sentence_transformers(encoder, out, normalize=normalize, verify=False)
        steps.update()
        if verify:
            steps.set_postfix_str("verify")
            verify_export(encoder, out, normalize=normalize)
            steps.update()
    except (ValueError, FileNotFoundError) as exc:
        _fail(exc)
    finally:
        steps.close()
    checked = "; reloaded with sentence-transformers: bidirectional, same vectors" if verify else ""
    typer.echo(f"wrote a sentence-transformers model ({encoder.pooling} pooling, {encoder.dim} dims) to {out}{checked}")
