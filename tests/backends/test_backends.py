"""Backends: the ONNX export, its check against torch float32, and what happens when a backend
is missing or fails the check."""

import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from bivec import Encoder, backends, precision
from bivec.backends import onnx
from bivec.cli import app
from bivec.corpus import BlockEncoder, WorkerSettings

TEXTS = ["a man plays a guitar", "the cat sits on the mat today", "a dog runs in the park with a child"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test exports into, and stores its verdicts in, a cache of its own."""
    monkeypatch.setenv("BIVEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "_verdict_dir", lambda: tmp_path / "verdicts")


@pytest.fixture
def torch_vectors(tiny_model_dir):
    return Encoder.from_pretrained(tiny_model_dir, dtype="float32").encode(TEXTS, normalize=True)


def _cosines(a, b):
    return np.sum(a * b, axis=1)


@pytest.mark.parametrize("name", ["onnx", "openvino"])
def test_an_exact_backend_passes_its_check_and_encodes_like_torch(tiny_model_dir, torch_vectors, name, capsys):
    encoder = Encoder.from_pretrained(tiny_model_dir, backend=name)
    choice = encoder.backend_choice
    assert choice.backend == name and encoder.backend_forward is not None
    (trial,) = choice.trials
    assert trial.passed and trial.worst_distance <= backends.MAX_TOKEN_DISTANCE
    assert f"checking backend {name}" in capsys.readouterr().err
    assert np.min(_cosines(encoder.encode(TEXTS, normalize=True), torch_vectors)) >= 1 - 1e-5


def test_the_export_and_the_verdict_are_made_once(tiny_model_dir, monkeypatch, capsys):
    Encoder.from_pretrained(tiny_model_dir, backend="onnx")
    capsys.readouterr()

    def no_second_export(*args):
        raise AssertionError("exported again")

    def no_second_hash(*args):
        raise AssertionError("the weights were read again")

    monkeypatch.setattr(onnx, "_export", no_second_export)
    monkeypatch.setattr(onnx, "weights_hash", no_second_hash)
    again = Encoder.from_pretrained(tiny_model_dir, backend="onnx")
    assert again.backend_choice.cached and again.backend_choice.backend == "onnx"
    assert "checking backend" not in capsys.readouterr().err


def test_a_backend_that_fails_its_check_leaves_torch(tiny_model_dir, torch_vectors, monkeypatch, capsys):
    real = backends.build_forward

    def off_by_a_little(name, encoder, digest=None):
        forward = real(name, encoder, digest)

        def perturbed(ids, mask):
            hidden = forward(ids, mask)
            hidden[..., 0] += 0.05 * hidden.abs().mean()  # turns every state a little
            return hidden

        return perturbed

    monkeypatch.setattr(backends, "build_forward", off_by_a_little)
    encoder = Encoder.from_pretrained(tiny_model_dir, backend="onnx")
    (trial,) = encoder.backend_choice.trials
    assert encoder.backend_choice.backend == "torch" and encoder.backend_forward is None
    assert not trial.passed and "above 1e-05" in trial.reason
    assert "using torch (onnx: a token state is" in capsys.readouterr().err
    np.testing.assert_allclose(encoder.encode(TEXTS, normalize=True), torch_vectors, atol=1e-6)
    # The verdict is kept: the next load says so, and stays on torch.
    again = Encoder.from_pretrained(tiny_model_dir, backend="onnx")
    assert again.backend_forward is None
    assert "failed its check on this machine earlier" in capsys.readouterr().err


def test_a_backend_that_is_not_installed_is_reported(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    encoder = Encoder.from_pretrained(tiny_model_dir, backend="onnx")
    (trial,) = encoder.backend_choice.trials
    assert encoder.backend_choice.backend == "torch" and not trial.passed
    assert trial.reason == "onnxruntime is not installed (pip install 'bivec[onnx]')"
    assert "onnxruntime is not installed" in capsys.readouterr().err


def test_int8_is_judged_by_the_dtype_rule(tiny_model_dir, monkeypatch, tmp_path):
    encoder = Encoder.from_pretrained(tiny_model_dir, backend="onnx-int8")
    (trial,) = encoder.backend_choice.trials
    # Not exact (int8 weights), and not held to the exact rule: dtype="auto"'s rule on pooled vectors.
    assert trial.worst_distance > backends.MAX_TOKEN_DISTANCE and "1 - cos" not in trial.reason
    assert (encoder.backend_choice.backend == "onnx-int8") == trial.passed
    # Where that rule passes, the int8 model is used.
    real = precision.judge
    monkeypatch.setattr(precision, "judge", lambda *a: real(*a) | {"passed": True, "reason": ""})
    monkeypatch.setattr(precision, "_verdict_dir", lambda: tmp_path / "other-verdicts")
    passing = Encoder.from_pretrained(tiny_model_dir, backend="onnx-int8")
    assert passing.backend_choice.backend == "onnx-int8" and passing.backend_forward is not None


def test_auto_tries_every_backend(tiny_model_dir):
    choice = Encoder.from_pretrained(tiny_model_dir, backend="auto").backend_choice
    assert [t.backend for t in choice.trials] == ["onnx", "onnx-int8", "openvino"]
    assert choice.backend in ("torch", *(t.backend for t in choice.trials if t.passed and t.seconds < t.torch_seconds))


def test_bad_backend_arguments(tiny_model_dir):
    with pytest.raises(ValueError, match="backend 'tensorrt': choose one of torch, onnx, onnx-int8, openvino, auto"):
        Encoder.from_pretrained(tiny_model_dir, backend="tensorrt")
    with pytest.raises(ValueError, match="backend='onnx' runs the model exported in float32"):
        Encoder.from_pretrained(tiny_model_dir, backend="onnx", dtype="bfloat16")
    with pytest.raises(ValueError, match="compile=True compiles the torch model"):
        Encoder.from_pretrained(tiny_model_dir, backend="onnx", compile=True)


def test_cli_refuses_an_unknown_backend_before_loading(no_loading):
    result = CliRunner().invoke(app, ["encode", "a text", "--backend", "tensorrt"])
    assert result.exit_code == 2
    assert "--backend: backend 'tensorrt': choose one of" in result.output


def test_embed_corpus_workers_run_the_backend(tiny_model_dir, torch_vectors):
    worker = BlockEncoder(WorkerSettings(model=str(tiny_model_dir), backend="onnx", normalize=True))
    assert worker.encoder.backend_choice.backend == "onnx"
    vectors, bad, cut = worker.encode_block(TEXTS, [""] * len(TEXTS))
    assert bad == [] and cut == 0 and np.min(_cosines(vectors, torch_vectors)) >= 1 - 1e-5
    with pytest.raises(ValueError, match="--backend auto: give the backend"):
        WorkerSettings(model=str(tiny_model_dir), backend="auto").check(load_model_here=True)


def test_the_server_answers_with_the_backend(tiny_model_dir, torch_vectors):
    from fastapi.testclient import TestClient

    from bivec.serving import ServerConfig, create_app

    encoder = Encoder.from_pretrained(tiny_model_dir, backend="onnx")
    calls = []
    forward = encoder.backend_forward
    encoder.backend_forward = lambda ids, mask: calls.append(len(ids)) or forward(ids, mask)
    with TestClient(create_app(encoder, ServerConfig(model_name="tiny"))) as client:
        response = client.post("/v1/embeddings", json={"model": "tiny", "input": TEXTS})
    assert response.status_code == 200 and calls
    vectors = np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)
    assert np.min(_cosines(vectors, torch_vectors)) >= 1 - 1e-5
