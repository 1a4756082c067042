import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import bivec
from bivec.cli import app
from bivec.vectors import QuantizedVectors, check_output_path, quantize, write_vectors

runner = CliRunner()


def _vectors(n=50, dim=20, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_int8_codes_scale_and_round_trip():
    vectors = _vectors()
    q = bivec.quantize(vectors, "int8")
    assert q.codes.dtype == np.int8 and q.codes.shape == (50, 20) and q.scale.shape == (20,)
    np.testing.assert_allclose(q.scale, np.abs(vectors).max(axis=0) / 127, rtol=1e-6)
    assert (np.abs(q.codes).max(axis=0) == 127).all()
    # Rounding error is at most half a step per dimension.
    assert (np.abs(q.dequantize() - vectors) <= q.scale / 2 + 1e-7).all()


def test_int8_shared_scale_clips_and_keeps_batches_comparable():
    first, second = _vectors(seed=1), _vectors(seed=2) * 3
    q1 = quantize(first, "int8")
    q2 = quantize(second, "int8", scale=q1.scale)
    np.testing.assert_array_equal(q2.scale, q1.scale)
    assert np.abs(q2.codes).max() == 127
    np.testing.assert_array_equal(q2.codes, np.clip(np.rint(second / q1.scale), -127, 127).astype(np.int8))


def test_int8_zero_dimension_gets_unit_scale():
    vectors = np.zeros((3, 4), dtype=np.float32)
    vectors[:, 0] = [1.0, -2.0, 0.5]
    q = quantize(vectors, "int8")
    assert q.scale[1:].tolist() == [1.0, 1.0, 1.0] and (q.codes[:, 1:] == 0).all()


def test_binary_packs_signs_and_records_scale():
    vectors = _vectors(dim=13)
    q = quantize(vectors, "binary")
    assert q.codes.dtype == np.uint8 and q.codes.shape == (50, 2) and q.dim == 13
    np.testing.assert_array_equal(np.unpackbits(q.codes, axis=1, count=13), (vectors > 0).astype(np.uint8))
    np.testing.assert_allclose(q.scale, np.abs(vectors).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(q.dequantize(), np.where(vectors > 0, 1, -1) * q.scale, rtol=1e-6)


def test_save_and_load(tmp_path):
    for kind in ("int8", "binary"):
        q = quantize(_vectors(dim=9), kind)
        loaded = QuantizedVectors.load(q.save(tmp_path / f"{kind}.npz"))
        assert loaded.kind == kind and loaded.dim == 9
        np.testing.assert_array_equal(loaded.codes, q.codes)
        np.testing.assert_array_equal(loaded.scale, q.scale)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown quantisation 'int4'; choose one of int8, binary"):
        quantize(_vectors(), "int4")
    with pytest.raises(ValueError, match=r"2-D float array \(n, dim\), got int64 with shape \(3,\)"):
        quantize(np.array([1, 2, 3]), "int8")
    with pytest.raises(ValueError, match="NaN or infinite"):
        quantize(np.array([[np.nan, 1.0]]), "binary")
    with pytest.raises(ValueError, match=r"scale must have shape \(20,\), one value per dimension, got \(3,\)"):
        quantize(_vectors(), "int8", scale=np.ones(3))
    with pytest.raises(ValueError, match="scale must be finite and non-negative"):
        quantize(_vectors(), "int8", scale=-np.ones(20))
    with pytest.raises(ValueError, match="saved as .npz"):
        quantize(_vectors(), "int8").save(tmp_path / "codes.npy")
    np.savez(tmp_path / "other.npz", codes=np.zeros(3))
    with pytest.raises(ValueError, match="not a bivec quantised-vectors file: missing dim, kind, scale"):
        QuantizedVectors.load(tmp_path / "other.npz")


def test_cli_saves_quantised_codes_equal_to_the_library(tiny_model_dir, tmp_path):
    out = tmp_path / "codes.npz"
    texts = ["a dog runs", "the cat sits on the mat"]
    result = runner.invoke(app, ["encode", *texts, "-m", str(tiny_model_dir), "--quantize", "int8",
                                 "--dimensions", "16", "--normalize", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"saved 2 x 16 int8 codes and their scale to {out}" in result.output
    vectors = bivec.Encoder.from_pretrained(tiny_model_dir).encode(texts, dimensions=16, normalize=True)
    expected = quantize(vectors, "int8")
    loaded = QuantizedVectors.load(out)
    np.testing.assert_array_equal(loaded.codes, expected.codes)
    np.testing.assert_allclose(loaded.scale, expected.scale, rtol=1e-6)
    result = runner.invoke(app, ["encode", *texts, "-m", str(tiny_model_dir), "--quantize", "binary"])
    assert result.exit_code == 0, result.output
    assert "2 texts -> 32-dim vectors (mean pooling, bidirectional, binary codes)" in result.output
    assert "cosine similarity (of the dequantised codes):" in result.output


def test_cli_bad_quantise_options(tiny_model_dir, tmp_path):
    result = runner.invoke(app, ["encode", "a dog", "-m", str(tiny_model_dir), "--quantize", "int4"])
    assert result.exit_code == 2 and "--quantize int4: choose one of int8, binary" in result.output
    result = runner.invoke(app, ["encode", "a dog", "-m", str(tiny_model_dir), "--quantize", "int8", "-o", str(tmp_path / "v.npy")])
    assert result.exit_code == 2 and "only .npz is supported for quantised vectors (codes + scale)" in result.output
    result = runner.invoke(app, ["encode", "a dog", "-m", str(tiny_model_dir), "--dimensions", "99"])
    assert result.exit_code == 2 and "dimensions must be between 1 and 32, got 99" in result.output


def test_write_each_format(tmp_path):
    texts, vectors = ["a", "b"], np.arange(6, dtype=np.float32).reshape(2, 3)
    for suffix in (".npy", ".parquet", ".jsonl"):
        write_vectors(tmp_path / f"v{suffix}", texts, vectors)
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), vectors)
    table = pq.read_table(tmp_path / "v.parquet")
    assert table.column("text").to_pylist() == texts
    np.testing.assert_array_equal(np.array(table.column("embedding").to_pylist()), vectors)
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert rows == [{"text": "a", "embedding": [0.0, 1.0, 2.0]}, {"text": "b", "embedding": [3.0, 4.0, 5.0]}]


def test_bad_outputs(tmp_path):
    with pytest.raises(ValueError, match=r"--output v.csv: unsupported format; use .npy, .parquet, .jsonl"):
        check_output_path("v.csv")
    with pytest.raises(ValueError, match="2 texts but 1 vectors"):
        write_vectors(tmp_path / "v.npy", ["a", "b"], np.zeros((1, 3), dtype=np.float32))
