"""Dynamic batching: concurrent requests merged into model batches, encoded off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bivec.encoder import Encoder, Tokenized
from bivec.serving.config import ServerConfig
from bivec.serving.metrics import ServerMetrics


class QueueFullError(RuntimeError):
    """The queue holds ``max_queue_texts`` texts already; the client should retry later."""


class BatcherClosedError(RuntimeError):
    """The batcher is not running (starting up or shutting down)."""


@dataclass
class _Job:
    items: Sequence[Tokenized]
    tokens: int
    dimensions: int | None
    future: asyncio.Future
    arrival: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Merges concurrent ``embed`` calls into batches under a token budget and a short wait, and
    runs ``Encoder.encode_tokenized`` on them in one worker thread, so the event loop keeps serving.

    A batch takes the oldest waiting request, then the next ones that ask for the same
    ``dimensions`` while the batch stays within ``max_merged_tokens`` (unpadded) tokens and
    ``max_batch_size`` texts. If a merged batch fails, each of its requests is retried alone,
    so one bad request never fails the others.

    Example:
        >>> batcher = DynamicBatcher(encoder, ServerConfig(max_wait_ms=2))  # doctest: +SKIP
        >>> await batcher.start()  # doctest: +SKIP
        >>> vectors = await batcher.embed(encoder.tokenize(["a text", "another"]))  # doctest: +SKIP
    """

    def __init__(self, encoder: Encoder, config: ServerConfig, metrics: ServerMetrics | None = None) -> None:
        self.encoder = encoder
        self.config = config
        self.metrics = metrics or ServerMetrics()
        self.metrics.watch_queue(lambda: self.queued_texts, lambda: len(self._pending))
        self._pending: deque[_Job] = deque()
        self._queued_texts = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def queued_texts(self) -> int:
        """Texts waiting for the model (not counting the batch being encoded)."""
        return self._queued_texts

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self.running:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bivec-encode")
        self._task = asyncio.create_task(self._loop(), name="bivec-batcher")

    async def stop(self) -> None:
        """Stop the loop; requests still waiting fail with BatcherClosedError."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(BatcherClosedError("the server is shutting down"))
        self._queued_texts = 0
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def embed(self, items: Sequence[Tokenized], dimensions: int | None = None) -> np.ndarray:
        """Embed ``items`` (tokenised by the caller, which counted and checked them) with the next batch."""
        if not self.running:
            raise BatcherClosedError("the server is not ready to encode")
        if self._queued_texts + len(items) > self.config.max_queue_texts:
            raise QueueFullError(
                f"the server is busy: {self._queued_texts} texts are waiting "
                f"(max_queue_texts={self.config.max_queue_texts})"
            )
        tokens = sum(len(item.input_ids) for item in items)
        job = _Job(items, tokens, dimensions, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._queued_texts += len(items)
        self._wakeup.set()
        return await job.future

    async def _loop(self) -> None:
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._pending[0].arrival + self.config.max_wait_ms / 1000
            while not self._full() and (delay := deadline - time.monotonic()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), delay)
                except asyncio.TimeoutError:  # TimeoutError itself only from Python 3.11
                    break
            jobs = self._take()
            if jobs:
                await self._run(jobs)

    def _fits(self, first: _Job, tokens: int, texts: int, job: _Job) -> bool:
        return (
            job.dimensions == first.dimensions
            and tokens + job.tokens <= self.config.max_merged_tokens
            and texts + len(job.items) <= self.config.max_batch_size
        )

    def _full(self) -> bool:
        """Whether the waiting requests fill a batch already, so waiting longer gains nothing."""
        first, tokens, texts = self._pending[0], 0, 0
        for job in self._pending:
            if job.dimensions != first.dimensions:
                continue
            if not self._fits(first, tokens, texts, job):
                return True
            tokens, texts = tokens + job.tokens, texts + len(job.items)
        return False

    def _take(self) -> list[_Job]:
        """Remove the next batch's requests from the queue (requests whose client left are dropped)."""
        waiting = [job for job in self._pending if not job.future.done()]
        self._pending.clear()
        self._queued_texts = 0
        taken: list[_Job] = []
        tokens = texts = 0
        for job in waiting:
            if not taken or self._fits(taken[0], tokens, texts, job):
                taken.append(job)
                tokens, texts = tokens + job.tokens, texts + len(job.items)
            else:
                self._pending.append(job)
                self._queued_texts += len(job.items)
        return taken

    async def _run(self, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        start = time.perf_counter()
        try:
            vectors = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._encode, items, jobs[0].dimensions
            )
        except Exception as exc:  # noqa: BLE001 - any failure belongs to the requests, not to the loop
            if len(jobs) == 1:
                if not jobs[0].future.done():
                    jobs[0].future.set_exception(exc)
                return
            for job in jobs:
                await self._run([job])
            return
        self.metrics.observe_batch(
            requests=len(jobs), texts=len(items), tokens=sum(job.tokens for job in jobs),
            seconds=time.perf_counter() - start,
        )
        offset = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(vectors[offset : offset + len(job.items)])
            offset += len(job.items)

    def _encode(self, items: list[Tokenized], dimensions: int | None) -> np.ndarray:
        return self.encoder.encode_tokenized(
            items,
            batch_size=self.config.max_batch_size,
            normalize=self.config.normalize,
            dimensions=dimensions,
            show_progress=False,
        )
