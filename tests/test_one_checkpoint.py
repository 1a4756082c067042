"""One checkpoint gives one vector for one text, whichever command loads it: a folder trained by
``bivec train llm2vec`` (training length 8 tokens; the paper's recipe, causal SimCSE with weighted
mean as bivec ships, and the same trained on echo embeddings) through encode, serve, eval, convert
and embed-corpus, on a text longer than the training length."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from checkpoint_layouts import drop_added_tokens
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bivec import Encoder
from bivec.cli import app
from bivec.cli_options import LoadOptions, load_encoder
from bivec.corpus import read_embeddings
from bivec.serving import ServerConfig, create_app
from bivec.training.config import MNTPConfig, SimCSEConfig
from bivec.training.recipe import LLM2VecConfig, stage_settings, train_llm2vec

runner = CliRunner()
LONG = "a man plays a guitar and a woman plays the piano in the park and the dog runs on the mat today ."


MNTP = ["steps=2", "batch_size=2", "max_length=8", "learning_rate=1e-2"]
SIMCSE = ["steps=2", "batch_size=4", "max_length=8", "learning_rate=1e-2"]
# name: (LLM2VecConfig options, further SimCSE settings, the encoder's (pooling, causal, echo))
RECIPES = {
    "bi+mntp+simcse": ({"mntp_stage": stage_settings(MNTPConfig, MNTP, "-")}, [], ("mean", False, False)),
    # The shape of bivec's shipped default, over a tokenizer that adds no token around a text (as
    # SmolLM2's): sentence-transformers' weighted mean matches bivec's only there.
    "causal+simcse-wmean": ({"mntp": False, "bidirectional": False}, ["pooling=weighted_mean"],
                            ("weighted_mean", True, False)),
    # Echo: no stock sentence-transformers module reads a text twice, so the export refuses it.
    "causal+simcse-wmean-echo": ({"mntp": False, "bidirectional": False}, ["pooling=weighted_mean", "echo=true"],
                                 ("weighted_mean", True, True)),
}


@pytest.fixture(scope="module", params=list(RECIPES))
def trained(request, tmp_path_factory, tiny_lm_dir, tiny_sentences):
    root = tmp_path_factory.mktemp("one-checkpoint")
    text = root / "text.txt"
    text.write_text("\n".join(tiny_sentences + [f"{a} {b}" for a, b in zip(tiny_sentences, tiny_sentences[1:])]) + "\n")
    options, simcse, expected = RECIPES[request.param]
    model = tiny_lm_dir
    if "pooling=weighted_mean" in simcse:
        model = drop_added_tokens(Path(shutil.copytree(tiny_lm_dir, root / "lm")))
    out = root / "encoder"
    train_llm2vec(LLM2VecConfig(data=[text], output_dir=out, model=model, precision="fp32", progress=False,
                                simcse_stage=stage_settings(SimCSEConfig, SIMCSE + simcse, "-"), **options))
    return out, expected


def test_every_command_gives_the_same_vector(trained, tmp_path):
    trained, (pooling, causal, echo) = trained
    encoder = Encoder.from_pretrained(trained)
    assert (encoder.pooling, encoder.max_length, encoder.echo) == (pooling, 256, echo)  # the tiny model's positions
    assert len(encoder.tokenize([LONG])[0].input_ids) > 8, "the text must be longer than the training length"
    expected = encoder.encode([LONG])[0]

    result = runner.invoke(app, ["encode", LONG, "-m", str(trained), "-o", str(tmp_path / "v.npy")])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "v.npy")[0], expected, atol=1e-6)

    with TestClient(create_app(load_encoder(LoadOptions(model=str(trained))), ServerConfig(normalize=False))) as served:
        answer = served.post("/v1/embeddings", json={"input": LONG, "model": "bivec"})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["data"][0]["embedding"], expected, atol=1e-5)

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "long", "text": LONG}) + "\n")
    result = runner.invoke(app, ["embed-corpus", str(corpus), str(tmp_path / "emb"), "-m", str(trained), "--no-progress"])
    assert result.exit_code == 0, result.output
    ids, vectors = read_embeddings(tmp_path / "emb")
    assert ids == ["long"]
    np.testing.assert_allclose(vectors[0], expected, atol=1e-5)

    result = runner.invoke(app, ["convert", "sentence-transformers", str(trained), str(tmp_path / "st")])
    if echo:
        assert result.exit_code == 2 and "reads each text twice and pools the second copy (echo)" in result.output
        assert not (tmp_path / "st").exists()
    else:
        assert result.exit_code == 0, result.output
        from sentence_transformers import SentenceTransformer

        np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "st"), device="cpu").encode([LONG])[0],
                                   expected, atol=1e-4)

    sts = tmp_path / "pairs.tsv"
    sts.write_text(f"1\t{LONG}\ta man plays a guitar .\n3\ta dog runs .\tthe dog runs in the park .\n")
    result = runner.invoke(app, ["eval", "sts", str(sts), "-m", str(trained), "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert (settings["pooling"], settings["max_length"], settings["causal"], settings["echo"]) == (
        pooling, 256, causal, echo)
