import asyncio

import numpy as np
import pytest

from bivec.encoder import DEFAULT_BATCH_SIZE, Tokenized
from bivec.serving import BatcherClosedError, DynamicBatcher, QueueFullError, ServerConfig


def items(*sizes: int) -> list[Tokenized]:
    """Tokenised inputs of the given token counts."""
    return [Tokenized([7] * n, [1] * n) for n in sizes]


class RecordingEncoder:
    """Stands in for Encoder: vector i of a call is [tokens of input i, dimensions or 0]; records
    each call's token counts."""

    def __init__(self) -> None:
        self.calls: list[tuple[list, int | None]] = []

    def encode_tokenized(self, inputs, *, dimensions=None, **_):
        self.calls.append(([len(t.input_ids) for t in inputs], dimensions))
        return np.array([[len(t.input_ids), dimensions or 0] for t in inputs], dtype=np.float32)


async def _embed_all(config: ServerConfig, jobs: list[tuple[list[Tokenized], int | None]]):
    encoder = RecordingEncoder()
    batcher = DynamicBatcher(encoder, config)
    await batcher.start()
    try:
        results = await asyncio.gather(*(batcher.embed(job, dims) for job, dims in jobs))
    finally:
        await batcher.stop()
    return encoder.calls, results


def test_batches_respect_the_token_budget_and_dimensions():
    jobs = [(items(4), None), (items(2, 2), None), (items(4), 8), (items(4), None), (items(8), None)]
    calls, results = asyncio.run(_embed_all(ServerConfig(max_merged_tokens=12, max_wait_ms=50), jobs))
    # The first batch takes requests in order while 12 tokens last, skipping the one asking for other dimensions.
    assert calls == [([4, 2, 2, 4], None), ([4], 8), ([8], None)]
    assert [r.tolist() for r in results] == [
        [[4, 0]], [[2, 0], [2, 0]], [[4, 8]], [[4, 0]], [[8, 0]],
    ]


def test_max_batch_size_caps_the_texts_of_a_batch():
    jobs = [(items(n), None) for n in range(1, 6)]
    calls, _ = asyncio.run(_embed_all(ServerConfig(max_batch_size=2, max_wait_ms=50), jobs))
    assert [sizes for sizes, _ in calls] == [[1, 2], [3, 4], [5]]


def test_queue_limit_and_closed_batcher():
    async def scenario():
        batcher = DynamicBatcher(RecordingEncoder(), ServerConfig(max_queue_texts=2))
        with pytest.raises(BatcherClosedError, match="not ready"):
            await batcher.embed(items(1))
        await batcher.start()
        with pytest.raises(QueueFullError, match=r"0 texts are waiting \(max_queue_texts=2\)"):
            await batcher.embed(items(1, 1, 1))
        await batcher.stop()

    asyncio.run(scenario())


def test_default_batches_hold_encodes_default_number_of_texts():
    jobs = [(items(1), None) for _ in range(DEFAULT_BATCH_SIZE + 1)]
    calls, _ = asyncio.run(_embed_all(ServerConfig(max_wait_ms=200), jobs))
    assert [len(sizes) for sizes, _ in calls] == [DEFAULT_BATCH_SIZE, 1]
