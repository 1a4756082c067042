import json
import shutil

import numpy as np
import pytest
import torch
from checkpoint_layouts import build_adapter
from safetensors.torch import load_file

from bivec import Encoder, LLM2Vec
from bivec.models.safety import UnsafeCheckpointError, check_weights

TEXTS = ["a man plays a guitar", "the cat sits on the mat"]


def _as_pickle(directory, safetensors_name, pickle_name):
    """Rewrite a checkpoint's safetensors weights as a pickle (torch.save), as old checkpoints are."""
    torch.save(load_file(directory / safetensors_name), directory / pickle_name)
    (directory / safetensors_name).unlink()


def test_pickle_base_is_refused_unless_allowed(tmp_path, build_base):
    safe = build_base(tmp_path / "safe")
    pickled = tmp_path / "pickled"
    shutil.copytree(safe, pickled)
    _as_pickle(pickled, "model.safetensors", "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match=r"has weights only in a pickle-based format \(pytorch_model.bin\)\. "
                                                    "Unpickling can run arbitrary code"):
        Encoder.from_pretrained(pickled)
    with pytest.raises(UnsafeCheckpointError, match="pass allow_pickle=True"):
        LLM2Vec.from_pretrained(pickled)
    expected = Encoder.from_pretrained(safe).encode(TEXTS)
    np.testing.assert_allclose(Encoder.from_pretrained(pickled, allow_pickle=True).encode(TEXTS), expected, atol=1e-6)
    drop_in = LLM2Vec.from_pretrained(pickled, use_safetensors=False).encode(TEXTS, convert_to_numpy=True, show_progress_bar=False)
    np.testing.assert_allclose(drop_in, expected, atol=1e-6)


def test_pickle_adapter_is_refused_unless_allowed(tmp_path, build_base):
    base = build_base(tmp_path / "base")
    adapter = build_adapter(base, tmp_path / "adapter", seed=1)
    expected = Encoder.from_pretrained(base, adapters=[adapter]).encode(TEXTS)
    _as_pickle(adapter, "adapter_model.safetensors", "adapter_model.bin")
    with pytest.raises(UnsafeCheckpointError, match=r"adapter '.*adapter' has weights only in a pickle-based format \(adapter_model.bin\)"):
        Encoder.from_pretrained(base, adapters=[adapter])
    loaded = Encoder.from_pretrained(base, adapters=[adapter], allow_pickle=True).encode(TEXTS)
    np.testing.assert_allclose(loaded, expected, atol=1e-6)


def test_safetensors_win_when_both_formats_are_present(tmp_path, build_base):
    base = build_base(tmp_path / "base")
    # A pickle next to safetensors weights is never opened: make it one that would fail to load.
    (base / "pytorch_model.bin").write_bytes(b"not a pickle")
    assert check_weights(base, "model", allow_pickle=False) is True
    assert Encoder.from_pretrained(base).encode(TEXTS).shape == (2, 32)


def test_remote_code_runs_only_when_trusted(tmp_path, build_base):
    base = build_base(tmp_path / "base")
    marker = tmp_path / "remote-code-ran"
    (base / "modeling_custom.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import LlamaModel\n\nclass CustomModel(LlamaModel):\n    pass\n"
    )
    config = json.loads((base / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (base / "config.json").write_text(json.dumps(config))
    encoder = Encoder.from_pretrained(base)
    assert type(encoder.model).__name__ == "LlamaModel" and not marker.exists()
    encoder = Encoder.from_pretrained(base, trust_remote_code=True)
    assert type(encoder.model).__name__ == "CustomModel" and marker.read_text() == "ran"


def test_cli_refuses_pickles_unless_allowed(tmp_path, build_base):
    from typer.testing import CliRunner

    from bivec.cli import app

    base = build_base(tmp_path / "base")
    _as_pickle(base, "model.safetensors", "pytorch_model.bin")
    result = CliRunner().invoke(app, ["encode", "a dog", "-m", str(base)])
    assert result.exit_code == 2 and "Unpickling can run arbitrary code" in result.output
    result = CliRunner().invoke(app, ["encode", "a dog", "-m", str(base), "--allow-pickle"])
    assert result.exit_code == 0, result.output
