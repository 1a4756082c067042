"""``bivec convert``: write bivec encoders in other libraries' formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bivec.cli_options import (
    AdapterOption,
    AllowPickleOption,
    CausalOption,
    EchoOption,
    MaxLengthOption,
    PoolingOption,
    TrustRemoteCodeOption,
    fail,
    load_encoder,
    load_options,
)

app = typer.Typer(help="Convert a model to another library's format.", no_args_is_help=True)


@app.command(
    "sentence-transformers",
    epilog="Example: bivec convert sentence-transformers McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp sheared-st "
    "--adapter McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-unsup-simcse",
)
def sentence_transformers(
    model: Annotated[str, typer.Argument(help="Model directory, published LLM2Vec -mntp directory or cached hub name.")],
    out: Annotated[Path, typer.Argument(help="New directory for the sentence-transformers model.")],
    adapter: AdapterOption = None,
    causal: CausalOption = False,
    echo: EchoOption = None,
    pooling: PoolingOption = None,
    max_length: MaxLengthOption = None,
    normalize: Annotated[bool, typer.Option(help="Add a Normalize module (unit-length vectors).")] = False,
    dtype: Annotated[str | None, typer.Option(help="Saved dtype: float32, bfloat16 or float16.")] = None,
    allow_pickle: AllowPickleOption = False,
    trust_remote_code: TrustRemoteCodeOption = False,
    verify: Annotated[bool, typer.Option(help="Reload the export and compare its vectors with bivec's.")] = True,
) -> None:
    """Write a sentence-transformers model that embeds plain texts exactly as bivec does."""
    from tqdm.auto import tqdm

    from bivec.attention import is_bidirectional
    from bivec.encoder import Encoder
    from bivec.export.sentence_transformers import export_sentence_transformers, prompt_export_problem, verify_export

    options = load_options(model, adapter, causal, pooling, max_length, dtype, False, allow_pickle, trust_remote_code,
                           echo=echo)
    steps = tqdm(total=3 if verify else 2, desc="convert", unit="step")
    try:
        steps.set_postfix_str("load")
        encoder = Encoder.from_pretrained(options.model, **options.encoder_kwargs())
        steps.update()
        steps.set_postfix_str("write")
        export_sentence_transformers(encoder, out, normalize=normalize, verify=False)
        steps.update()
        if verify:
            steps.set_postfix_str("verify")
            verify_export(encoder, out, normalize=normalize)
            steps.update()
    except (ValueError, FileNotFoundError) as exc:
        fail(exc)
    finally:
        steps.close()
    attention = "bidirectional" if is_bidirectional(encoder.model) else "causal"
    checked = f"; reloaded with sentence-transformers: {attention}, same vectors" if verify else ""
    if (problem := prompt_export_problem(encoder)) is not None:
        typer.echo(f"note: {problem}", err=True)
    typer.echo(f"wrote a sentence-transformers model ({encoder.pooling} pooling, {encoder.dim} dims) to {out}{checked}")


@app.command("merged", epilog="Example: bivec convert merged out/encoder out/encoder-merged")
def merged(
    model: Annotated[str, typer.Argument(help="Model or encoder folder (adapters are merged), or published LLM2Vec name.")],
    out: Annotated[Path, typer.Argument(help="New folder for the merged model.")],
    adapter: AdapterOption = None,
    causal: CausalOption = False,
    echo: EchoOption = None,
    pooling: PoolingOption = None,
    max_length: MaxLengthOption = None,
    dtype: Annotated[str | None, typer.Option(help="Saved dtype: float32, bfloat16 or float16.")] = None,
    allow_pickle: AllowPickleOption = False,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """Write one Hugging Face folder with every adapter merged (and is_causal false for a bidirectional
    encoder), which plain transformers (and runtimes that follow it) load as bivec does; checked before
    it succeeds."""
    from bivec.export.merged import MergedExportError, export_merged

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        fail(f"{out}: exists and is not an empty folder; choose a new one")
    options = load_options(model, adapter, causal, pooling, max_length, dtype, False, allow_pickle, trust_remote_code,
                           echo=echo)
    encoder = load_encoder(options)
    try:
        export_merged(encoder, out)
    except MergedExportError as exc:
        fail(exc)
    typer.echo(f"wrote the merged model ({encoder.pooling} pooling, {encoder.dim} dims) to {out}; reloaded with plain "
               "transformers: same token states")
