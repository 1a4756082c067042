import asyncio

import numpy as np
import pytest

from bivec.encoder import DEFAULT_BATCH_SIZE
from bivec.serving import BatcherClosedError, DynamicBatcher, QueueFullError, ServerConfig


class RecordingEncoder:
    """Stands in for Encoder: vector i of a call is [len(text_i), dimensions or 0]; records the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[list, int | None]] = []

    def encode(self, inputs, *, dimensions=None, **_):
        self.calls.append((list(inputs), dimensions))
        return np.array([[len(text), dimensions or 0] for text in inputs], dtype=np.float32)


async def _embed_all(config: ServerConfig, jobs: list[tuple[list[str], int, int | None]]):
    encoder = RecordingEncoder()
    batcher = DynamicBatcher(encoder, config)
    await batcher.start()
    try:
        results = await asyncio.gather(*(batcher.embed(texts, tokens, dims) for texts, tokens, dims in jobs))
    finally:
        await batcher.stop()
    return encoder.calls, results


def test_batches_respect_the_token_budget_and_dimensions():
    jobs = [(["a"], 4, None), (["bb", "cc"], 4, None), (["ddd"], 4, 8), (["eeee"], 4, None), (["f"], 8, None)]
    calls, results = asyncio.run(_embed_all(ServerConfig(max_batch_tokens=12, max_wait_ms=50), jobs))
    # The first batch takes requests in order while 12 tokens last, skipping the one asking for other dimensions.
    assert calls == [(["a", "bb", "cc", "eeee"], None), (["ddd"], 8), (["f"], None)]
    assert [r.tolist() for r in results] == [
        [[1, 0]], [[2, 0], [2, 0]], [[3, 8]], [[4, 0]], [[1, 0]],
    ]


def test_max_batch_size_caps_the_texts_of_a_batch():
    jobs = [([t], 1, None) for t in "abcde"]
    calls, _ = asyncio.run(_embed_all(ServerConfig(max_batch_size=2, max_wait_ms=50), jobs))
    assert [texts for texts, _ in calls] == [["a", "b"], ["c", "d"], ["e"]]


def test_queue_limit_and_closed_batcher():
    async def scenario():
        batcher = DynamicBatcher(RecordingEncoder(), ServerConfig(max_queue_texts=2))
        with pytest.raises(BatcherClosedError, match="not ready"):
            await batcher.embed(["a"], 1)
        await batcher.start()
        with pytest.raises(QueueFullError, match=r"0 texts are waiting \(max_queue_texts=2\)"):
            await batcher.embed(["a", "b", "c"], 3)
        await batcher.stop()

    asyncio.run(scenario())


def test_default_batches_hold_encodes_default_number_of_texts():
    jobs = [([t], 1, None) for t in ["x"] * (DEFAULT_BATCH_SIZE + 1)]
    calls, _ = asyncio.run(_embed_all(ServerConfig(max_wait_ms=200), jobs))
    assert [len(texts) for texts, _ in calls] == [DEFAULT_BATCH_SIZE, 1]
