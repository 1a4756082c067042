"""dtype="auto": the accuracy rule, the choice it drives, and the per-model cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_layouts import build_adapter

from bivec import Encoder, precision
from bivec.models.checkpoint import resolve_checkpoint


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _pair_vectors(similarities: list[float]) -> np.ndarray:
    """Pair k is (e_2k, c e_2k + s e_2k+1): its cosine similarity is exactly c."""
    out = np.zeros((2 * len(similarities), 2 * len(similarities)))
    for k, c in enumerate(similarities):
        out[2 * k, 2 * k] = 1.0
        out[2 * k + 1, 2 * k], out[2 * k + 1, 2 * k + 1] = c, np.sqrt(1 - c * c)
    return out


PAIRS = [(float(gold), 2 * k, 2 * k + 1) for k, gold in enumerate([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])]


def test_judge_passes_identical_embeddings():
    reference = _pair_vectors([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    verdict = precision.judge(reference, reference.copy(), PAIRS)
    assert verdict["passed"] and verdict["reason"] == ""
    assert verdict["min_cosine"] == pytest.approx(1.0) and verdict["share_close"] == 1.0
    assert verdict["spearman"] == pytest.approx(100.0) == verdict["spearman_float32"]


def test_judge_rejects_texts_far_from_float32():
    reference = _pair_vectors([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    candidate = reference.copy()
    candidate[0] = _unit(reference[0:1] + 0.5 * reference[1:2])[0]  # cosine 0.89 to the reference
    verdict = precision.judge(reference, candidate, PAIRS)
    assert not verdict["passed"]
    assert "91.7% of texts at cosine >= 0.99, needs 99%" in verdict["reason"]
    assert verdict["min_cosine"] < 0.99


def test_judge_rejects_a_spearman_drop_even_when_every_text_is_close():
    reference = _pair_vectors([0.500 + 0.001 * k for k in range(6)])
    candidate = _pair_vectors([0.505 - 0.001 * k for k in range(6)])  # same texts, order of pairs reversed
    verdict = precision.judge(reference, candidate, PAIRS)
    assert verdict["share_close"] == 1.0 and verdict["min_cosine"] > 0.9999
    assert not verdict["passed"] and "more than 0.3 below float32's 100.00" in verdict["reason"]


def test_calibration_set_is_pairs_with_gold_scores_then_paragraphs():
    texts, pairs = precision.calibration_set()
    assert len(pairs) == 100 and all(0.0 <= gold <= 5.0 for gold, _, _ in pairs)
    assert all(texts[i] and texts[j] for _, i, j in pairs)
    paragraphs = texts[2 * len(pairs):]
    assert len(paragraphs) >= 8 and min(len(p.split()) for p in paragraphs) > 50


@pytest.fixture
def bf16_candidate(monkeypatch):
    monkeypatch.setattr(precision, "candidates", lambda device: ["bfloat16"])


def _weights(encoder: Encoder) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in encoder.model.state_dict().items()}


def test_a_rejected_candidate_leaves_exact_float32_weights(tiny_model_dir, bf16_candidate, monkeypatch):
    monkeypatch.setattr(precision, "judge", lambda *a: {
        "passed": False, "min_cosine": 0.5, "share_close": 0.5, "spearman": 0.0, "spearman_float32": 0.0,
        "reason": "forced"})
    encoder = Encoder.from_pretrained(tiny_model_dir)
    assert encoder.precision.dtype == "float32" and encoder.model.dtype == torch.float32
    assert [t.dtype for t in encoder.precision.trials] == ["bfloat16"] and not encoder.precision.trials[0].passed
    exact = _weights(Encoder.from_pretrained(tiny_model_dir, dtype="float32"))
    assert all(torch.equal(exact[k], v) for k, v in _weights(encoder).items())
    assert "bfloat16 rejected: forced" in encoder.precision.describe()


def test_a_passing_faster_candidate_is_kept(tiny_model_dir, bf16_candidate, monkeypatch):
    real = precision._timed_encode
    monkeypatch.setattr(precision, "_timed_encode", lambda encoder, texts: (
        real(encoder, texts)[0], 1.0 if encoder.model.dtype == torch.bfloat16 else 2.0))
    monkeypatch.setattr(precision, "judge", lambda *a: {
        "passed": True, "min_cosine": 0.999, "share_close": 1.0, "spearman": 50.0, "spearman_float32": 50.0,
        "reason": ""})
    encoder = Encoder.from_pretrained(tiny_model_dir, pooling="eos")
    assert encoder.precision.dtype == "bfloat16" and encoder.model.dtype == torch.bfloat16
    assert "bfloat16 kept" in encoder.precision.describe() and "2.00x float32 speed" in encoder.precision.describe()
    expected = Encoder.from_pretrained(tiny_model_dir, pooling="eos", dtype="bfloat16").encode(["a dog runs"])
    np.testing.assert_array_equal(encoder.encode(["a dog runs"]), expected)


def test_the_verdict_is_cached_per_model(tiny_model_dir, bf16_candidate, monkeypatch, tmp_path):
    first = Encoder.from_pretrained(tiny_model_dir, pooling="last")
    assert not first.precision.cached and first.precision.trials

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached verdict should have been used")

    monkeypatch.setattr(precision, "choose", must_not_run)
    again = Encoder.from_pretrained(tiny_model_dir, pooling="last")
    assert again.precision.cached and again.precision.dtype == first.precision.dtype
    assert str(again.model.dtype) == f"torch.{first.precision.dtype}"
    assert [t.min_cosine for t in again.precision.trials] == [t.min_cosine for t in first.precision.trials]
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in tiny_model_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    with pytest.raises(AssertionError, match="cached verdict"):
        Encoder.from_pretrained(copy, pooling="last")  # another model: checked anew


def test_model_file_stats_list_the_stacks_weights_and_configs(tmp_path, build_base):
    base = build_base(tmp_path / "base")
    adapter = build_adapter(base, tmp_path / "adapter", seed=1)
    stats = precision.model_file_stats(resolve_checkpoint(base, [adapter]))
    paths = [Path(p) for p, _, _ in stats]
    assert {base / "model.safetensors", adapter / "adapter_model.safetensors", base / "config.json",
            adapter / "adapter_config.json"} <= set(paths)
    assert all(p.suffix in {".safetensors", ".json"} for p in paths)
    build_adapter(base, adapter, seed=2)  # trained again in place: another model for the cache
    assert precision.model_file_stats(resolve_checkpoint(base, [adapter])) != stats


def test_no_native_candidate_means_float32_without_a_check(tiny_model_dir):
    encoder = Encoder.from_pretrained(tiny_model_dir, pooling="bos")
    assert encoder.precision.dtype == "float32" and encoder.precision.trials == []
    assert "no faster dtype runs natively here" in encoder.precision.describe()


def test_an_explicit_dtype_skips_the_check(tiny_model_dir, bf16_candidate, monkeypatch):
    monkeypatch.setattr(precision, "choose", lambda *a, **k: pytest.fail("explicit dtypes are not checked"))
    encoder = Encoder.from_pretrained(tiny_model_dir, dtype="bfloat16")
    assert encoder.precision is None and encoder.model.dtype == torch.bfloat16


def test_bad_dtype_names_the_argument(tiny_model_dir):
    with pytest.raises(ValueError, match="unknown dtype 'float64'; choose one of"):
        Encoder.from_pretrained(tiny_model_dir, dtype="float64")


def test_cpu_candidates_follow_the_cpu_flags(_precision_check_off, monkeypatch):
    candidates = _precision_check_off
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert candidates(torch.device("cpu")) == ["int8"]
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512f", "amx_bf16"})
    assert candidates(torch.device("cpu")) == ["bfloat16", "int8"]


def _verdict(passed: bool) -> dict:
    return {"passed": passed, "min_cosine": 0.999 if passed else 0.5, "share_close": 1.0 if passed else 0.5,
            "spearman": 50.0, "spearman_float32": 50.0, "reason": "" if passed else "forced"}


@pytest.fixture
def float_layers_used(monkeypatch):
    """The leading float32 layer counts the int8 check tries, in order."""
    from bivec.int8 import Int8Plan

    used: list[int] = []
    real = Int8Plan.use
    monkeypatch.setattr(Int8Plan, "use", lambda self, n: (used.append(n), real(self, n))[1])
    return used


def _linear_kinds(encoder: Encoder) -> list[list[str]]:
    from bivec.int8 import decoder_layers

    return [sorted({type(m).__name__ for m in layer.modules() if "Linear" in type(m).__name__})
            for layer in decoder_layers(encoder.model)]


def test_int8_keeps_the_fewest_leading_float32_layers_that_pass(tiny_model_dir, float_layers_used, monkeypatch):
    thresholds = []
    monkeypatch.setattr(precision, "judge", lambda *a, **k: (thresholds.append(k.get("min_cosine")),
                                                             _verdict(float_layers_used[-1] >= 1))[1])
    encoder = Encoder.from_pretrained(tiny_model_dir, dtype="int8", pooling="last")
    assert float_layers_used[:2] == [1, 0]  # bisection over the tiny model's 2 layers
    assert thresholds == [precision.INT8_MIN_COSINE] * 2  # fitted on the calibration texts: a closer cosine
    assert encoder.precision.dtype == "int8" and encoder.precision.float_layers == 1
    assert _linear_kinds(encoder) == [["Linear"], ["Int8Linear"]]
    assert "int8 kept (1 leading layers in float32)" in encoder.precision.describe()
    # The cached verdict rebuilds the same model: same layers, same vectors.
    again = Encoder.from_pretrained(tiny_model_dir, dtype="int8", pooling="last")
    assert again.precision.cached and _linear_kinds(again) == [["Linear"], ["Int8Linear"]]
    np.testing.assert_array_equal(again.encode(["a dog runs"]), encoder.encode(["a dog runs"]))


def test_int8_that_never_passes_falls_back_to_float32_and_says_so(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(precision, "judge", lambda *a, **k: _verdict(False))
    encoder = Encoder.from_pretrained(tiny_model_dir, dtype="int8", pooling="weighted_mean")
    assert encoder.precision.dtype == "float32" and _linear_kinds(encoder) == [["Linear"], ["Linear"]]
    err = capsys.readouterr().err
    assert "int8 does not pass the accuracy check on this model; using float32" in err
    assert "forced, even with 1 of 2 layers in float32" in err
    exact = _weights(Encoder.from_pretrained(tiny_model_dir, dtype="float32"))
    assert all(torch.equal(exact[k], v) for k, v in _weights(encoder).items())


def test_auto_may_pick_int8_on_the_cpu(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(precision, "candidates", lambda device: ["int8"])
    real = precision._timed_encode
    monkeypatch.setattr(precision, "_timed_encode", lambda encoder, texts: (
        real(encoder, texts)[0], 1.0 if "Int8Linear" in str(encoder.model) else 2.0))
    monkeypatch.setattr(precision, "judge", lambda *a, **k: _verdict(True))
    encoder = Encoder.from_pretrained(tiny_model_dir, pooling="first")
    assert encoder.precision.dtype == "int8" and encoder.precision.float_layers == 0
    assert _linear_kinds(encoder) == [["Int8Linear"], ["Int8Linear"]]


def test_auto_leaves_int8_to_an_explicit_request_when_its_search_would_be_long(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(precision, "candidates", lambda device: ["int8"])
    real = precision._timed_encode
    monkeypatch.setattr(precision, "_timed_encode", lambda encoder, texts: (real(encoder, texts)[0], 60.0))
    encoder = Encoder.from_pretrained(tiny_model_dir, pooling="first", max_length=64)
    assert encoder.precision.dtype == "float32" and encoder.precision.trials == []
    assert "int8 not tried: its search would take about 300 s on this model (dtype='int8' runs it)" in capsys.readouterr().err


def test_smoothing_maxima_are_measured_once_per_model(tiny_model_dir, monkeypatch):
    from bivec import int8

    first = Encoder.from_pretrained(tiny_model_dir, dtype="float32", max_length=48)
    precision.prepare_int8(first)
    monkeypatch.setattr(int8, "activation_maxima", lambda *a: pytest.fail("maxima measured again"))
    second = Encoder.from_pretrained(tiny_model_dir, dtype="float32", max_length=48)
    precision.prepare_int8(second)
    assert all(torch.equal(a, b) for a, b in zip(_weights(first).values(), _weights(second).values()))
    assert not torch.equal(_weights(second)["layers.0.input_layernorm.weight"],
                           _weights(Encoder.from_pretrained(tiny_model_dir, dtype="float32"))["layers.0.input_layernorm.weight"])


def test_real_int8_check_on_a_tiny_model_stays_close_to_float32(tiny_model_dir):
    exact = Encoder.from_pretrained(tiny_model_dir, dtype="float32")
    int8 = Encoder.from_pretrained(tiny_model_dir, dtype="int8")
    texts = ["a dog runs in the park", "the stock market fell sharply today"]
    a, b = exact.encode(texts, normalize=True), int8.encode(texts, normalize=True)
    assert int8.precision.trials[0].dtype == "int8"
    assert np.all(np.sum(a * b, axis=1) > 0.99)


def test_int8_is_refused_off_the_cpu(tiny_model_dir):
    with pytest.raises(ValueError, match="dtype='int8' runs on the CPU only, not on meta"):
        Encoder.from_pretrained(tiny_model_dir, dtype="int8", device="meta")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_int8_lets_go_of_the_memory_mapped_checkpoint(tiny_model_dir, tmp_path):
    # A copy of its own, so that no other test's encoder maps the same file.
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    int8 = Encoder.from_pretrained(model_dir, dtype="int8")
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines() if str(model_dir) in line]
    assert mapped == [] and int8.encode("still encodes").shape == (1, int8.dim)
