import json

import pytest

from bivec.evaluation.report import EvalResult, compare_markdown, compare_plot


def result(model, rows, kind="sts", metric="spearman"):
    return EvalResult(kind, model, metric, {name: {metric: v, "pairs": 10} for name, v in rows.items()}, {"pooling": "mean"}, 1.5)


def test_json_round_trip_and_markdown(tmp_path):
    r = result("causal", {"sts12": 40.0, "sts13": 30.0})
    path = r.save(tmp_path / "out" / "r.json")
    assert json.loads(path.read_text())["average"] == 35.0
    assert EvalResult.load(path) == r
    assert r.to_markdown().splitlines() == [
        "| sts | spearman | pairs |", "|---|---|---|", "| sts12 | 40.00 | 10 |", "| sts13 | 30.00 | 10 |",
        "| average (spearman) | 35.00 | |",
    ]


def test_compare_puts_models_side_by_side(tmp_path):
    a = result("causal", {"sts12": 40.0, "sick": 50.0})
    b = result("bidirectional", {"sts12": 30.0})
    probe = result("causal", {"pos": 90.0}, kind="word", metric="score")
    assert compare_markdown([a, b, probe]).splitlines() == [
        "| task | causal | bidirectional |", "|---|---|---|", "| sts12 (spearman) | 40.00 | 30.00 |",
        "| sick (spearman) | 50.00 |  |", "| pos (score) | 90.00 |  |",
    ]
    png = compare_plot([a, b], tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_results_are_refused(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of sts, mteb, word, got 'glue'"):
        EvalResult("glue", "m", "x", {})
    with pytest.raises(ValueError, match="row 'a' has no 'spearman' score"):
        EvalResult("sts", "m", "spearman", {"a": {"pearson": 1.0}})
    with pytest.raises(ValueError, match="model 'causal' has two results for sts12 \\(spearman\\)"):
        compare_markdown([result("causal", {"sts12": 1.0}), result("causal", {"sts12": 2.0})])
    with pytest.raises(ValueError, match="compare needs at least one result"):
        compare_markdown([])
    with pytest.raises(ValueError, match="only .png is supported"):
        compare_plot([result("a", {"x": 1.0})], tmp_path / "c.svg")
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  oops", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json:2: not valid JSON"):
        EvalResult.load(bad)
    bad.write_text('{"kind": "sts"}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json: not a bivec result file"):
        EvalResult.load(bad)
    bad.write_text('{"kind": "sts", "model": "m", "main_metric": "f1", "scores": {"a": {"acc": 1}}}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json: row 'a' has no 'f1' score"):
        EvalResult.load(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EvalResult.load(tmp_path / "none.json")
