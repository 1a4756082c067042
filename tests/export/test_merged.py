"""``bivec convert merged``: one folder that plain transformers loads as bivec does."""

import json

import numpy as np
import pytest
import torch
from checkpoint_layouts import build_adapter
from transformers import AutoModel
from typer.testing import CliRunner

from bivec import Encoder
from bivec.cli import app
from bivec.export.merged import MergedExportError, verify_merged

runner = CliRunner()


def test_merged_folder_loads_with_plain_transformers(tiny_model_dir, tmp_path):
    adapter = build_adapter(tiny_model_dir, tmp_path / "adapter", seed=5)
    out = tmp_path / "merged"
    result = runner.invoke(app, ["convert", "merged", str(tiny_model_dir), str(out), "--adapter", str(adapter)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["is_causal"] is False
    encoder = Encoder.from_pretrained(tiny_model_dir, adapters=[adapter], dtype="float32")
    texts = ["a man plays a guitar", "the dog runs"]
    np.testing.assert_allclose(Encoder.from_pretrained(out, dtype="float32").encode(texts), encoder.encode(texts),
                               atol=1e-5)
    plain = AutoModel.from_pretrained(out).eval()
    ids = torch.tensor([encoder.tokenize(["a man plays a guitar"])[0].input_ids])
    with torch.no_grad():
        states = plain(input_ids=ids).last_hidden_state[0].numpy()
    np.testing.assert_allclose(states, encoder.token_states(encoder.tokenize(["a man plays a guitar"]))[0], atol=1e-5)


def test_a_causal_encoder_merges_and_stays_causal(tiny_model_dir, tmp_path):
    adapter = build_adapter(tiny_model_dir, tmp_path / "adapter", seed=5)
    out = tmp_path / "merged"
    result = runner.invoke(app, ["convert", "merged", str(tiny_model_dir), str(out), "--adapter", str(adapter),
                                 "--causal", "--pooling", "weighted_mean", "--echo"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text()).get("is_causal") is not False
    settings = json.loads((out / "bivec_config.json").read_text())
    assert settings["bidirectional"] is False and settings["pooling"] == "weighted_mean" and settings["echo"] is True
    encoder = Encoder.from_pretrained(tiny_model_dir, adapters=[adapter], dtype="float32", bidirectional=False,
                                      pooling="weighted_mean", echo=True)
    texts = ["a man plays a guitar", "the dog runs"]
    np.testing.assert_allclose(Encoder.from_pretrained(out, dtype="float32").encode(texts), encoder.encode(texts),
                               atol=1e-5)


def test_bad_outputs_and_a_folder_that_fails_its_check(tiny_model_dir, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    result = runner.invoke(app, ["convert", "merged", str(tiny_model_dir), str(tmp_path / "full")])
    assert result.exit_code == 2 and "exists and is not an empty folder" in result.output
    # A folder whose config says causal is read causally by plain transformers: the check refuses it.
    encoder = Encoder.from_pretrained(tiny_model_dir, dtype="float32")
    folder = tmp_path / "causal"
    encoder.model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["is_causal"] = True
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MergedExportError, match="plain transformers does not reproduce bivec's token states"):
        verify_merged(encoder, folder)
