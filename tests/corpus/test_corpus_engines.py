import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

import bivec.corpus
from bivec import Encoder
from bivec.corpus import (
    BlockEncoder,
    CorpusConfig,
    CorpusError,
    RayOptions,
    WorkerSettings,
    embed_corpus,
    read_embeddings,
)
from bivec.corpus.engines import Block, _pool_shape, run_ray


def test_block_encoder_is_the_actor_class(tiny_model_dir):
    worker = BlockEncoder(WorkerSettings(model=str(tiny_model_dir), max_length=10, normalize=True))
    batch = pa.table({
        "key": [7, 9],
        "texts": [["a dog runs", "a man " * 10, "the cat sits"], ["music"]],
        "instructions": [["", "", "find"], [""]],
    })
    out = worker(batch).to_pylist()
    assert [row["key"] for row in out] == [7, 9] and [row["dim"] for row in out] == [32, 32]
    assert json.loads(out[0]["errors"]) == [[1, "text has 21 tokens, more than max_length=10 tokens"]]
    assert json.loads(out[1]["errors"]) == []
    vectors = np.frombuffer(out[0]["embeddings"], dtype=np.float32).reshape(2, 32)
    expected = Encoder.from_pretrained(tiny_model_dir).encode(["a dog runs", ["find", "the cat sits"]], normalize=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_block_encoder_with_only_bad_texts(tiny_model_dir):
    worker = BlockEncoder(WorkerSettings(model=str(tiny_model_dir), max_length=4))
    vectors, bad, cut = worker.encode_block(["a man plays a guitar"], [""])
    assert vectors.shape == (0, 32) and bad == [(0, "text has 6 tokens, more than max_length=4 tokens")] and cut == 0


def test_block_encoder_raises_an_error_that_is_not_one_texts(tiny_model_dir, monkeypatch):
    # Only a text too long for the model costs its own row; any other error stops the run instead of
    # marking every text of the corpus bad.
    worker = BlockEncoder(WorkerSettings(model=str(tiny_model_dir)))

    def broken(items, truncate):
        raise ValueError("the tokenizer's chat template does not render the user message's content")

    monkeypatch.setattr(worker.encoder, "tokenize", broken)
    with pytest.raises(ValueError, match="chat template does not render"):
        worker.encode_block(["a dog runs"], [""])


def test_pool_shape_defaults_and_limits():
    assert _pool_shape(RayOptions(), {"CPU": 2.0}, local=True) == (1, 2.0, 0.0)
    assert _pool_shape(RayOptions(workers=2), {"CPU": 2.0}, local=True) == (2, 1.0, 0.0)
    assert _pool_shape(RayOptions(), {"CPU": 64.0}, local=False) == (16, 4.0, 0.0)
    assert _pool_shape(RayOptions(), {"CPU": 32.0, "GPU": 4.0}, local=False) == (4, 1.0, 1.0)
    assert _pool_shape(RayOptions(gpus_per_worker=0.5), {"CPU": 32.0, "GPU": 2.0}, local=False) == (4, 1.0, 0.5)
    assert _pool_shape(RayOptions(workers=8, cpus_per_worker=2), {"CPU": 4.0}, local=False) == (8, 2.0, 0.0)
    with pytest.raises(CorpusError, match=r"--workers 8 x \(--cpus-per-worker 2, --gpus-per-worker 0\) needs more than the local Ray cluster has \(4 CPUs, 0 GPUs\)"):
        _pool_shape(RayOptions(workers=8, cpus_per_worker=2), {"CPU": 4.0}, local=True)


def test_ray_engine_bad_options_and_missing_ray(monkeypatch):
    blocks = [Block(0, ["a dog"], [""])]
    for options, message in [(RayOptions(workers=0), "--workers must be at least 1, got 0"),
                             (RayOptions(cpus_per_worker=0), "--cpus-per-worker must be positive, got 0"),
                             (RayOptions(gpus_per_worker=-1), "--gpus-per-worker must not be negative, got -1")]:
        with pytest.raises(CorpusError, match=message):
            next(run_ray(WorkerSettings(), blocks, options))
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(CorpusError, match=r"--engine ray needs Ray Data: pip install 'bivec\[ray\]'"):
        next(run_ray(WorkerSettings(), blocks, RayOptions()))


def test_ray_is_imported_only_by_the_ray_engine():
    code = "import sys, bivec.cli, bivec.corpus; print(bivec.corpus.__file__, 'ray' in sys.modules)"
    src = str(Path(bivec.corpus.__file__).parents[2])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": src})
    assert result.stdout.split() == [bivec.corpus.__file__, "False"]


@pytest.mark.slow
def test_ray_and_local_engines_give_identical_embeddings(tiny_model_dir, corpus_file, tmp_path):
    settings = WorkerSettings(model=str(tiny_model_dir))
    # Each Ray actor of one CPU computes with one thread; float32 sums split over another thread
    # count round differently (by about 1e-7), so the local engine runs with one thread too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = embed_corpus(corpus_file, tmp_path / "local", CorpusConfig(encoder=settings, shard_size=500,
                                                                           block_rows=128))
    finally:
        torch.set_num_threads(threads)
    ray = embed_corpus(corpus_file, tmp_path / "ray", CorpusConfig(encoder=settings, shard_size=500, block_rows=128,
                                                                    engine="ray", ray=RayOptions(workers=2)))
    assert (local.rows, ray.rows, ray.shards) == (2000, 2000, 4)
    local_ids, local_vectors = read_embeddings(tmp_path / "local")
    ray_ids, ray_vectors = read_embeddings(tmp_path / "ray")
    assert ray_ids == local_ids and len(set(ray_ids)) == 2000
    np.testing.assert_array_equal(ray_vectors, local_vectors)
