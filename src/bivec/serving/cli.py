"""``bivec serve``: the embeddings server on uvicorn."""

from __future__ import annotations

import socket
from typing import Annotated, Optional

import typer

from bivec.cli_options import (
    AdapterOption,
    AllowPickleOption,
    BackendOption,
    CausalOption,
    CompileOption,
    DtypeOption,
    EchoOption,
    MaxLengthOption,
    PoolingOption,
    TrustRemoteCodeOption,
    fail,
    load_encoder,
    load_options,
)
from bivec.serving.config import ServerConfig

SERVE_EXAMPLE = (
    "Example: bivec serve --port 8000 --api-key secret, then "
    "curl -H 'Authorization: Bearer secret' localhost:8000/v1/embeddings -d '{\"input\": \"a text\"}'"
)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from exc
    return sock


def serve(
    model: Annotated[Optional[str], typer.Argument(help="Model or encoder folder; default: the trained default encoder.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8000,
    name: Annotated[Optional[str], typer.Option(help="Model id for clients; default: the directory's name.")] = None,
    api_key: Annotated[Optional[str], typer.Option(envvar="BIVEC_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1.")] = None,
    adapter: AdapterOption = None,
    causal: CausalOption = False,
    echo: EchoOption = None,
    pooling: PoolingOption = None,
    max_length: MaxLengthOption = None,
    truncate: Annotated[bool, typer.Option(help="Cut longer inputs (--no-truncate: answer them with 413).")] = ServerConfig.truncate,
    normalize: Annotated[bool, typer.Option(help="Return unit-length vectors, as OpenAI does.")] = ServerConfig.normalize,
    dtype: DtypeOption = "auto",
    compile: CompileOption = False,
    backend: BackendOption = "torch",
    allow_pickle: AllowPickleOption = False,
    trust_remote_code: TrustRemoteCodeOption = False,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads; on a busy shared CPU 1 can be much faster.")] = None,
    max_inputs: Annotated[int, typer.Option(help="Inputs per request.")] = ServerConfig.max_inputs,
    max_merged_tokens: Annotated[int, typer.Option(help="Unpadded tokens of the requests merged into one batch; the encoder cuts it into forward passes under its own padded-token budget.")] = ServerConfig.max_merged_tokens,
    max_batch_size: Annotated[int, typer.Option(help="Texts per model call.")] = ServerConfig.max_batch_size,
    max_wait_ms: Annotated[float, typer.Option(help="How long a batch waits for more requests.")] = ServerConfig.max_wait_ms,
    max_queue: Annotated[int, typer.Option(help="Texts waiting; beyond it requests get 429.")] = ServerConfig.max_queue_texts,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the OpenAI embeddings API (POST /v1/embeddings) with dynamic batching; also
    GET /v1/models, /health and /metrics (Prometheus)."""
    import torch
    import uvicorn

    from bivec.models.default import DEFAULT_MODEL_NAME
    from bivec.serving.app import create_app

    if threads is not None:
        if threads < 1:
            fail(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    options = load_options(model, adapter, causal, pooling, max_length, dtype, compile, allow_pickle, trust_remote_code,
                           backend, echo=echo)
    try:
        config = ServerConfig(
            model_name=name or (DEFAULT_MODEL_NAME if model is None else model.rstrip("/").rsplit("/", 1)[-1]),
            normalize=normalize, max_inputs=max_inputs, truncate=truncate, max_merged_tokens=max_merged_tokens,
            max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue_texts=max_queue, api_key=api_key,
        )
        sock = _bind(host, port)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(exc)
    encoder = load_encoder(options)
    encoder.encode(["warm up"], show_progress=False)
    bound_host, bound_port = sock.getsockname()[:2]
    typer.echo(f"bivec: serving {config.model_name!r} ({encoder.dim} dims) on http://{bound_host}:{bound_port}/v1")
    server = uvicorn.Server(uvicorn.Config(create_app(encoder, config), log_level=log_level))
    server.run(sockets=[sock])
