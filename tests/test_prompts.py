"""Named prompts: stored with a checkpoint, used by encode, the CLI, the server and training."""

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bivec import Encoder
from bivec.cli import app
from bivec.serving import ServerConfig, create_app

QUERY = "retrieve similar sentence :"
TEXTS = ["a man plays a guitar", "the dog runs in the park"]


@pytest.fixture(scope="module")
def prompted(tiny_model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("prompted") / "model"
    shutil.copytree(tiny_model_dir, path)
    (path / "bivec_config.json").write_text(json.dumps({"prompts": {"query": QUERY, "document": ""}}))
    return path


def test_prompt_names_put_the_prompt_before_plain_texts(prompted):
    encoder = Encoder.from_pretrained(prompted)
    assert encoder.prompts == {"query": QUERY, "document": ""}
    assert (encoder.prompt("query"), encoder.prompt("document")) == (QUERY, "")
    instructed = encoder.encode([[QUERY, t] for t in TEXTS])
    np.testing.assert_allclose(encoder.encode(TEXTS, prompt_name="query"), instructed, atol=1e-6)
    np.testing.assert_allclose(encoder.encode_query(TEXTS), instructed, atol=1e-6)
    np.testing.assert_allclose(encoder.encode_document(TEXTS), encoder.encode(TEXTS), atol=1e-6)
    with pytest.raises(ValueError, match="unknown prompt name 'passage'; this model's prompts: 'query', 'document'"):
        encoder.encode(TEXTS, prompt_name="passage")
    assert encoder.tokenize(TEXTS, prompt_name="query") == encoder.tokenize([[QUERY, t] for t in TEXTS])
    assert encoder.tokenize(TEXTS, prompt_name="document") == encoder.tokenize(TEXTS)


def test_cli_and_server_take_prompt_names(prompted, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["encode", *TEXTS, "-m", str(prompted), "--prompt-name", "query", "-o", str(tmp_path / "v.npy")])
    assert result.exit_code == 0, result.output
    encoder = Encoder.from_pretrained(prompted)
    expected = encoder.encode(TEXTS, prompt_name="query")
    np.testing.assert_allclose(np.load(tmp_path / "v.npy"), expected, atol=1e-6)
    result = runner.invoke(app, ["encode", "a dog", "-m", str(prompted), "--prompt-name", "nope"])
    assert result.exit_code == 2 and "unknown prompt name 'nope'" in result.output
    with TestClient(create_app(encoder, ServerConfig(normalize=False))) as client:
        ok = client.post("/v1/embeddings", json={"input": TEXTS, "prompt_name": "query"})
        assert ok.status_code == 200
        np.testing.assert_allclose([d["embedding"] for d in ok.json()["data"]], expected, atol=1e-5)
        bad = client.post("/v1/embeddings", json={"input": TEXTS, "prompt_name": "nope"})
        assert bad.status_code == 400
        error = bad.json()["error"]
        assert error["message"] == "prompt_name: unknown prompt name 'nope'; this model's prompts: 'query', 'document'"
        assert error["param"] == "prompt_name"
        ids = [encoder.tokenizer("a dog")["input_ids"]]
        bad = client.post("/v1/embeddings", json={"input": ids, "prompt_name": "query"}).json()["error"]
        assert (bad["message"], bad["param"]) == (
            "prompt_name applies to text inputs; token-id inputs carry their own tokens", "prompt_name")
        plain = client.post("/v1/embeddings", json={"input": ids}).json()["data"]
        document = client.post("/v1/embeddings", json={"input": ids, "prompt_name": "document"}).json()["data"]
        assert document == plain


def test_bad_prompts_in_a_checkpoint_are_named(tiny_model_dir, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(tiny_model_dir, path)
    (path / "bivec_config.json").write_text(json.dumps({"prompts": {"query": 3}}))
    with pytest.raises(ValueError, match=r"bivec_config.json: prompts must map names to prompt strings"):
        Encoder.from_pretrained(path)


def test_supervised_training_writes_its_instruction_as_the_query_prompt(tmp_path, make_tiny_lm, make_tiny_tokenizer):
    from bivec.training import SupervisedConfig, train_supervised

    base = tmp_path / "base"
    make_tiny_lm().save_pretrained(base)
    make_tiny_tokenizer().save_pretrained(base)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"query": "a man plays", "positive": "music"}\n{"query": "the cat", "positive": "a cat sits"}\n')
    train_supervised(SupervisedConfig(data=[rows], model=base, output_dir=tmp_path / "o", steps=1, batch_size=2,
                                      warmup_steps=0, progress=False, precision="fp32", instruction=QUERY))
    assert Encoder.from_pretrained(tmp_path / "o").prompts == {"query": QUERY, "document": ""}
