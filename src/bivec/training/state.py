"""Training checkpoints that load without running code: tensors in safetensors, the rest in JSON.

A checkpoint is ``OUTPUT/checkpoints/step-N/`` holding ``tensors.safetensors`` (the trainable
parameters and the optimizer's tensors) and ``state.json`` (the step, the loss history, the
optimizer's hyper-parameters, the learning-rate schedule and the run's settings). An output folder
is something people share and download; a pickle in it (``torch.load`` of a ``state.pt``) would run
whatever its author put there, so none is written or read. Saving and loading sit side by side
here so that the two never drift apart.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bivec.textio import atomic_write

CHECKPOINTS = "checkpoints"
TENSORS = "tensors.safetensors"
STATE = "state.json"
_PARAM, _OPTIM = "param.", "optimizer."
_PREFIX, _TMP = "step-", ".tmp"
# Settings that change neither the data, the schedule nor the numbers of a run: a resume may change them.
_FREE_SETTINGS = {"output_dir", "resume", "progress", "save_steps", "gradient_checkpointing", "allow_pickle",
                  "trust_remote_code", "merge"}


def run_settings(config, processes: int) -> dict[str, Any]:
    """What a resumed run must share with the run it continues: every setting of ``config`` that
    affects the result, with each data file replaced by its path and a hash of its contents."""
    settings = {k: v for k, v in asdict(config).items() if k not in _FREE_SETTINGS}
    settings["data"] = [_data_fingerprint(Path(p)) if isinstance(p, (str, Path)) else repr(p) for p in config.data]
    settings["processes"] = processes
    return json.loads(json.dumps(settings, default=str))


def _data_fingerprint(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return f"{path} (sha256 {digest.hexdigest()[:16]})"


def _step_of(folder: Path) -> int | None:
    number = folder.name.removeprefix(_PREFIX)
    return int(number) if folder.name.startswith(_PREFIX) and number.isdigit() else None


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in ``output_dir``, after deleting what a run killed while
    saving left behind (``step-N.tmp`` folders)."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    for partial in root.glob(f"{_PREFIX}*{_TMP}"):
        shutil.rmtree(partial, ignore_errors=True)
    found = [(step, p) for p in root.iterdir() if p.is_dir() and (step := _step_of(p)) is not None]
    return max(found)[1] if found else None


def save_checkpoint(output_dir: str | Path, step: int, *, params: dict[str, torch.Tensor], optimizer: dict,
                    scheduler: dict, progress: dict[str, Any], settings: dict[str, Any]) -> Path:
    """Write checkpoint ``step`` (into a ``.tmp`` folder renamed last, so a kill never leaves one
    that looks whole) and delete the older ones. ``optimizer`` and ``scheduler`` are state dicts;
    ``progress`` holds the loop's counters and history."""
    root = Path(output_dir) / CHECKPOINTS
    target = root / f"{_PREFIX}{step}"
    tmp = root / f"{target.name}{_TMP}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {_PARAM + name: value.detach().contiguous() for name, value in params.items()}
    optimizer_values: dict[str, dict[str, Any]] = {}
    for index, values in optimizer["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIM}{index}.{key}"] = value.detach().contiguous()
            else:
                optimizer_values.setdefault(str(index), {})[key] = value
    state = {"format": 1, "step": step, "progress": progress, "settings": settings, "scheduler": scheduler,
             "optimizer": {"param_groups": optimizer["param_groups"], "values": optimizer_values}}
    text = json.dumps(state, indent=1)
    save_file(tensors, tmp / TENSORS)
    atomic_write(tmp / STATE, lambda path: Path(path).write_text(text, encoding="utf-8"))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    for old in root.iterdir():
        if old != target and old.is_dir() and old.name.startswith(_PREFIX):
            shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(folder: str | Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing one whose run had other
    ``settings`` (naming the first that differs) and one in a format that could run code.
    Returns ``params``, ``optimizer`` and ``scheduler`` (state dicts), ``step`` and ``progress``."""
    folder = Path(folder)
    if not (folder / STATE).is_file() or not (folder / TENSORS).is_file():
        legacy = " (a pickle, state.pt, which bivec no longer loads: unpickling can run code)" \
            if (folder / "state.pt").exists() else ""
        raise ValueError(f"checkpoint {folder} has no {STATE} and {TENSORS}{legacy}; delete it to start over")
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
        tensors = load_file(folder / TENSORS)
    except (ValueError, OSError) as exc:
        raise ValueError(f"checkpoint {folder} is unreadable ({exc}); delete it to start over") from exc
    saved = state.get("settings", {})
    for key in sorted((set(saved) | set(settings)) - _FREE_SETTINGS):
        if saved.get(key) != settings.get(key):
            raise ValueError(
                f"--resume: the run in {folder.parent.parent} was made with {key}={saved.get(key)!r}, this one "
                f"has {key}={settings.get(key)!r}; resume with the same settings, or use a new output folder"
            )
    params = {k.removeprefix(_PARAM): v for k, v in tensors.items() if k.startswith(_PARAM)}
    optimizer_state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(_OPTIM):
            index, key = name.removeprefix(_OPTIM).split(".", 1)
            optimizer_state.setdefault(int(index), {})[key] = value
    for index, values in state["optimizer"]["values"].items():
        optimizer_state.setdefault(int(index), {}).update(values)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in state["optimizer"]["param_groups"]]
    return {"params": params, "optimizer": {"state": optimizer_state, "param_groups": groups},
            "scheduler": state["scheduler"], "step": state["step"], "progress": state["progress"]}
