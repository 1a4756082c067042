import numpy as np
import pytest

from bivec import Encoder
from bivec.attention import make_bidirectional
from bivec.evaluation.mteb_wrapper import (
    MTEBEncoder,
    llm2vec_instruction,
    load_mteb_tasks,
    local_retrieval_task,
    local_sts_task,
    run_mteb,
)
from bivec.evaluation.sts import evaluate_sts

PAIRS = ["4.0\ta man plays a guitar\tsomeone is playing music", "0.5\tthe cat sits on the mat\tstock market fell sharply today",
         "3.0\ta dog runs in the park\tthe dog runs", "1.0\ta woman eats food\tthe market rose today",
         "2.5\ta child plays piano\tsomeone is playing music"]


class Spy:
    """Records what MTEB asks the encoder to embed."""

    def __init__(self, encoder):
        self.encoder, self.calls = encoder, []
        self.dim, self.max_length = encoder.dim, encoder.max_length

    def encode(self, items, **kwargs):
        self.calls.append(list(items))
        return self.encoder.encode(items, **kwargs)


@pytest.fixture(scope="module")
def encoder(make_tiny_model, make_tiny_tokenizer):
    return Encoder(make_bidirectional(make_tiny_model("llama", "sdpa")), make_tiny_tokenizer())


@pytest.fixture
def sts_file(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(PAIRS) + "\n", encoding="utf-8")
    return path


def test_llm2vec_instruction_format():
    assert llm2vec_instruction("Retrieve semantically similar text.") == "Retrieve semantically similar text:"
    assert llm2vec_instruction(" Classify: ") == "Classify:"
    assert llm2vec_instruction("") == ""


def test_local_sts_task_runs_end_to_end_and_matches_bivec_sts(encoder, sts_file, tmp_path):
    spy = Spy(encoder)
    model = MTEBEncoder(spy, name="tiny", instructions={"LocalPairs": "Find similar text"})
    task = local_sts_task(sts_file, name="LocalPairs")
    scores = run_mteb(model, [task], output_dir=tmp_path / "mteb")
    # Symmetric task: both sides carry the instruction.
    assert len(spy.calls) == 2 and all(item[0] == "Find similar text:" for call in spy.calls for item in call)
    expected = evaluate_sts(encoder, sts_file, instruction="Find similar text:")
    assert scores["LocalPairs"]["cosine_spearman"] == pytest.approx(expected.spearman, abs=1e-3)
    assert scores["LocalPairs"]["main_score"] == scores["LocalPairs"]["cosine_spearman"]
    assert list((tmp_path / "mteb").rglob("LocalPairs.json"))


def test_task_prompt_is_the_default_instruction(encoder, sts_file):
    spy = Spy(encoder)
    run_mteb(MTEBEncoder(spy), [local_sts_task(sts_file, prompt="Retrieve semantically similar text.")])
    assert {item[0] for call in spy.calls for item in call} == {"Retrieve semantically similar text:"}
    spy.calls.clear()
    run_mteb(MTEBEncoder(spy, use_instructions=False), [local_sts_task(sts_file, prompt="Retrieve similar text.")])
    assert all(isinstance(item, str) for call in spy.calls for item in call)


def test_retrieval_instructs_queries_only(encoder):
    spy = Spy(encoder)
    task = local_retrieval_task(
        {"q1": "a man plays a guitar", "q2": "stock market"},
        {"d1": "someone is playing music", "d2": "the stock market fell today", "d3": "a cat sits on the mat"},
        {"q1": {"d1": 1}, "q2": {"d2": 1}},
        prompt="Given a query, retrieve relevant passages",
    )
    scores = run_mteb(MTEBEncoder(spy), [task])
    queries = [c for c in spy.calls if all(isinstance(i, list) for i in c)]
    documents = [c for c in spy.calls if all(isinstance(i, str) for i in c)]
    assert [[i[1] for i in c] for c in queries] == [["a man plays a guitar", "stock market"]]
    assert {i[0] for c in queries for i in c} == {"Given a query, retrieve relevant passages:"}
    assert sorted(t for c in documents for t in c) == ["a cat sits on the mat", "someone is playing music", "the stock market fell today"]
    assert 0 <= scores["LocalRetrieval"]["ndcg_at_10"] <= 100


def test_local_retrieval_task_checks_judgements():
    with pytest.raises(ValueError, match="relevance judgements name query 'q9'"):
        local_retrieval_task({"q1": "a"}, {"d1": "b"}, {"q9": {"d1": 1}})
    with pytest.raises(ValueError, match=r"query 'q1' is judged against unknown documents \['d7'\]"):
        local_retrieval_task({"q1": "a"}, {"d1": "b"}, {"q1": {"d7": 1}})


def test_local_sts_task_reports_bad_lines(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("1.0\ta\tb\nx\ta\tb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: score 'x' is not a number"):
        local_sts_task(path)


def test_checkpoint_directory_loads_as_mteb_model(tiny_model_dir, sts_file):
    model = MTEBEncoder.from_pretrained(tiny_model_dir, pooling="mean")
    assert model.mteb_model_meta.name == f"bivec/{tiny_model_dir.name}" and model.mteb_model_meta.embed_dim == 32
    assert np.isfinite(run_mteb(model, [local_sts_task(sts_file)])["Localpairs"]["main_score"])


def test_unknown_task_and_unreachable_dataset_fail_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="MTEB has no task named 'NoSuchTask'"):
        load_mteb_tasks(["NoSuchTask"])
    with pytest.raises(ValueError, match=r"MTEB task 'STS12': its dataset 'mteb/sts12-sts' cannot be reached"):
        load_mteb_tasks(["STS12"])


def test_run_mteb_needs_a_task(encoder):
    with pytest.raises(ValueError, match="run_mteb needs at least one task"):
        run_mteb(MTEBEncoder(encoder), [])
