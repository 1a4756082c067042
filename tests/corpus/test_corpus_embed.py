import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from checkpoint_layouts import build_adapter

import bivec.corpus.embed as embed_module
from bivec import Encoder
from bivec.corpus import Columns, CorpusConfig, CorpusError, WorkerSettings, embed_corpus, read_embeddings
from bivec.models.checkpoint import resolve_checkpoint, weights_fingerprint


def config(model_dir, **kwargs) -> CorpusConfig:
    encoder = WorkerSettings(model=str(model_dir), **kwargs.pop("encoder", {}))
    return CorpusConfig(encoder=encoder, shard_size=kwargs.pop("shard_size", 500), block_rows=kwargs.pop("block_rows", 128), **kwargs)


def input_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def errors_of(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "errors.jsonl").read_text().splitlines()]


def test_local_engine_embeds_every_row_like_the_encoder(tiny_model_dir, corpus_file, tmp_path):
    summary = embed_corpus(corpus_file, tmp_path / "out", config(tiny_model_dir))
    assert (summary.rows, summary.shards, summary.resumed_shards, summary.rows_this_run, summary.errors) == (2000, 4, 0, 2000, 0)
    assert str(summary).startswith(f"2000 rows in 4 shards -> {tmp_path / 'out'}; 2000 rows embedded in ")
    ids, vectors = read_embeddings(tmp_path / "out")
    rows = input_rows(corpus_file)
    assert ids == [r["id"] for r in rows]
    expected = Encoder.from_pretrained(tiny_model_dir).encode([r["text"] for r in rows])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["rows"] == 2000 and manifest["dim"] == 32
    assert manifest["encoder"] == {"model": str(tiny_model_dir.resolve()), "adapters": [], "causal": False,
                                   "pooling": None, "max_length": None, "dtype": None, "normalize": False,
                                   "truncate": False, "backend": "torch", "echo": None,
                                   "checkpoint_settings": {"pooling": None, "max_length": None, "bidirectional": None,
                                                           "prompts": None, "echo": None},
                                   "weights": weights_fingerprint(resolve_checkpoint(tiny_model_dir))}
    assert list(manifest["encoder"]["weights"]) == ["base: model.safetensors"]
    assert [s["rows"] for s in manifest["shards"]] == [500] * 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("part-")) == ["errors.jsonl", "manifest.json"]


def test_instructions_and_normalize(tiny_model_dir, tmp_path, make_sentences, write_jsonl):
    rows = [{"id": i, "text": t, "task": "find similar text" if i % 2 else None} for i, t in enumerate(make_sentences(50))]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    embed_corpus(path, tmp_path / "out", config(tiny_model_dir, columns=Columns(instruction="task"), encoder={"normalize": True}))
    ids, vectors = read_embeddings(tmp_path / "out")
    assert ids == [str(i) for i in range(50)]
    items = [[r["task"], r["text"]] if r["task"] else r["text"] for r in rows]
    expected = Encoder.from_pretrained(tiny_model_dir).encode(items, normalize=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


@pytest.fixture
def bad_corpus(tmp_path, make_sentences, write_jsonl) -> Path:
    """c.jsonl: 30 good rows with 6 bad ones (blank, bad ids, a list, a duplicate, too long) after the 10th."""
    good = [{"id": f"g{i}", "text": t} for i, t in enumerate(make_sentences(30))]
    bad = [{"id": "e", "text": " "}, {"id": 3.5, "text": "a dog"}, {"id": "n", "text": ["a", "list"]}, {"id": "g0", "text": "again"},
           {"text": "no id"}, {"id": "long", "text": "a man " * 40}]
    return write_jsonl(tmp_path / "c.jsonl", good[:10] + bad + good[10:])


def test_skip_writes_every_bad_row_to_the_errors_file(tiny_model_dir, tmp_path, bad_corpus):
    path = bad_corpus
    summary = embed_corpus(path, tmp_path / "out", config(tiny_model_dir, on_error="skip", encoder={"max_length": 30}))
    assert (summary.rows, summary.errors) == (30, 6)
    # The over-long row is refused by the worker, inside a shard: it is not counted as embedded.
    assert summary.rows_this_run == 30 and "; 30 rows embedded in " in str(summary)
    assert f"6 bad rows listed in {tmp_path / 'out/errors.jsonl'}" in str(summary)
    ids, _ = read_embeddings(tmp_path / "out")
    assert ids == [f"g{i}" for i in range(30)]
    assert errors_of(tmp_path / "out") == [
        {"file": str(path), "line": 11, "id": "e", "reason": "empty text"},
        {"file": str(path), "line": 12, "id": None, "reason": "id is float, expected a string or an integer"},
        {"file": str(path), "line": 13, "id": "n", "reason": "text is list, expected a string"},
        {"file": str(path), "line": 14, "id": "g0", "reason": f"duplicate id (first at {path} line 1)"},
        {"file": str(path), "line": 15, "id": None, "reason": "missing id"},
        {"file": str(path), "line": 16, "id": "long", "reason": "text has 81 tokens, more than max_length=30 tokens"},
    ]
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert (manifest["rows"], manifest["errors"], manifest["input"]["rows"]) == (30, 6, 36)


def test_truncate_embeds_over_long_texts(tiny_model_dir, tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "long", "text": "a man " * 40}, {"id": "short", "text": "a dog"}])
    summary = embed_corpus(path, tmp_path / "out", config(tiny_model_dir, encoder={"max_length": 30, "truncate": True}))
    assert (summary.rows, summary.errors, summary.cut) == (2, 0, 1)
    assert str(summary).endswith("; no bad rows; 1 texts cut to max_length")
    # Without truncate the long text is a bad row, and nothing is cut.
    strict = config(tiny_model_dir, encoder={"max_length": 30}, on_error="skip")
    summary = embed_corpus(path, tmp_path / "strict", strict)
    assert (summary.rows, summary.errors, summary.cut) == (1, 1, 0) and "cut" not in str(summary)


def test_fail_stops_before_embedding_and_names_file_and_line(tiny_model_dir, tmp_path, bad_corpus):
    path = bad_corpus
    with pytest.raises(CorpusError) as error:
        embed_corpus(path, tmp_path / "out", config(tiny_model_dir))
    message = str(error.value)
    assert message.startswith(f"5 bad rows (listed in {tmp_path / 'out/errors.jsonl'}):\n  {path} line 11 (id 'e'): empty text\n")
    assert "pass --on-error skip" in message
    assert len(errors_of(tmp_path / "out")) == 5
    assert not list((tmp_path / "out").glob("part-*"))


def test_fail_on_an_over_long_text_found_by_a_worker(tiny_model_dir, tmp_path, make_sentences, write_jsonl):
    rows = [{"id": f"g{i}", "text": t} for i, t in enumerate(make_sentences(20))] + [{"id": "long", "text": "a man " * 40}]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(CorpusError, match=rf"1 bad rows .*\n  {path} line 21 \(id 'long'\): text has 81 tokens, more than max_length=30"):
        embed_corpus(path, tmp_path / "out", config(tiny_model_dir, encoder={"max_length": 30}, shard_size=10))
    assert errors_of(tmp_path / "out")[0]["id"] == "long"


def test_resume_after_an_injected_failure_keeps_finished_shards(tiny_model_dir, corpus_file, tmp_path, monkeypatch):
    fresh = tmp_path / "fresh"
    embed_corpus(corpus_file, fresh, config(tiny_model_dir))
    output = tmp_path / "out"
    real_write = embed_module.write_shard
    written = []

    def write_two_then_fail(path, *args):
        if len(written) == 2:
            raise RuntimeError("injected failure")
        real_write(path, *args)
        written.append(path)

    monkeypatch.setattr(embed_module, "write_shard", write_two_then_fail)
    with pytest.raises(RuntimeError, match="injected failure"):
        embed_corpus(corpus_file, output, config(tiny_model_dir))
    assert json.loads((output / "manifest.json").read_text())["status"] == "running"
    with pytest.raises(CorpusError, match="is unfinished; run the same embed-corpus command again"):
        read_embeddings(output)
    stamps = {p: p.stat().st_mtime_ns for p in written}
    monkeypatch.setattr(embed_module, "write_shard", real_write)

    summary = embed_corpus(corpus_file, output, config(tiny_model_dir))
    assert (summary.rows, summary.shards, summary.resumed_shards, summary.rows_this_run) == (2000, 4, 2, 1000)
    assert "(2 finished before, kept)" in str(summary)
    assert {p: p.stat().st_mtime_ns for p in written} == stamps
    ids, vectors = read_embeddings(output)
    fresh_ids, fresh_vectors = read_embeddings(fresh)
    assert ids == fresh_ids and len(set(ids)) == 2000
    np.testing.assert_array_equal(vectors, fresh_vectors)
    again = embed_corpus(corpus_file, output, config(tiny_model_dir))
    assert (again.resumed_shards, again.rows_this_run) == (4, 0)


def test_changed_input_reembeds_only_changed_shards(tiny_model_dir, corpus_file, tmp_path, capsys, write_jsonl):
    output = tmp_path / "out"
    embed_corpus(corpus_file, output, config(tiny_model_dir))
    rows = input_rows(corpus_file)
    rows[1700]["text"] = "a changed text"
    write_jsonl(corpus_file, rows)
    summary = embed_corpus(corpus_file, output, config(tiny_model_dir))
    assert (summary.resumed_shards, summary.rows_this_run) == (3, 500)
    assert "removed 1 shards of an earlier, different input" in capsys.readouterr().err
    assert len(list(output.glob("part-*.parquet"))) == 4
    ids, vectors = read_embeddings(output)
    assert ids == [r["id"] for r in rows]
    expected = Encoder.from_pretrained(tiny_model_dir).encode(["a changed text"])
    np.testing.assert_allclose(vectors[1700:1701], expected, atol=1e-5)


def test_bad_arguments_and_outputs(tiny_model_dir, corpus_file, tmp_path, write_jsonl):
    with pytest.raises(CorpusError, match="--on-error must be 'skip' or 'fail', got 'ignore'"):
        embed_corpus(corpus_file, tmp_path / "o", config(tiny_model_dir, on_error="ignore"))
    with pytest.raises(CorpusError, match="--engine must be 'local' or 'ray', got 'spark'"):
        embed_corpus(corpus_file, tmp_path / "o", config(tiny_model_dir, engine="spark"))
    with pytest.raises(CorpusError, match="--shard-size must be at least 1, got 0"):
        embed_corpus(corpus_file, tmp_path / "o", config(tiny_model_dir, shard_size=0))
    with pytest.raises(ValueError, match="--max-batch-tokens must be at least 1, got 0"):
        embed_corpus(corpus_file, tmp_path / "o", config(tiny_model_dir, encoder={"max_batch_tokens": 0}))
    with pytest.raises(ValueError, match="unknown pooling mode 'max'"):
        embed_corpus(corpus_file, tmp_path / "o", config(tiny_model_dir, encoder={"pooling": "max"}))
    with pytest.raises(FileNotFoundError, match="model path .*nope.* does not exist"):
        embed_corpus(corpus_file, tmp_path / "o", config(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(CorpusError, match="output '.*file' is a file; expected a directory"):
        embed_corpus(corpus_file, tmp_path / "file", config(tiny_model_dir))
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x").write_text("x")
    with pytest.raises(CorpusError, match="output '.*full' is a non-empty directory without manifest.json"):
        embed_corpus(corpus_file, tmp_path / "full", config(tiny_model_dir))
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(CorpusError, match="no rows in 1 file"):
        embed_corpus(empty, tmp_path / "o", config(tiny_model_dir))


def test_other_settings_on_an_existing_output_are_refused(tiny_model_dir, tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "a dog"}])
    embed_corpus(path, tmp_path / "out", config(tiny_model_dir))
    with pytest.raises(CorpusError, match=r"holds a run with other settings \(encoder: .*'pooling': None.*; use a new output"):
        embed_corpus(path, tmp_path / "out", config(tiny_model_dir, encoder={"pooling": "eos"}))
    # Settings that change only the speed do not change the vectors' identity.
    speed_only = {"batch_size": 7, "max_batch_tokens": 64, "compile": True}
    summary = embed_corpus(path, tmp_path / "out", config(tiny_model_dir, encoder=speed_only))
    assert (summary.rows, summary.resumed_shards, summary.rows_this_run) == (1, 1, 0)


def test_a_checkpoint_whose_recorded_settings_changed_is_refused(tiny_model_dir, tmp_path, write_jsonl):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "a dog"}])
    embed_corpus(path, tmp_path / "out", config(model))
    # The same flags, but the checkpoint now records another pooling: its vectors would differ.
    (model / "bivec_config.json").write_text(json.dumps({"pooling": "eos"}))
    with pytest.raises(CorpusError, match=r"holds a run with other settings \(encoder: .*'checkpoint_settings': "
                                          r"\{'pooling': None.*'pooling': 'eos'"):
        embed_corpus(path, tmp_path / "out", config(model))


def test_an_adapter_trained_again_in_place_is_refused(tiny_model_dir, tmp_path, write_jsonl):
    adapter = build_adapter(tiny_model_dir, tmp_path / "adapter", seed=1)
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "a dog"}])
    run = config(tiny_model_dir, encoder={"adapters": [str(adapter)]})
    embed_corpus(path, tmp_path / "out", run)
    assert embed_corpus(path, tmp_path / "out", run).resumed_shards == 1
    # Same path, same settings, other weights: the finished shard holds the old adapter's vectors.
    build_adapter(tiny_model_dir, adapter, seed=2)
    with pytest.raises(CorpusError, match=r"holds a run with other settings \(encoder: .*'weights': .*"
                                          r"'adapter 1: adapter_model\.safetensors': 'sha256 [0-9a-f]{64}'"):
        embed_corpus(path, tmp_path / "out", run)


_KILL_SCRIPT = """
import os, signal, sys
from bivec.corpus import CorpusConfig, WorkerSettings, embed_corpus

real_replace, count = os.replace, [0]

def replace_then_die(src, dst):
    # Die the hard way halfway through the run: the third shard's temporary file is
    # written but never renamed into place.
    if str(dst).endswith(".parquet"):
        count[0] += 1
        if count[0] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)

os.replace = replace_then_die  # what bivec.textio.atomic_write renames with
embed_corpus(sys.argv[1], sys.argv[2], CorpusConfig(encoder=WorkerSettings(model=sys.argv[3]), shard_size=300, block_rows=100))
"""


@pytest.mark.slow
def test_a_killed_run_resumes_without_lost_or_duplicated_ids(tiny_model_dir, corpus_file, tmp_path):
    output = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(embed_module.__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILL_SCRIPT), str(corpus_file), str(output), str(tiny_model_dir)],
                         env=env, capture_output=True, text=True)
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert len(list(output.glob("part-*.parquet"))) == 2
    assert len(list(output.glob(".part-*.tmp"))) == 1
    summary = embed_corpus(corpus_file, output, CorpusConfig(encoder=WorkerSettings(model=str(tiny_model_dir)), shard_size=300, block_rows=100))
    assert (summary.rows, summary.shards, summary.resumed_shards) == (2000, 7, 2)
    assert not list(output.glob(".part-*.tmp"))
    ids, _ = read_embeddings(output)
    assert sorted(ids) == sorted(r["id"] for r in input_rows(corpus_file)) and len(ids) == len(set(ids)) == 2000
