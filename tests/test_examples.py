"""The scripts in examples/ run and do what they say."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"examples.{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_semantic_search_ranks_the_answering_document_first(monkeypatch, capsys):
    from bivec import Encoder

    search = _example("semantic_search")
    encoder = Encoder.from_pretrained(dtype="float32")  # the shipped default
    for query, answer in [("How do plants make their food?", "Plants turn sunlight"),
                          ("Which instrument is played with a bow?", "A violin")]:
        hits = search.search(encoder, query, search.DOCUMENTS, 3)
        assert hits[0][1].startswith(answer), hits
        assert [score for score, _ in hits] == sorted((score for score, _ in hits), reverse=True)
    monkeypatch.setattr(sys, "argv", ["semantic_search.py", "Why does it rain?", "--top", "2"])
    search.main()
    expected = [f"{score:.3f}  {document}" for score, document in
                search.search(encoder, "Why does it rain?", search.DOCUMENTS, 2)]
    assert capsys.readouterr().out.splitlines() == expected


def test_semantic_search_refuses_a_bad_top_before_loading(monkeypatch, capsys, no_loading):
    monkeypatch.setattr(sys, "argv", ["semantic_search.py", "a query", "--top", "0"])
    with pytest.raises(SystemExit) as exit_:
        _example("semantic_search").main()
    assert exit_.value.code == 2 and "--top must be at least 1, got 0" in capsys.readouterr().err


def test_openai_client_gets_the_encoders_vectors(tiny_model_dir):
    from fastapi.testclient import TestClient
    from openai import OpenAI

    from bivec import Encoder
    from bivec.serving import ServerConfig, create_app

    example = _example("openai_client")
    encoder = Encoder.from_pretrained(tiny_model_dir, dtype="float32")
    texts = ["a man plays a guitar", "the dog runs"]
    with TestClient(create_app(encoder, ServerConfig(model_name="tiny"))) as server:
        client = OpenAI(base_url="http://testserver/v1", api_key="none", http_client=server, max_retries=0)
        model, vectors, tokens = example.embed(client, texts)
    assert model == "tiny" and tokens == sum(len(item.input_ids) for item in encoder.tokenize(texts))
    np.testing.assert_allclose(vectors, encoder.encode(texts, normalize=True), atol=1e-5)


def test_to_sentence_transformers_writes_a_folder_with_bivecs_vectors(tiny_model_dir, tmp_path, monkeypatch, capsys):
    example = _example("to_sentence_transformers")
    monkeypatch.setattr(sys, "argv", ["to_sentence_transformers.py", str(tmp_path / "refused"), "--model",
                                      str(tiny_model_dir)])
    with pytest.raises(SystemExit) as exit_:  # 512 tokens by default, more than the tiny model's positions
        example.main()
    assert exit_.value.code == 2 and "exceeds the model's 256 positions" in capsys.readouterr().err
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "bivec_config.json").write_text(json.dumps({"max_length": 256}))
    out = tmp_path / "st"
    monkeypatch.setattr(sys, "argv", ["to_sentence_transformers.py", str(out), "--model", str(model)])
    example.main()
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith(f"sentence-transformers from {out}: (2, 32), min cosine to bivec ")
    assert float(printed.rsplit(" ", 1)[1]) > 0.99999
