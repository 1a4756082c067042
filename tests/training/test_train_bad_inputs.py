"""Training's bad-input matrix: hostile checkpoints, changed settings on resume, bad rows and files.
Each case names what it guards against; every error must name the file, line or setting."""

import os
import pickle
import shutil

import pytest
import torch

from bivec.models.safety import UnsafeCheckpointError
from bivec.training import MNTPConfig, SimCSEConfig, SupervisedConfig, train_mntp, train_simcse, train_supervised
from bivec.training.data import read_contrastive, read_sentences
from bivec.training.state import CHECKPOINTS, latest_checkpoint


class _Payload:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _config(model, data, out, **overrides):
    settings = dict(data=[data], model=model, output_dir=out, steps=4, batch_size=4, max_length=8, save_steps=2,
                    progress=False, precision="fp32")
    return MNTPConfig(**(settings | overrides))


class Killed(Exception):
    pass


def _killed_at(step):
    def hook(done, loss):
        if done == step:
            raise Killed

    return hook


def _interrupted_run(model, data, out, **overrides):
    with pytest.raises(Killed):
        train_mntp(_config(model, data, out, **overrides), on_step=_killed_at(3))
    return latest_checkpoint(out)


def test_resume_never_unpickles_a_state_file(tmp_path, tiny_lm_dir, text_file):
    out, marker = tmp_path / "run", tmp_path / "code-ran"
    planted = out / CHECKPOINTS / "step-2"
    planted.mkdir(parents=True)
    torch.save({"params": _Payload(marker)}, planted / "state.pt")
    with pytest.raises(ValueError, match=r"step-2 has no state.json and tensors.safetensors \(a pickle, state.pt, "
                                         r"which bivec no longer loads: unpickling can run code\)"):
        train_mntp(_config(tiny_lm_dir, text_file, out, resume=True))
    assert not marker.exists()


def test_checkpoints_hold_no_pickle(tmp_path, tiny_lm_dir, text_file):
    checkpoint = _interrupted_run(tiny_lm_dir, text_file, tmp_path / "run")
    assert sorted(p.name for p in checkpoint.iterdir()) == ["state.json", "tensors.safetensors"]


def test_training_refuses_a_pickle_only_base_model_unless_allowed(tmp_path, tiny_lm_dir, text_file):
    base, marker = tmp_path / "pickled-base", tmp_path / "code-ran"
    shutil.copytree(tiny_lm_dir, base)
    (base / "model.safetensors").unlink()
    with open(base / "pytorch_model.bin", "wb") as handle:
        pickle.dump(_Payload(marker), handle)
    with pytest.raises(UnsafeCheckpointError, match=r"pickled-base' has weights only in a pickle-based format "
                                                    r"\(pytorch_model.bin\).*allow_pickle=True \(--allow-pickle\)"):
        train_mntp(_config(base, text_file, tmp_path / "out"))
    with pytest.raises(UnsafeCheckpointError):
        train_simcse(SimCSEConfig(data=[text_file], model=base, output_dir=tmp_path / "out2", progress=False))
    assert not marker.exists()


def test_resume_skips_and_removes_a_checkpoint_killed_while_saving(tmp_path, tiny_lm_dir, text_file):
    out = tmp_path / "run"
    checkpoint = _interrupted_run(tiny_lm_dir, text_file, out)
    half_written = out / CHECKPOINTS / "step-6.tmp"
    half_written.mkdir()
    (half_written / "tensors.safetensors").write_bytes(b"truncated")
    log = train_mntp(_config(tiny_lm_dir, text_file, out, resume=True))
    assert checkpoint.name == "step-2" and [h["step"] for h in log["history"]] == [1, 2, 3, 4]
    assert not half_written.exists()


@pytest.mark.parametrize("setting,value,message", [
    ("seed", 7, "was made with seed=42, this one has seed=7"),
    ("batch_size", 2, "was made with batch_size=4, this one has batch_size=2"),
    ("learning_rate", 1e-3, "was made with learning_rate=5e-05, this one has learning_rate=0.001"),
    ("mask_ratio", 0.5, "was made with mask_ratio=0.2, this one has mask_ratio=0.5"),
])
def test_resume_refuses_changed_settings_naming_them(tmp_path, tiny_lm_dir, text_file, setting, value, message):
    out = tmp_path / "run"
    _interrupted_run(tiny_lm_dir, text_file, out)
    with pytest.raises(ValueError, match=rf"--resume: the run in .*run {message}; resume with the same settings"):
        train_mntp(_config(tiny_lm_dir, text_file, out, resume=True, **{setting: value}))


def test_resume_refuses_changed_data(tmp_path, tiny_lm_dir, text_file):
    data = tmp_path / "data.txt"
    shutil.copy(text_file, data)
    out = tmp_path / "run"
    _interrupted_run(tiny_lm_dir, data, out)
    data.write_text(data.read_text() + "a new line of text .\n")
    with pytest.raises(ValueError, match=r"was made with data=\['.*data.txt \(sha256 [0-9a-f]{16}\)'\], this one has"):
        train_mntp(_config(tiny_lm_dir, data, out, resume=True))


def test_resume_accepts_the_settings_that_do_not_change_results(tmp_path, tiny_lm_dir, text_file):
    out = tmp_path / "run"
    _interrupted_run(tiny_lm_dir, text_file, out)
    log = train_mntp(_config(tiny_lm_dir, text_file, out, resume=True, save_steps=1, gradient_checkpointing=True))
    assert [h["step"] for h in log["history"]] == [1, 2, 3, 4]


def test_output_dir_that_is_a_file_fails_before_training(tmp_path, tiny_lm_dir, text_file):
    taken = tmp_path / "taken"
    taken.write_text("")
    with pytest.raises(ValueError, match=r"output_dir '.*taken' is a file; expected a folder"):
        train_mntp(_config(tiny_lm_dir, text_file, taken))


@pytest.mark.parametrize("line,message", [
    ('{"query": "q", "positive": "p", "negative": ["n"]}', r"rows.jsonl:1: unknown field 'negative' \(did you mean "
                                                           r"'negatives'\?\); the fields are query, positive, negatives"),
    ('{"query": "q", "positve": "p"}', r"rows.jsonl:1: unknown field 'positve' \(did you mean 'positive'\?\)"),
    ('{"query": "q", "positive": "p", "label": 1}', r"rows.jsonl:1: unknown field 'label'; the fields are"),
])
def test_supervised_rows_with_unknown_fields_are_errors(tmp_path, line, message):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        read_contrastive([rows])


def test_csv_rows_keep_negative_columns_and_refuse_others(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("query,positive,negative1,negative2\nq,p,n1,\n")
    assert read_contrastive([rows])[0].negatives == ("n1",)
    rows.write_text("query,positive,score\nq,p,1\n")
    with pytest.raises(ValueError, match=r"rows.csv:2: unknown field 'score'"):
        read_contrastive([rows])
    rows.write_text("query,positive\nq,p,extra\n")
    with pytest.raises(ValueError, match=r"rows.csv:2: more values than the header has columns"):
        read_contrastive([rows])


@pytest.mark.parametrize("reader,name", [(read_sentences, "s.txt"), (read_contrastive, "r.jsonl")])
def test_files_that_are_not_utf8_name_the_file_and_line(tmp_path, reader, name):
    path = tmp_path / name
    path.write_bytes(b"fine\n" + b'{"query": "caf\xe9"}\n' if name.endswith("jsonl") else b"fine\ncaf\xe9\n")
    with pytest.raises(ValueError, match=rf"{name} line 2: not valid UTF-8 \(byte 0xe9\); save the file as UTF-8"):
        reader([path])


def test_supervised_cli_names_the_unknown_field(tmp_path, tiny_lm_dir):
    from typer.testing import CliRunner

    from bivec.cli import app

    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"query": "a man plays", "positive": "music", "negative": ["a dog"]}\n')
    result = CliRunner().invoke(app, ["train", "supervised", str(rows), "-m", str(tiny_lm_dir), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "rows.jsonl:1: unknown field 'negative' (did you mean 'negatives'?)" in result.output


def test_supervised_trains_with_its_hard_negatives(tmp_path, tiny_lm_dir):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"query": "a man plays", "positive": "music", "negatives": ["a dog"]}\n'
                    '{"query": "the cat", "positive": "a cat sits", "negatives": ["the market"]}\n')
    log = train_supervised(SupervisedConfig(data=[rows], model=tiny_lm_dir, output_dir=tmp_path / "o", steps=1,
                                            batch_size=2, warmup_steps=0, progress=False, precision="fp32"))
    # Two queries, two positives and two negatives went through the model.
    assert log["tokens"] == sum(len(t.split()) + 1 for t in ["a man plays", "music", "a dog", "the cat",
                                                              "a cat sits", "the market"])
    assert os.path.isfile(tmp_path / "o" / "adapter_model.safetensors")


def test_every_train_command_has_the_opt_in_the_refusal_names():
    from typer.testing import CliRunner

    from bivec.cli import app

    for stage in ("mntp", "simcse", "supervised", "llm2vec"):
        result = CliRunner().invoke(app, ["train", stage, "--help"], env={"COLUMNS": "200"})
        assert "--allow-pickle" in result.output and "--trust-remote-code" in result.output, stage
