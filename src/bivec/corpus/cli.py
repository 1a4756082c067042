"""The ``bivec embed-corpus`` command."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from bivec.cli_options import (
    AdapterOption,
    AllowPickleOption,
    CausalOption,
    CompileOption,
    EchoOption,
    ModelOption,
    PoolingOption,
    TrustRemoteCodeOption,
    fail,
)
from bivec.encoder import DEFAULT_BATCH_SIZE

app = typer.Typer()

_EXAMPLE = (
    "Example: bivec embed-corpus 'docs/*.jsonl' embeddings/ --text-column body --on-error skip --engine ray --workers 4"
)


@app.command("embed-corpus", epilog=_EXAMPLE)
def embed_corpus_command(
    input: Annotated[list[str], typer.Argument(help="JSONL / Parquet / CSV / TSV files, directories or glob patterns.")],
    output: Annotated[str, typer.Argument(help="Output directory: Parquet shards, manifest.json, errors.jsonl.")],
    text_column: Annotated[str, typer.Option(help="Field holding the text.")] = "text",
    id_column: Annotated[str, typer.Option(help="Field holding the row's unique id.")] = "id",
    instruction_column: Annotated[Optional[str], typer.Option(help="Field holding a per-row instruction (not pooled).")] = None,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    causal: CausalOption = False,
    echo: EchoOption = None,
    pooling: PoolingOption = None,
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per text; longer texts are bad rows unless --truncate. Default: the checkpoint's, else 512.")] = None,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut over-long texts instead of treating them as bad rows.")] = False,
    normalize: Annotated[bool, typer.Option(help="L2-normalise the vectors.")] = False,
    dtype: Annotated[Optional[str], typer.Option(help="float32, bfloat16 or float16; default: float32 on the CPU, bfloat16 on CUDA. Not auto: every worker must produce vectors in the same precision.")] = None,
    compile: CompileOption = False,
    backend: Annotated[str, typer.Option(help="torch, onnx, openvino or onnx-int8 (see bivec encode --help); not auto: every worker must run the same engine.")] = "torch",
    allow_pickle: AllowPickleOption = False,
    trust_remote_code: TrustRemoteCodeOption = False,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass at most.")] = DEFAULT_BATCH_SIZE,
    max_batch_tokens: Annotated[Optional[int], typer.Option(help="Padded tokens per forward pass at most; default: 2048 on the CPU, 16384 on a GPU.")] = None,
    shard_size: Annotated[int, typer.Option(help="Rows per output shard (the unit of resuming).")] = 10_000,
    block_rows: Annotated[int, typer.Option(help="Rows per unit of work sent to a worker.")] = 256,
    on_error: Annotated[str, typer.Option(help="What bad rows do: fail (stop) or skip (embed the rest).")] = "fail",
    engine: Annotated[str, typer.Option(help="local (one process) or ray (Ray Data actor pool).")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to join; default: start a local one.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Ray encoder actors; default: one per GPU or per 4 CPUs.")] = None,
    cpus_per_worker: Annotated[Optional[float], typer.Option(help="CPUs per Ray actor.")] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option(help="GPUs per Ray actor; default 1 when the cluster has GPUs.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Embed a corpus into Parquet shards of (id, embedding); run again to resume a stopped run."""
    from bivec.corpus import Columns, CorpusConfig, CorpusError, RayOptions, WorkerSettings, embed_corpus

    config = CorpusConfig(
        columns=Columns(text=text_column, id=id_column, instruction=instruction_column),
        encoder=WorkerSettings(model=model, adapters=tuple(adapter or ()), causal=causal, pooling=pooling,
                                max_length=max_length, dtype=dtype, normalize=normalize, truncate=truncate,
                                batch_size=batch_size, max_batch_tokens=max_batch_tokens, compile=compile, backend=backend,
                                allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, echo=echo),
        shard_size=shard_size,
        block_rows=block_rows,
        on_error=on_error,
        engine=engine,
        ray=RayOptions(address=address, workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker),
    )
    try:
        summary = embed_corpus(input, output, config, show_progress=progress)
    except (CorpusError, ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(exc)
    typer.echo(str(summary))
