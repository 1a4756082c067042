"""``bivec encode`` and ``bivec info``: the encoder's own commands (embed texts; describe a model as loaded)."""

from __future__ import annotations

from pathlib import Path
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
    ModelOption,
    PoolingOption,
    TrustRemoteCodeOption,
    fail,
    load_encoder,
    load_options,
    load_or_causal,
)
from bivec.encoder import DEFAULT_BATCH_SIZE, cut_note

ENCODE_EXAMPLES = """Example: bivec encode "A man plays a guitar." "Someone is playing music." --normalize -o vectors.npy

Example: bivec encode -i questions.jsonl --field question --instruction "Retrieve relevant passages:" -o q.parquet

Example: cat sentences.txt | bivec encode -o sentences.jsonl

Example: bivec encode "a text" -m McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp --adapter McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-unsup-simcse --quantize int8 -o codes.npz
"""
_PRINT_LIMIT = 16


def _read_inputs(texts: list[str] | None, input: str | None, input_format: str | None, field: str) -> list[str]:
    import sys

    from bivec.textio import read_texts

    if texts and input is not None:
        fail("give texts as arguments or --input FILE, not both")
    if texts:
        if input_format is not None or field != "text":
            fail("--field and --input-format apply to --input or stdin, not to texts given as arguments")
        return texts
    if input is None and sys.stdin.isatty():
        fail("no texts: give them as arguments, with --input FILE, or on stdin")
    try:
        return read_texts("-" if input is None else input, format=input_format, field=field)
    except (ValueError, FileNotFoundError) as exc:
        fail(exc)


def encode(
    texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to embed (or use --input, or stdin).")] = None,
    input: Annotated[Optional[str], typer.Option("--input", "-i", help="Read texts from a .txt (one per line), "
                     ".jsonl, .csv or .tsv file; - is stdin.")] = None,
    field: Annotated[str, typer.Option(help="JSON field or CSV/TSV column holding the text.")] = "text",
    input_format: Annotated[Optional[str], typer.Option(help="txt, jsonl, csv or tsv; default: from the suffix (stdin: txt).")] = None,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    instruction: Annotated[str, typer.Option(help="Instruction put before every text; not pooled.")] = "",
    prompt_name: Annotated[Optional[str], typer.Option(help="One of the model's named prompts (e.g. query) put before every text.")] = None,
    pooling: PoolingOption = None,
    causal: CausalOption = False,
    echo: EchoOption = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise the vectors.")] = False,
    dimensions: Annotated[Optional[int], typer.Option(help="Keep the first N dimensions (Matryoshka), before normalising.")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="int8 or binary codes, saved with their scale as .npz.")] = None,
    max_length: MaxLengthOption = None,
    batch_size: Annotated[int, typer.Option(help="Texts per model call at most.")] = DEFAULT_BATCH_SIZE,
    dtype: DtypeOption = "auto",
    compile: CompileOption = False,
    backend: BackendOption = "torch",
    allow_pickle: AllowPickleOption = False,
    trust_remote_code: TrustRemoteCodeOption = False,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress bar; default: on a terminal.")] = None,
    truncate: Annotated[bool, typer.Option("--truncate/--no-truncate", help="Cut texts longer than --max-length "
                        "(--no-truncate: refuse them, naming the text).")] = True,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Save the vectors: .npy, .parquet or .jsonl "
                      "(the last two with the texts); quantised codes: .npz.")] = None,
) -> None:
    """Embed texts and print their cosine similarities (or save the vectors with -o)."""
    import numpy as np

    from bivec.attention import is_bidirectional
    from bivec.textio import check_writable_dir
    from bivec.vectors import KINDS, check_output_path, write_vectors
    from bivec.vectors import quantize as quantize_vectors

    if quantize is not None and quantize not in KINDS:
        fail(f"--quantize {quantize}: choose one of {', '.join(KINDS)}")
    if quantize and output is not None and output.suffix != ".npz":
        fail(f"--output {output}: only .npz is supported for quantised vectors (codes + scale)")
    if dimensions is not None and dimensions < 1:
        fail(f"--dimensions must be positive, got {dimensions}")
    options = load_options(model, adapter, causal, pooling, max_length, dtype, compile, allow_pickle, trust_remote_code,
                           backend, echo=echo)
    if output is not None:
        try:
            check_writable_dir(output.parent, f"--output {output}") if quantize else check_output_path(output)
        except ValueError as exc:
            fail(exc)
    if instruction and prompt_name:
        fail("give --instruction or --prompt-name, not both")
    texts = _read_inputs(texts, input, input_format, field)
    if output is None and len(texts) > _PRINT_LIMIT:
        fail(f"{len(texts)} texts: give --output FILE (.npy, .parquet or .jsonl) to save more than {_PRINT_LIMIT}")

    encoder = load_encoder(options)
    items = [[instruction, t] for t in texts] if instruction else texts
    try:
        tokenized = encoder.tokenize(items, truncate=truncate, prompt_name=prompt_name)
        vectors = encoder.encode_tokenized(tokenized, normalize=normalize, dimensions=dimensions,
                                           batch_size=batch_size, show_progress=progress)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        fail(exc)
    cut = sum(t.truncated for t in tokenized)
    if cut:
        typer.echo(f"note: {cut_note(cut, len(texts), 'texts', encoder.max_length, encoder.echo)}; "
                   "--no-truncate refuses them", err=True)
    codes = quantize_vectors(vectors, quantize) if quantize else None
    if output is not None:
        if codes is not None:
            codes.save(output)
            typer.echo(f"saved {len(texts)} x {codes.dim} {quantize} codes and their scale to {output}")
        else:
            write_vectors(output, texts, vectors)
            typer.echo(f"saved {vectors.shape[0]} x {vectors.shape[1]} float32 vectors to {output}")
        return
    if codes is not None:
        vectors = codes.dequantize()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    attention = "bidirectional" if is_bidirectional(encoder.model) else "causal"
    typer.echo(f"{vectors.shape[0]} texts -> {vectors.shape[1]}-dim vectors ({encoder.pooling} pooling, "
               f"{attention}{', echo' if encoder.echo else ''}{f', {quantize} codes' if quantize else ''})")
    for i, (text, vector) in enumerate(zip(texts, vectors)):
        head = " ".join(f"{x:+.3f}" for x in vector[:4])
        typer.echo(f"[{i}] {text!r}: [{head} ...] norm {np.linalg.norm(vector):.2f}")
    if len(texts) > 1:
        typer.echo("cosine similarity" + (" (of the dequantised codes):" if quantize else ":"))
        for i, row in enumerate(unit @ unit.T):
            typer.echo(f"[{i}] " + " ".join(f"{x:6.3f}" for x in row))

INFO_EXAMPLE = "Example: bivec info ~/models/Mistral-7B-Instruct-v0.2"


def info(
    model: Annotated[str | None, typer.Argument(help="Model or encoder folder; default: the trained default encoder.")] = None,
    adapter: AdapterOption = None, causal: CausalOption = False, echo: EchoOption = None, pooling: PoolingOption = None,
    max_length: MaxLengthOption = None, dtype: DtypeOption = "auto", allow_pickle: AllowPickleOption = False,
    trust_remote_code: TrustRemoteCodeOption = False,
    backend: BackendOption = "torch",
) -> None:
    """Print a model's architecture, embedding size, whether it can be made bidirectional and the
    dtype that dtype="auto" picks on this machine, and the backend (checked on first use, then cached)."""
    from bivec.attention import is_bidirectional
    from bivec.int8 import parameter_count

    options = load_options(model, adapter, causal, pooling, max_length, dtype, False, allow_pickle, trust_remote_code,
                           backend, echo=echo)
    encoder, refused = load_or_causal(options)
    if refused is not None:
        bidirectional = f"no: {refused}"
    else:
        bidirectional = "yes (checked on the loaded weights)" if is_bidirectional(encoder.model) else "no (causal)"
    config = encoder.model.config.get_text_config()
    choice = encoder.precision
    rows = {
        "architecture": f"{type(encoder.model).__name__} ({config.model_type})",
        "layers": config.num_hidden_layers,
        "embedding dim": encoder.dim,
        "parameters": f"{parameter_count(encoder.model) / 1e6:.1f} M",
        "dtype (auto)": choice.describe() if choice else str(encoder.model.dtype).removeprefix("torch."),
        "backend": encoder.backend_choice.describe() if encoder.backend_choice else "torch",
        "machine": choice.machine if choice else "",
        "attention": encoder.model.config._attn_implementation,
        "sliding window": getattr(config, "sliding_window", None) or "none",
        "chat template": "yes" if getattr(encoder.tokenizer, "chat_template", None) else "no",
        "pooling": encoder.pooling,
        "echo": "yes (each text read twice, the second copy pooled)" if encoder.echo else "no",
        "max length": encoder.max_length,
        "bidirectional": bidirectional,
    }
    for key, value in rows.items():
        typer.echo(f"{key:>14}: {value}")
