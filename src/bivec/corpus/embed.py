"""embed_corpus: read a corpus, embed it shard by shard on an engine, resume where it stopped."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bivec.corpus.engines import Block, BlockResult, RayOptions, run_local, run_ray
from bivec.corpus.reader import BadRow, Columns, Corpus, CorpusError, find_input_files, read_corpus
from bivec.corpus.shards import (
    ERRORS,
    MANIFEST,
    Shard,
    finished_shard,
    plan_shards,
    read_manifest,
    write_errors,
    write_json,
    write_shard,
)
from bivec.corpus.worker import WorkerSettings

if TYPE_CHECKING:
    from bivec.models.checkpoint import Checkpoint

_FORMAT = 1


@dataclass(frozen=True)
class CorpusConfig:
    """Everything ``embed_corpus`` needs besides the input and output paths.

    ``on_error`` decides what bad rows (missing or duplicate id, empty, non-string or
    over-long text) do: "fail" stops the run, "skip" embeds the rest; both list them in
    ``errors.jsonl``. ``shard_size`` rows go to one output file (the unit of resuming);
    ``block_rows`` rows are one unit of work for a worker.

    Example:
        >>> CorpusConfig(columns=Columns(text="body", id="doc_id"), on_error="skip",
        ...              encoder=WorkerSettings(normalize=True), engine="ray")  # doctest: +SKIP
    """

    columns: Columns = field(default_factory=Columns)
    encoder: WorkerSettings = field(default_factory=WorkerSettings)
    shard_size: int = 10_000
    block_rows: int = 256
    on_error: str = "fail"
    engine: str = "local"
    ray: RayOptions = field(default_factory=RayOptions)


@dataclass(frozen=True)
class CorpusSummary:
    """What a run did; ``rows`` and ``shards`` count the whole output, resumed parts included."""

    output: str
    rows: int
    shards: int
    resumed_shards: int
    rows_this_run: int
    errors: int
    seconds: float
    cut: int = 0
    """Texts of this run cut to ``max_length`` (``truncate``), embedded from their beginning."""

    def __str__(self) -> str:
        rate = self.rows_this_run / self.seconds if self.seconds > 0 else 0.0
        resumed = f" ({self.resumed_shards} finished before, kept)" if self.resumed_shards else ""
        errors = f"{self.errors} bad rows listed in {Path(self.output) / ERRORS}" if self.errors else "no bad rows"
        return (
            f"{self.rows} rows in {self.shards} shards{resumed} -> {self.output}; {self.rows_this_run} rows embedded "
            f"in {self.seconds:.1f} s ({rate:.1f} rows/s); {errors}"
            + (f"; {self.cut} texts cut to max_length" if self.cut else "")
        )


def _check_config(config: CorpusConfig) -> Checkpoint | None:
    """Raise an error naming a bad setting; return the checkpoint this process loads, if any."""
    if config.on_error not in ("skip", "fail"):
        raise CorpusError(f"--on-error must be 'skip' or 'fail', got {config.on_error!r}")
    if config.engine not in ("local", "ray"):
        raise CorpusError(f"--engine must be 'local' or 'ray', got {config.engine!r}")
    for name in ("shard_size", "block_rows"):
        if getattr(config, name) < 1:
            raise CorpusError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    # The model files are this machine's unless a remote Ray cluster loads its own.
    return config.encoder.check(load_model_here=config.engine == "local" or config.ray.address is None)


def _settings_record(config: CorpusConfig, checkpoint: Checkpoint | None) -> dict[str, Any]:
    """What must match for a rerun to reuse an output's finished shards."""
    return {"encoder": config.encoder.identity(checkpoint),
            "columns": asdict(config.columns), "shard_size": config.shard_size}


def _prepare_output(output: Path, record: dict[str, Any]) -> None:
    if output.exists() and not output.is_dir():
        raise CorpusError(f"output {str(output)!r} is a file; expected a directory")
    if (output / MANIFEST).is_file():
        previous = read_manifest(output)
        # Only finished shards make a settings change harmful; a run that stopped before any may change.
        for key, value in record.items() if any(output.glob("part-*.parquet")) else ():
            if previous.get(key) != value:
                raise CorpusError(
                    f"output {str(output)!r} holds a run with other settings ({key}: {previous.get(key)} != {value}); "
                    "use a new output directory"
                )
    elif output.is_dir() and any(output.iterdir()):
        raise CorpusError(f"output {str(output)!r} is a non-empty directory without {MANIFEST}; use a new or empty directory")
    output.mkdir(parents=True, exist_ok=True)


def _remove_stale(output: Path, shards: list[Shard]) -> int:
    """Delete shards of an earlier input that no longer exist in the plan, and temporary files
    of a killed write; return how many shards went."""
    planned = {s.name for s in shards}
    stale = [p for p in output.glob("part-*.parquet") if p.name not in planned]
    for path in stale + list(output.glob(".part-*.tmp")):
        path.unlink()
    return len(stale)


def _fail_on(bad: list[BadRow], output: Path, all_errors: list[dict[str, Any]]) -> None:
    write_errors(output / ERRORS, all_errors)
    shown = "\n  ".join(str(b) for b in bad[:5])
    more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise CorpusError(
        f"{len(bad)} bad rows (listed in {output / ERRORS}):\n  {shown}{more}\n"
        "fix them, or pass --on-error skip to embed the other rows"
    )


def _blocks(shards: list[Shard], block_rows: int) -> Iterator[tuple[Shard, int, int]]:
    for shard in shards:
        for start in range(shard.start, shard.stop, block_rows):
            yield shard, start, min(start + block_rows, shard.stop)


def embed_corpus(
    inputs: str | Path | Sequence[str | Path],
    output: str | Path,
    config: CorpusConfig | None = None,
    *,
    show_progress: bool | None = None,
) -> CorpusSummary:
    """Embed every row of a JSONL / Parquet / CSV corpus (a file, a directory or a glob) into
    Parquet shards of (id, embedding) under ``output``, with ``manifest.json`` recording the
    encoder settings and ``errors.jsonl`` the bad rows. Run it again after a crash or a kill
    and it keeps the finished shards and embeds only the rest.

    Example:
        >>> from bivec.corpus import embed_corpus, read_embeddings
        >>> embed_corpus("docs/*.jsonl", "embeddings/")  # doctest: +SKIP
        >>> ids, vectors = read_embeddings("embeddings/")  # doctest: +SKIP
    """
    config = config or CorpusConfig()
    checkpoint = _check_config(config)
    begin = time.perf_counter()
    files = find_input_files(inputs)
    output = Path(output)
    record = _settings_record(config, checkpoint)
    _prepare_output(output, record)
    manifest: dict[str, Any] = {"format": _FORMAT, "status": "running", **record}
    write_json(output / MANIFEST, manifest)
    corpus, bad = read_corpus(files, config.columns)
    if corpus.input_rows == 0:
        raise CorpusError(f"input {inputs!s}: no rows in {len(files)} file(s)")
    errors = [b.to_json() for b in bad]
    if bad and config.on_error == "fail":
        _fail_on(bad, output, errors)

    shards = plan_shards(corpus, config.shard_size, record["encoder"])
    manifest["input"] = {"files": corpus.files, "rows": corpus.input_rows}
    removed = _remove_stale(output, shards)
    if removed:
        print(f"removed {removed} shards of an earlier, different input from {output}", file=sys.stderr)

    pending: list[Shard] = []
    for shard in shards:
        kept = finished_shard(output / shard.name, shard.stop - shard.start)
        if kept is None:
            pending.append(shard)
        else:
            errors.extend(kept)
    known_errors = len(errors)
    cut = _run(corpus, pending, config, output, errors, show_progress)
    # Rows the workers refused (say, too long) were in the pending shards but are not embedded.
    rows_this_run = sum(s.stop - s.start for s in pending) - (len(errors) - known_errors)

    errors.sort(key=lambda e: (e["file"], e.get("line", e.get("row", 0))))
    write_errors(output / ERRORS, errors)
    rows = len(corpus.ids) - (len(errors) - len(bad))
    if rows + len(errors) != corpus.input_rows:
        raise RuntimeError(f"bug: {rows} embedded + {len(errors)} bad rows != {corpus.input_rows} input rows")
    manifest.update(
        status="complete",
        rows=rows,
        errors=len(errors),
        dim=_dim(output, shards),
        shards=[{"file": s.name, "rows": s.stop - s.start} for s in shards],
    )
    write_json(output / MANIFEST, manifest)
    return CorpusSummary(str(output), rows, len(shards), len(shards) - len(pending), rows_this_run, len(errors),
                         time.perf_counter() - begin, cut)


def _run(corpus: Corpus, pending: list[Shard], config: CorpusConfig, output: Path,
         errors: list[dict[str, Any]], show_progress: bool | None) -> int:
    """Encode the pending shards, writing each as soon as all its blocks are back; return how many
    texts were cut to max_length."""
    from tqdm.auto import tqdm

    plan = dict(enumerate(_blocks(pending, config.block_rows)))
    if not plan:
        return 0
    blocks = [Block(key, corpus.texts[a:b], corpus.instructions[a:b]) for key, (_, a, b) in plan.items()]
    waiting = Counter(shard.index for shard, _, _ in plan.values())
    received: dict[int, dict[int, BlockResult]] = {s.index: {} for s in pending}
    if config.engine == "ray":
        results = run_ray(config.encoder, blocks, config.ray)
    else:
        results = run_local(config.encoder, blocks)
    total = len(corpus.ids)
    done = total - sum(s.stop - s.start for s in pending)
    disable = not (sys.stderr.isatty() if show_progress is None else show_progress)
    cut = 0
    with closing(results), tqdm(total=total, initial=done, unit="row", desc="embed-corpus", disable=disable) as bar:
        for result in results:
            shard, start, stop = plan[result.key]
            got = received.get(shard.index)
            if got is None or result.key in got:
                continue  # a retried Ray task may deliver a block twice
            bad = [corpus.bad_row(start + position, reason) for position, reason in result.bad]
            if bad and config.on_error == "fail":
                _fail_on(bad, output, errors + [b.to_json() for b in bad])
            got[result.key] = result
            cut += result.cut
            bar.update(stop - start)
            if len(got) == waiting[shard.index]:
                _write(shard, corpus, plan, received.pop(shard.index), output, errors)
                bar.set_postfix(errors=len(errors), refresh=False)
    return cut


def _write(shard: Shard, corpus: Corpus, plan: dict, results: dict[int, BlockResult], output: Path,
           errors: list[dict[str, Any]]) -> None:
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    shard_errors = []
    for key in sorted(results):
        _, start, stop = plan[key]
        skip = {position for position, _ in results[key].bad}
        ids.extend(corpus.ids[i] for i in range(start, stop) if i - start not in skip)
        vectors.append(results[key].vectors)
        shard_errors.extend(corpus.bad_row(start + p, reason).to_json() for p, reason in results[key].bad)
    write_shard(output / shard.name, ids, np.concatenate(vectors), shard_errors)
    errors.extend(shard_errors)


def _dim(output: Path, shards: list[Shard]) -> int:
    import pyarrow.parquet as pq

    return pq.read_schema(output / shards[0].name).field("embedding").type.list_size if shards else 0
