"""Engines that turn blocks of texts into vectors: one local process, or a Ray Data actor pool.

Both call the same ``BlockEncoder`` on the same blocks, so they give the same vectors: bit for bit
where each process computes with as many threads (a Ray actor of one CPU uses one), to float32
rounding (about 1e-7) otherwise.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from bivec.corpus.reader import CorpusError
from bivec.corpus.worker import BlockEncoder, WorkerSettings


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs. ``address=None`` starts a local cluster; by
    default there is one worker per GPU, or else one per group of up to 4 CPUs.

    Example:
        >>> RayOptions(address="ray://head:10001", gpus_per_worker=1)  # doctest: +SKIP
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float | None = None
    gpus_per_worker: float | None = None


@dataclass(frozen=True)
class Block:
    key: int
    texts: list[str]
    instructions: list[str]


@dataclass(frozen=True)
class BlockResult:
    key: int
    vectors: np.ndarray
    bad: list[tuple[int, str]]
    cut: int = 0


def _block_table(blocks: Sequence[Block]) -> pa.Table:
    return pa.table({
        "key": [b.key for b in blocks],
        "texts": pa.array([b.texts for b in blocks], pa.list_(pa.string())),
        "instructions": pa.array([b.instructions for b in blocks], pa.list_(pa.string())),
    })


def _results(table: pa.Table) -> Iterator[BlockResult]:
    for row in table.to_pylist():
        vectors = np.frombuffer(row["embeddings"], dtype=np.float32).reshape(-1, row["dim"])
        yield BlockResult(row["key"], vectors, [tuple(b) for b in json.loads(row["errors"])], row["cut"])


def run_local(settings: WorkerSettings, blocks: Sequence[Block]) -> Iterator[BlockResult]:
    """Encode the blocks one after another in this process."""
    worker = BlockEncoder(settings)
    for block in blocks:
        yield from _results(worker(_block_table([block])))


def _pool_shape(options: RayOptions, resources: dict[str, float], local: bool) -> tuple[int, float, float]:
    """(workers, CPUs per worker, GPUs per worker) from the options and the cluster's size."""
    cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
    gpus_per = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
    if gpus_per > 0:
        cpus_per = options.cpus_per_worker or 1.0
        workers = options.workers or max(1, int(gpus // gpus_per))
    else:
        cpus_per = options.cpus_per_worker or (max(1.0, float(cpus // options.workers)) if options.workers else min(4.0, cpus))
        workers = options.workers or max(1, int(cpus // cpus_per))
    # A local cluster cannot grow, so a pool larger than it would wait forever.
    if local and (workers * cpus_per > cpus or workers * gpus_per > gpus):
        raise CorpusError(
            f"--workers {workers} x (--cpus-per-worker {cpus_per:g}, --gpus-per-worker {gpus_per:g}) needs more than "
            f"the local Ray cluster has ({cpus:g} CPUs, {gpus:g} GPUs)"
        )
    return workers, cpus_per, gpus_per


def _check_options(options: RayOptions) -> None:
    if options.workers is not None and options.workers < 1:
        raise CorpusError(f"--workers must be at least 1, got {options.workers}")
    if options.cpus_per_worker is not None and options.cpus_per_worker <= 0:
        raise CorpusError(f"--cpus-per-worker must be positive, got {options.cpus_per_worker}")
    if options.gpus_per_worker is not None and options.gpus_per_worker < 0:
        raise CorpusError(f"--gpus-per-worker must not be negative, got {options.gpus_per_worker}")


def run_ray(settings: WorkerSettings, blocks: Sequence[Block], options: RayOptions) -> Iterator[BlockResult]:
    """Encode the blocks on a Ray Data actor pool (one BlockEncoder per actor), yielding
    results as they finish, in any order."""
    _check_options(options)
    try:
        import ray
    except ImportError:
        raise CorpusError("--engine ray needs Ray Data: pip install 'bivec[ray]'") from None
    started = not ray.is_initialized()
    local = options.address is None
    if started:
        runtime_env = None
        if local:
            # Workers of a local cluster import the same bivec as this process, even an uninstalled checkout.
            src = str(Path(__file__).resolve().parents[2])
            runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}}
        ray.init(address=options.address, include_dashboard=False, runtime_env=runtime_env, logging_level="WARNING")
    try:
        workers, cpus_per, gpus_per = _pool_shape(options, ray.cluster_resources(), local)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        # One Ray block per bivec block, so the pool shares the work block by block.
        items = [{"key": b.key, "texts": b.texts, "instructions": b.instructions} for b in blocks]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            BlockEncoder,
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per,
            num_gpus=gpus_per or None,
            fn_constructor_kwargs={"settings": settings},
        )
        for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield from _results(table)
    finally:
        if started:
            ray.shutdown()
