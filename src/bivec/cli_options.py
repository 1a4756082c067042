"""What every ``bivec`` command shares: the options that load a model, and the error exit.

Each option is declared here once, with its help and default, so that ``encode``, ``info``,
``serve``, ``eval``, ``convert`` and ``embed-corpus`` load a model the same way; every load
option left unset comes from the checkpoint (``bivec_config.json`` / ``llm2vec_config.json``),
and a flag given wins. Subcommands import this module, never the root ``bivec.cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from bivec.backends import BACKEND_HELP, check_backend_name
from bivec.models.loading import LoadOptions
from bivec.precision import COMPILE_HELP, DTYPE_HELP

if TYPE_CHECKING:
    from bivec.encoder import Encoder

ModelOption = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Model or encoder folder (a `bivec train llm2vec` output loads as it is), published "
    "LLM2Vec name in the local cache, bivec/default (the trained default, used when not given) or "
    "bivec/default-base (its untrained base).")]
AdapterOption = Annotated[Optional[list[str]], typer.Option("--adapter", help="LoRA adapter merged on top, in order; repeatable.")]
CausalOption = Annotated[bool, typer.Option("--causal", help="Keep the model's causal attention.")]
PoolingOption = Annotated[Optional[str], typer.Option(
    help="mean, weighted_mean, eos, last, bos or first; default: the checkpoint's, else mean.")]
MaxLengthOption = Annotated[Optional[int], typer.Option(
    help="Tokens per text; longer texts are cut. Default: the checkpoint's, else 512.")]
EchoOption = Annotated[Optional[bool], typer.Option(
    "--echo/--no-echo", help="Read each text twice and pool the second copy (echo embeddings: every pooled token "
    "has read the whole text, even under causal attention; about twice the encoding time). Default: the "
    "checkpoint's, else off.")]
DtypeOption = Annotated[Optional[str], typer.Option(help=DTYPE_HELP)]
BackendOption = Annotated[str, typer.Option(help=BACKEND_HELP)]
CompileOption = Annotated[bool, typer.Option("--compile", help=COMPILE_HELP)]
AllowPickleOption = Annotated[bool, typer.Option("--allow-pickle", help="Allow pickle (.bin) weights; they can run code.")]
TrustRemoteCodeOption = Annotated[bool, typer.Option("--trust-remote-code", help="Run code shipped with the model.")]


def fail(problem: Exception | str) -> NoReturn:
    """Print ``Error: problem`` on stderr and exit with status 2 (bad input)."""
    typer.echo(f"Error: {problem}", err=True)
    raise typer.Exit(2)


def load_encoder(options: LoadOptions) -> Encoder:
    """The encoder, or exit 2 with the error when the model cannot be loaded as asked."""
    from bivec.encoder import Encoder

    try:
        return Encoder.from_pretrained(options.model, **options.encoder_kwargs())
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(exc)


def load_or_causal(options: LoadOptions) -> tuple[Encoder, Exception | None]:
    """The encoder and None; or, for a model that fails bivec's bidirectional check, the model
    loaded causal and the check's error, for commands that report on models (info, analyze)."""
    from dataclasses import replace

    from bivec.attention import BidirectionalError
    from bivec.encoder import Encoder

    try:
        return Encoder.from_pretrained(options.model, **options.encoder_kwargs()), None
    except BidirectionalError as exc:
        return load_encoder(replace(options, causal=True)), exc
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(exc)


def load_options(model: str | None, adapter: list[str] | None, causal: bool, pooling: str | None,
                 max_length: int | None, dtype: str | None, compile: bool, allow_pickle: bool,
                 trust_remote_code: bool, backend: str = "torch", echo: bool | None = None) -> LoadOptions:
    """:class:`LoadOptions` from a command's parsed options, checked before any model loads."""
    if max_length is not None and max_length < 1:
        fail(f"--max-length must be positive, got {max_length}")
    if pooling is not None:
        from bivec.pooling import check_pooling_mode

        try:
            check_pooling_mode(pooling)
        except ValueError as exc:
            fail(f"--pooling: {exc}")
    try:
        backend = check_backend_name(backend)
    except ValueError as exc:
        fail(f"--backend: {exc}")
    return LoadOptions(model, tuple(adapter or ()), causal, pooling, max_length, dtype, compile, allow_pickle,
                       trust_remote_code, backend, echo)
