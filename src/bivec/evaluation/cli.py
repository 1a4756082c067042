"""``bivec eval``: STS, MTEB, word-level probes, and comparisons of their result files."""

from __future__ import annotations

import json
import os
import re
import time
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
    LoadOptions,
    MaxLengthOption,
    ModelOption,
    PoolingOption,
    TrustRemoteCodeOption,
    fail,
    load_encoder,
    load_options,
    load_or_causal,
)
from bivec.encoder import DEFAULT_BATCH_SIZE, Encoder
from bivec.evaluation.report import EvalResult, compare_markdown, compare_plot

app = typer.Typer(help="Evaluate encoders: STS, MTEB, word-level probes; compare result files.",
                  no_args_is_help=True, add_completion=False)

BatchSize = Annotated[int, typer.Option(help="Texts per forward pass at most.")]
Name = Annotated[Optional[str], typer.Option(help="Model label in tables and plots; default: model, attention, pooling.")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Result JSON file; default: eval-results/<kind>-<name>.json.")]
Markdown = Annotated[Optional[Path], typer.Option(help="Also save the Markdown table to this file.")]


def _label(name: str | None, model: str | None, encoder, pooling: str | None = None) -> str:
    from bivec.attention import is_bidirectional

    if name:
        return name
    attention = "bidirectional" if is_bidirectional(encoder.model) else "causal"
    echo = "-echo" if encoder.echo else ""
    return f"{Path(model).name if model else 'default'}-{attention}-{pooling or encoder.pooling}{echo}"


def _settings(model: str | None, encoder) -> dict:
    """How the encoder was loaded, as resolved (checkpoint settings included), for the result file."""
    from bivec.attention import is_bidirectional

    return dict(model=model, causal=not is_bidirectional(encoder.model), pooling=encoder.pooling,
                max_length=encoder.max_length, echo=encoder.echo, dtype=str(encoder.model.dtype))


def _check_output(output: Path | None, markdown: Path | None) -> None:
    """Refuse result paths that could not be written, before the model loads and the work is done."""
    for option, path in (("--output", output), ("--markdown", markdown)):
        if path is not None and path.is_dir():
            fail(f"{option} {path}: is a folder; give a file name")
        if path is not None:
            nearest = next(p for p in (path.parent, *path.parent.parents) if p.exists())
            if not nearest.is_dir() or not os.access(nearest, os.W_OK):
                fail(f"{option} {path}: {nearest} is not a writable folder")


def _load_for(options: LoadOptions, output: Path | None, markdown: Path | None) -> tuple[Encoder, float]:
    """The encoder, once the result paths are known to be writable, and when its loading began
    (an evaluation's time includes loading)."""
    _check_output(output, markdown)
    start = time.perf_counter()
    return load_encoder(options), start


def _finish(result: EvalResult, output: Path | None, markdown: Path | None) -> None:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", result.model)
    path = result.save(output or Path("eval-results") / f"{result.kind}-{slug}.json")
    table = result.to_markdown()
    typer.echo(table)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(table + "\n", encoding="utf-8")
    typer.echo(f"saved {path}" + (f" and {markdown}" if markdown else ""))


@app.command(epilog="Example: bivec eval sts ../shared/data/sts/sts12.tsv ../shared/data/sts/sick_trial.tsv --causal")
def sts(
    files: Annotated[Optional[list[Path]], typer.Argument(help="score<TAB>sentence1<TAB>sentence2 files.")] = None,
    dataset: Annotated[Optional[list[str]], typer.Option(help="A `datasets` dataset: save_to_disk folder, local data file, or cached hub name.")] = None,
    split: Annotated[str, typer.Option(help="Split of --dataset.")] = "test",
    columns: Annotated[str, typer.Option(help="--dataset columns: sentence1,sentence2,score.")] = "sentence1,sentence2,score",
    instruction: Annotated[str, typer.Option(help="Instruction put before both sentences of every pair.")] = "",
    model: ModelOption = None, adapter: AdapterOption = None, causal: CausalOption = False, pooling: PoolingOption = None,
    echo: EchoOption = None, dtype: DtypeOption = "auto", compile: CompileOption = False,
    backend: BackendOption = "torch",
    max_length: MaxLengthOption = None,
    allow_pickle: AllowPickleOption = False, trust_remote_code: TrustRemoteCodeOption = False,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE, name: Name = None, output: Output = None, markdown: Markdown = None,
) -> None:
    """Spearman and Pearson (x100) of cosine similarity against gold scores, per file and averaged."""
    from bivec.evaluation.sts import evaluate_pairs, read_sts_dataset, read_sts_file

    names = [c.strip() for c in columns.split(",")]
    if len(names) != 3 or not all(names):
        fail(f"--columns {columns!r}: expected three comma-separated names (sentence1,sentence2,score)")
    if not files and not dataset:
        fail("give at least one STS file or --dataset")
    try:  # read everything first, so a bad file fails before the model loads
        sources = [(Path(f).stem, read_sts_file(f)) for f in files or []]
        sources += [(Path(d).name or d, read_sts_dataset(d, split=split, sentence1=names[0], sentence2=names[1], score=names[2]))
                    for d in dataset or []]
    except (ValueError, FileNotFoundError) as exc:
        fail(exc)
    options = load_options(model, adapter, causal, pooling, max_length, dtype, compile, allow_pickle, trust_remote_code,
                           backend)
    encoder, start = _load_for(options, output, markdown)
    scores = {}
    for label, (gold, first, second) in sources:
        began = time.perf_counter()
        r = evaluate_pairs(encoder, gold, first, second, name=label, instruction=instruction, batch_size=batch_size)
        scores[label] = {"spearman": r.spearman, "pearson": r.pearson, "pairs": r.pairs,
                         "seconds": round(time.perf_counter() - began, 1)}
    settings = _settings(model, encoder) | {"instruction": instruction}
    _finish(EvalResult("sts", _label(name, model, encoder), "spearman", scores, settings,
                       round(time.perf_counter() - start, 1)), output, markdown)


@app.command(epilog="Example: HF_HUB_OFFLINE=1 bivec eval mteb --local-sts ../shared/data/sts/sick_trial.tsv --tasks STS12")
def mteb(
    tasks: Annotated[str, typer.Option(help="Comma-separated MTEB task names (their datasets must be reachable).")] = "",
    local_sts: Annotated[Optional[list[Path]], typer.Option(help="Also run an MTEB STS task built from this local STS file.")] = None,
    instructions: Annotated[Optional[Path], typer.Option(help="JSON file {task name: instruction}; default: each task's MTEB prompt.")] = None,
    no_instructions: Annotated[bool, typer.Option("--no-instructions", help="Encode every text without an instruction.")] = False,
    mteb_output: Annotated[Optional[Path], typer.Option(help="Folder for MTEB's own result files.")] = None,
    model: ModelOption = None, adapter: AdapterOption = None, causal: CausalOption = False, pooling: PoolingOption = None,
    echo: EchoOption = None, dtype: DtypeOption = "auto", compile: CompileOption = False,
    backend: BackendOption = "torch",
    max_length: MaxLengthOption = None,
    allow_pickle: AllowPickleOption = False, trust_remote_code: TrustRemoteCodeOption = False,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE, name: Name = None, output: Output = None, markdown: Markdown = None,
) -> None:
    """Run MTEB tasks with per-task instructions (query side only for retrieval, both sides otherwise)."""
    from bivec.evaluation.mteb_wrapper import MTEBEncoder, load_mteb_tasks, local_sts_task, run_mteb

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names and not local_sts:
        fail("give --tasks and/or --local-sts")
    mapping = {}
    if instructions is not None:
        try:
            mapping = json.loads(instructions.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            fail(f"--instructions {instructions}: {exc}")
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            fail(f"--instructions {instructions}: expected a JSON object mapping task names to instruction strings")
    try:
        loaded = [local_sts_task(f) for f in local_sts or []] + load_mteb_tasks(names)
    except (ValueError, FileNotFoundError) as exc:
        fail(exc)
    options = load_options(model, adapter, causal, pooling, max_length, dtype, compile, allow_pickle, trust_remote_code,
                           backend)
    encoder, start = _load_for(options, output, markdown)
    label = _label(name, model, encoder)
    wrapper = MTEBEncoder(encoder, name=label, instructions=mapping, use_instructions=not no_instructions)
    scores = run_mteb(wrapper, loaded, batch_size=batch_size, output_dir=mteb_output)
    settings = _settings(model, encoder) | {"instructions": not no_instructions, "tasks": list(scores)}
    _finish(EvalResult("mteb", label, "main_score", scores, settings, round(time.perf_counter() - start, 1)), output, markdown)


@app.command(epilog="Example: bivec eval word --task pos,chunking,ner --train ../shared/data/conll2003/train.txt "
                    "--test ../shared/data/conll2003/valid.txt")
def word(
    task: Annotated[str, typer.Option(help="pos, chunking or ner, or several comma-separated.")],
    train: Annotated[Path, typer.Option(help="CoNLL-2003 file (word POS chunk NER) to train the probe on.")],
    test: Annotated[Path, typer.Option(help="CoNLL-2003 file to score the probe on.")],
    word_pooling: Annotated[str, typer.Option(help="Sub-token(s) that represent a word: first, last or mean.")] = "first",
    retroactive: Annotated[str, typer.Option(help="none, or next_token: read word i at the token before it (MNTP models).")] = "none",
    max_iter: Annotated[int, typer.Option(help="L-BFGS iterations of the linear probe.")] = 100,
    l2: Annotated[float, typer.Option(help="L2 penalty on the probe's weights.")] = 1e-4,
    train_sentences: Annotated[Optional[int], typer.Option(help="Train on the first N sentences of --train only.")] = None,
    test_sentences: Annotated[Optional[int], typer.Option(help="Score on the first N sentences of --test only.")] = None,
    allow_unseen_tags: Annotated[bool, typer.Option("--allow-unseen-tags", help="Score test tags absent from --train as errors instead of failing.")] = False,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Word-feature cache; default: bivec's cache directory.")] = None,
    model: ModelOption = None, adapter: AdapterOption = None, causal: CausalOption = False, dtype: DtypeOption = "auto",
    compile: CompileOption = False, max_length: MaxLengthOption = None, allow_pickle: AllowPickleOption = False,
    trust_remote_code: TrustRemoteCodeOption = False,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE, name: Name = None, output: Output = None, markdown: Markdown = None,
) -> None:
    """Linear probes on frozen word representations: accuracy for POS, span F1 for chunking and NER.

    The result's main score is accuracy for POS and span F1 for chunking and NER.
    """
    from bivec.evaluation.probes import ProbeConfig, evaluate_word_task, read_conll

    try:
        configs = [ProbeConfig(task=t.strip(), word_pooling=word_pooling, retroactive=retroactive, max_iter=max_iter,
                               l2=l2, batch_size=batch_size, allow_unseen_tags=allow_unseen_tags,
                               train_sentences=train_sentences, test_sentences=test_sentences)
                   for t in task.split(",")]
        read_conll(train), read_conll(test)  # fail on bad files before loading the model
    except (ValueError, FileNotFoundError) as exc:
        fail(exc)
    options = load_options(model, adapter, causal, None, max_length, dtype, compile, allow_pickle, trust_remote_code)
    encoder, start = _load_for(options, output, markdown)
    scores = {}
    for config in configs:
        began = time.perf_counter()
        try:
            r = evaluate_word_task(encoder, train, test, config, cache_dir=cache_dir)
        except ValueError as exc:
            fail(exc)
        row = {"score": r.accuracy if r.main_metric == "accuracy" else r.f1, "accuracy": r.accuracy,
               "f1": r.f1, "precision": r.precision, "recall": r.recall}
        scores[config.task] = {k: v for k, v in row.items() if v is not None} | {"train_words": r.train_words, "test_words": r.test_words, "labels": r.labels,
                                     "seconds": round(time.perf_counter() - began, 1)}
    settings = _settings(model, encoder) | dict(
        word_pooling=word_pooling, retroactive=retroactive, max_iter=max_iter, l2=l2, train=str(train),
        train_sentences=train_sentences, test=str(test), test_sentences=test_sentences)
    label = _label(name, model, encoder, f"{word_pooling}-word")
    _finish(EvalResult("word", label, "score", scores, settings, round(time.perf_counter() - start, 1)), output, markdown)


@app.command(epilog="Example: bivec eval compare eval-results/sts-causal.json eval-results/sts-bi.json --plot sts.png")
def compare(
    results: Annotated[list[Path], typer.Argument(help="Result JSON files written by bivec eval.")],
    plot: Annotated[Optional[Path], typer.Option(help="Save a bar chart (PNG) here.")] = None,
    title: Annotated[str, typer.Option(help="Chart title.")] = "bivec evaluation",
    markdown: Markdown = None,
) -> None:
    """Put several models' results side by side (main score of each task) and plot them."""
    try:
        loaded = [EvalResult.load(p) for p in results]
        table = compare_markdown(loaded)
        if plot is not None:
            compare_plot(loaded, plot, title=title)
    except (ValueError, FileNotFoundError) as exc:
        fail(exc)
    typer.echo(table)
    if markdown is not None:
        markdown.write_text(table + "\n", encoding="utf-8")
    if plot is not None:
        typer.echo(f"saved {plot}")


ANALYZE_EXAMPLE = ("Example: bivec analyze bivec/default-base --compare out/encoder/mntp -o analysis/ "
                   "(the base against its MNTP-trained version)")


def analyze(
    model: Annotated[Optional[str], typer.Argument(help="Model or encoder folder; default: the trained default encoder.")] = None,
    adapter: AdapterOption = None,
    compare: Annotated[Optional[list[str]], typer.Option(help="Another model (or encoder folder) to analyse alongside; repeatable.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Texts, one per line; default: bivec's shipped calibration paragraphs.")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Comma-separated layers (1-based) to report; default: all.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for analysis.json, analysis.md and analysis.png.")] = Path("bivec-analysis"),
    dtype: DtypeOption = "float32",
    allow_pickle: AllowPickleOption = False,
    trust_remote_code: TrustRemoteCodeOption = False,
) -> None:
    """How much does bidirectional attention change each layer? Causal vs bidirectional cosine per
    layer and position, and how far a later token reaches back, as JSON, a Markdown table and a plot."""
    from bivec.attention import BidirectionalError
    from bivec.evaluation import analysis

    try:
        chosen = [int(x) for x in layers.split(",") if x.strip()] if layers else None
    except ValueError:
        fail(f"--layers {layers!r}: expected comma-separated layer numbers")
    if output.exists() and not output.is_dir():
        fail(f"--output {output}: is a file; give a folder")
    try:
        texts = analysis.read_texts_file(data) if data is not None else analysis.default_texts()
    except (ValueError, FileNotFoundError) as exc:
        fail(exc)
    names = [model, *(compare or [])]
    results = []
    for index, name in enumerate(names):
        # The analysis is of the model's states over each text once: an echo setting would double the texts.
        options = load_options(name, adapter if index == 0 else None, False, None, None, dtype, False, allow_pickle,
                               trust_remote_code, echo=False)
        # A model that fails the switch is loaded causal, so that analyze() says why it cannot be switched.
        encoder, _ = load_or_causal(options)
        label = Path(name).name if name else "bivec-default"
        try:
            results.append(analysis.analyze(encoder, texts, name=label, layers=chosen))
        except BidirectionalError as exc:
            fail(f"{label} cannot be switched to bidirectional attention: {exc}")
        except ValueError as exc:
            fail(exc)
    output.mkdir(parents=True, exist_ok=True)
    analysis.save_json(results, output / "analysis.json")
    table = analysis.to_markdown(results)
    (output / "analysis.md").write_text(table + "\n", encoding="utf-8")
    analysis.plot(results, output / "analysis.png")
    typer.echo(table)
    typer.echo(f"saved {output / 'analysis.json'}, {output / 'analysis.md'} and {output / 'analysis.png'}")
