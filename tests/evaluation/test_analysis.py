"""``bivec analyze``: causal vs bidirectional states per layer, future reach, and its outputs."""

import json

import pytest
import torch
from typer.testing import CliRunner

from bivec import Encoder
from bivec.attention import hidden_states, is_bidirectional, set_attention_mode
from bivec.cli import app
from bivec.evaluation.analysis import analyze

runner = CliRunner()
TEXTS = ["a man plays a guitar .", "the dog runs in the park", "someone is playing music ."]


def test_one_layer_model_last_token_is_the_same_in_both_modes_and_earlier_tokens_differ(tiny_model_dir):
    # In a single layer the last token attends to every token in both modes; earlier tokens see
    # more with bidirectional attention, so only they change.
    encoder = Encoder.from_pretrained(tiny_model_dir)
    model = encoder.model
    ids = torch.tensor([encoder.tokenize(["a man plays a guitar ."])[0].input_ids])
    mask = torch.ones_like(ids)
    set_attention_mode(model, bidirectional=False)
    causal = hidden_states(model, ids, mask)
    set_attention_mode(model, bidirectional=True)
    bidirectional = hidden_states(model, ids, mask)
    torch.testing.assert_close(causal[0], bidirectional[0])  # the embeddings
    # After the first layer: the last token is identical, every earlier one has changed.
    torch.testing.assert_close(causal[1][0, -1], bidirectional[1][0, -1], atol=1e-5, rtol=1e-5)
    assert all((causal[1][0, i] - bidirectional[1][0, i]).abs().max() > 1e-4 for i in range(ids.shape[1] - 1))


def test_analysis_reports_every_layer_and_leaves_the_mode_alone(tiny_model_dir):
    encoder = Encoder.from_pretrained(tiny_model_dir)
    result = analyze(encoder, TEXTS, name="tiny", show_progress=False)
    assert [s.layer for s in result.layers] == [1, 2] and result.texts == 3
    for stats in result.layers:
        assert -1 <= stats.cosine_mean < 1 and stats.future_reach > 0
        assert set(stats.cosine_by_third) == {"first", "middle", "last"}
    # The last third holds the tokens whose view changes least under the switch.
    first_layer = result.layers[0]
    assert first_layer.cosine_by_third["last"] > first_layer.cosine_by_third["first"]
    assert is_bidirectional(encoder.model)


def test_cli_writes_json_markdown_and_png_and_compares_models(tiny_model_dir, tmp_path):
    from checkpoint_layouts import build_adapter

    other = build_adapter(tiny_model_dir, tmp_path / "adapter", seed=3)
    (other / "bivec_config.json").write_text('{"echo": true}')  # the analysis reads each text once all the same
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "analysis"
    result = runner.invoke(app, ["analyze", str(tiny_model_dir), "--data", str(data), "--compare", str(other),
                                 "-o", str(out), "--layers", "1,2"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "analysis.json").read_text())
    assert [a["model"] for a in saved] == [tiny_model_dir.name, "adapter"]
    assert saved[0]["tokens"] == saved[1]["tokens"]
    assert "| layer | " in (out / "analysis.md").read_text()
    assert (out / "analysis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,message", [
    (["--layers", "3"], "--layers: the model has 2 layers (1 to 2), got 3"),
    (["--layers", "x"], "--layers 'x': expected comma-separated layer numbers"),
    (["--data", "{tmp}/empty.txt"], "--data {tmp}/empty.txt: the file holds no text"),
    (["--data", "{tmp}/missing.txt"], "--data {tmp}/missing.txt: no such file"),
])
def test_bad_inputs(tiny_model_dir, tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("\n\n")
    result = runner.invoke(app, ["analyze", str(tiny_model_dir), "-o", str(tmp_path / "o"),
                                 *[a.format(tmp=tmp_path) for a in args]])
    assert result.exit_code == 2, result.output
    assert message.format(tmp=tmp_path) in result.output


def test_a_model_that_cannot_be_switched_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    from bivec import attention
    from bivec.evaluation import analysis

    def refuse(model, **kwargs):
        raise attention.BidirectionalError("still causal")

    monkeypatch.setattr(analysis, "make_bidirectional", refuse)
    encoder = Encoder.from_pretrained(tiny_model_dir, bidirectional=False)
    with pytest.raises(attention.BidirectionalError, match="still causal"):
        analyze(encoder, TEXTS, show_progress=False)
