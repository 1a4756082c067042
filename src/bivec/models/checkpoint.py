"""The LLM2Vec checkpoint layout: base weights, stacked LoRA adapters and encoder settings.

Published LLM2Vec models come as a directory with the base model's ``config.json``, tokenizer and
an MNTP LoRA adapter whose ``adapter_config.json`` names the base weights
(``base_model_name_or_path``), plus optional second-stage adapters (SimCSE, supervised) applied on
top. Encoder settings come from ``llm2vec_config.json`` (the reference library's file) or
``bivec_config.json``, bivec's own, which may also name a base model and a stack of adapters
(relative to its folder, ``"."`` for the folder itself): such a folder loads as the whole stack,
whatever command loads it. :func:`write_bivec_config` writes it, :func:`read_settings` and
:func:`resolve_checkpoint` read it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import AutoModel, PreTrainedModel

from bivec.models.adapters import apply_adapters, resolve_adapter
from bivec.models.default import DEFAULT_BASE, default_model_dir
from bivec.models.loading import resolve_dtype, resolve_local_dir, resolve_model_path
from bivec.models.safety import check_weights, weight_files
from bivec.pooling import check_pooling_mode
from bivec.textio import json_object

LLM2VEC_CONFIG = "llm2vec_config.json"
BIVEC_CONFIG = "bivec_config.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_BIVEC_KEYS = ("pooling", "max_length", "bidirectional", "prompts", "echo", "mask_token", "base", "adapters")


@dataclass(frozen=True)
class EncoderSettings:
    """Pooling, length, attention and named prompts recorded with a checkpoint; ``None`` means not
    recorded."""

    pooling: str | None = None
    max_length: int | None = None
    bidirectional: bool | None = None
    prompts: dict[str, str] | None = None
    """Named prompts (sentence-transformers' ``prompts``): ``{"query": "...", "document": ""}``."""
    echo: bool | None = None
    """Echo embeddings: the model reads each text twice and pools the second copy, whose every
    token has seen the whole text even under causal attention (Springer et al., 2024)."""

    def override(self, other: EncoderSettings) -> EncoderSettings:
        """These settings with every value that ``other`` records taking precedence."""
        return replace(self, **{k: v for k, v in vars(other).items() if v is not None})


DEFAULT_SETTINGS = EncoderSettings(pooling="mean", max_length=512, bidirectional=True, echo=False)
"""What an encoder uses where neither the checkpoint nor the caller says: the reference's defaults."""


class WeightFile(NamedTuple):
    """One weight file of a checkpoint's stack: its name there, its kind ("model" or "adapter"), its path."""

    name: str
    kind: str
    path: Path


@dataclass(frozen=True)
class Checkpoint:
    """Where each part of a checkpoint lives, resolved to local directories."""

    base: Path
    tokenizer: Path
    adapters: tuple[Path, ...] = ()
    settings: EncoderSettings = field(default_factory=EncoderSettings)

    def weight_files(self) -> list[WeightFile]:
        """Each weight file of the stack, named by its place in it so that a copy elsewhere has the same
        names: ``base: model.safetensors``, ``adapter 1: adapter_model.safetensors``, ..."""
        parts = [("base", self.base, "model"), *((f"adapter {i}", a, "adapter") for i, a in enumerate(self.adapters, 1))]
        return [WeightFile(f"{place}: {path.name}", kind, path)
                for place, directory, kind in parts for files in weight_files(directory, kind) for path in files]


def _read_json(path: Path) -> dict[str, Any]:
    return json_object(path.read_text(encoding="utf-8"), str(path))


def _positive_int(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{path}: {key} must be a positive integer, got {value!r}")
    return value


def _pooling(path: Path, key: str, value: Any) -> str:
    try:
        return check_pooling_mode(value)
    except ValueError as exc:
        raise ValueError(f"{path}: {key}: {exc}") from exc


def read_settings(directory: Path) -> EncoderSettings:
    """The encoder settings recorded in ``directory``: ``llm2vec_config.json`` (keys
    ``pooling_mode``, ``max_length``, ``skip_instruction``; ``doc_max_length`` is not used), then
    ``bivec_config.json`` (``pooling``, ``max_length``, ``bidirectional``, ``prompts``, ``echo``), which
    takes precedence."""
    settings = EncoderSettings()
    if (path := directory / LLM2VEC_CONFIG).is_file():
        data = _read_json(path)
        if data.get("skip_instruction", True) is not True:
            raise ValueError(f"{path}: skip_instruction={data['skip_instruction']!r} is not supported: "
                             "bivec always leaves instructions out of pooling")
        settings = EncoderSettings(
            pooling=_pooling(path, "pooling_mode", data["pooling_mode"]) if "pooling_mode" in data else None,
            max_length=_positive_int(path, "max_length", data["max_length"]) if "max_length" in data else None,
        )
    if (path := directory / BIVEC_CONFIG).is_file():
        data = _bivec_config(directory)
        settings = settings.override(EncoderSettings(
            pooling=_pooling(path, "pooling", data["pooling"]) if "pooling" in data else None,
            max_length=_positive_int(path, "max_length", data["max_length"]) if "max_length" in data else None,
            bidirectional=data.get("bidirectional"),
            prompts=data.get("prompts"),
            echo=data.get("echo"),
        ))
    return settings


def _bivec_config(directory: Path) -> dict[str, Any]:
    path = directory / BIVEC_CONFIG
    data = _read_json(path)
    unknown = sorted(set(data) - set(_BIVEC_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown keys {', '.join(unknown)}; expected {', '.join(_BIVEC_KEYS)}")
    if "adapters" in data and "base" not in data:
        raise ValueError(f"{path}: adapters are listed but no base model to apply them to (key base)")
    prompts = data.get("prompts", {})
    if not isinstance(prompts, dict) or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in prompts.items()):
        raise ValueError(f"{path}: prompts must map names to prompt strings, got {prompts!r}")
    for key in ("bidirectional", "echo"):
        if key in data and not isinstance(data[key], bool):
            raise ValueError(f"{path}: {key} must be true or false, got {data[key]!r}")
    for key in ("base", "mask_token"):
        if key in data and (not isinstance(data[key], str) or not data[key]):
            raise ValueError(f"{path}: {key} must be a non-empty string, got {data[key]!r}")
    adapters = data.get("adapters", [])
    if not isinstance(adapters, list) or not all(isinstance(a, str) and a for a in adapters):
        raise ValueError(f"{path}: adapters must be a list of folder names, got {adapters!r}")
    return data


def write_bivec_config(directory: str | Path, settings: EncoderSettings, *, base: Path | None = None,
                       adapters: Sequence[Path] = (), mask_token: str | None = None) -> Path:
    """Write ``bivec_config.json``: the encoder settings and, with ``base``, the model stack the
    folder stands for (``adapters`` in order, stored relative to ``directory`` so that the folders
    can move together; the default base is stored by name, not by its cache path)."""
    import os

    directory = Path(directory)
    data: dict[str, Any] = {k: v for k, v in vars(settings).items() if v is not None}
    if mask_token is not None:
        data["mask_token"] = mask_token
    if base is not None:
        data["base"] = DEFAULT_BASE if base.resolve() == default_model_dir().resolve() else str(base.resolve())
        data["adapters"] = [os.path.relpath(Path(a).resolve(), directory.resolve()) for a in adapters]
    path = directory / BIVEC_CONFIG
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def _stack(directory: Path, *, allow_pickle: bool) -> tuple[Path, list[Path]] | None:
    """The base and adapters that ``directory``'s ``bivec_config.json`` names, resolved; None
    when it names none."""
    if not (directory / BIVEC_CONFIG).is_file():
        return None
    data = _bivec_config(directory)
    if "base" not in data:
        return None
    where = directory / BIVEC_CONFIG
    name = data["base"]
    relative = directory / name
    try:
        base = resolve_model_path(relative if relative.is_dir() else name)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{where} names base model {name!r}, which cannot be found: {exc}") from exc
    if not check_weights(base, "model", allow_pickle=allow_pickle):
        raise FileNotFoundError(f"{where} names base model {name!r} ({base}), which has no weights")
    adapters = []
    for entry in data.get("adapters", []):
        folder = (directory / entry).resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"{where} lists adapter {entry!r}, but {folder} is not a folder (was the stack "
                                    "moved without it?)")
        adapters.append(resolve_adapter(folder, allow_pickle=allow_pickle))
    return base, adapters


def _adapter_base(directory: Path, *, allow_pickle: bool) -> Path:
    """The base model named by the adapter in ``directory``, found locally."""
    config = _read_json(directory / "adapter_config.json")
    name = config.get("base_model_name_or_path")
    if not name:
        raise ValueError(f"{directory / 'adapter_config.json'}: base_model_name_or_path is not set, so the base "
                         "weights are unknown; load the base directory and pass this one in adapters=[...]")
    try:
        base = resolve_local_dir(name, ("config.json",), "base model")
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{directory / 'adapter_config.json'} names base model {name!r} (base_model_name_or_path), which is "
            "neither a local directory nor in the local Hugging Face cache (bivec never downloads models). Put "
            "the base model there, or load the base directory and pass this one in adapters=[...]"
        ) from exc
    if not check_weights(base, "model", allow_pickle=allow_pickle):
        raise FileNotFoundError(f"base model {name!r} ({base}), named by {directory}, has no weights")
    return base


def resolve_checkpoint(
    path: str | Path | None, adapters: Sequence[str | Path] = (), *, allow_pickle: bool = False
) -> Checkpoint:
    """Resolve a model directory and extra adapters to local directories, without loading weights.

    ``path`` is a model directory with weights, or a directory whose ``adapter_config.json`` names
    its base (the published LLM2Vec ``-mntp`` layout: that adapter is applied first), or a hub name
    of either found in the local Hugging Face cache; ``None`` is the embedded default model.
    ``adapters`` are applied after it, in order. Settings from later directories win.

    Example:
        >>> resolve_checkpoint("McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp",
        ...                    ["McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-unsup-simcse"])  # doctest: +SKIP
    """
    if isinstance(adapters, (str, Path)):
        raise TypeError("adapters must be a list of adapter directories, not a single path")
    root = resolve_model_path(path)
    has_weights = check_weights(root, "model", allow_pickle=allow_pickle)
    has_adapter = (root / "adapter_config.json").is_file()
    stacked = _stack(root, allow_pickle=allow_pickle)
    if stacked is not None and has_weights:
        raise ValueError(f"model path {str(path)!r} holds full weights and a {BIVEC_CONFIG} that names a base model; "
                         "keep one of the two")
    if stacked is not None:
        base, leading = stacked
    elif has_weights and has_adapter:
        raise ValueError(
            f"model path {str(path)!r} holds both full weights and a LoRA adapter (adapter_config.json), so it "
            "is unclear whether the weights already include the adapter; move the adapter to its own directory "
            "and pass it in adapters=[...]"
        )
    elif has_weights:
        base, leading = root, []
    elif has_adapter:
        base, leading = _adapter_base(root, allow_pickle=allow_pickle), [resolve_adapter(root, allow_pickle=allow_pickle)]
    else:
        raise FileNotFoundError(
            f"model path {str(path)!r} has neither weights (model.safetensors) nor a LoRA adapter (adapter_config.json)"
        )
    extra = [resolve_adapter(a, allow_pickle=allow_pickle) for a in adapters]
    settings = EncoderSettings()
    for directory in dict.fromkeys([base, *leading, root, *extra]):
        settings = settings.override(read_settings(directory))
    # The newest tokenizer along the stack: MNTP may have added a mask token.
    tokenizer = next(d for d in (root, *reversed(leading), base)
                     if d == base or any((d / name).is_file() for name in _TOKENIZER_FILES))
    stack = tuple(leading + extra)
    return Checkpoint(base=base, tokenizer=tokenizer, adapters=stack, settings=settings)


def load_model(
    checkpoint: Checkpoint,
    *,
    device: torch.device,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = "sdpa",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    model_class: type = AutoModel,
) -> PreTrainedModel:
    """Load the base weights (safetensors only unless ``allow_pickle``; remote code only with
    ``trust_remote_code``) on ``device`` and merge the checkpoint's adapters in order.
    ``model_class`` is the transformers auto class to load with (``AutoModelForCausalLM`` keeps
    the language-model head, which MNTP trains through)."""
    model = model_class.from_pretrained(
        checkpoint.base,
        dtype=resolve_dtype(dtype, device),
        attn_implementation=attn_implementation,
        use_safetensors=None if allow_pickle else True,
        trust_remote_code=trust_remote_code,
    )
    model.to(device)
    return apply_adapters(model, checkpoint.adapters, allow_pickle=allow_pickle).eval()


def weights_fingerprint(checkpoint: Checkpoint) -> dict[str, str]:
    """What tells one version of a checkpoint's weights from another, per weight file, named as
    :meth:`Checkpoint.weight_files` names it so that a copy elsewhere matches: an adapter file's
    SHA-256 (adapters are small, and they are what gets trained again in place), and for a base file
    over 1 MiB a SHA-256 of its size and of 16 slices of 64 KiB spread through it, header included
    (hashing a 7B model's gigabytes would cost more than many runs; a model trained again changes
    every slice).

    Example:
        >>> weights_fingerprint(resolve_checkpoint("path/to/model"))  # doctest: +SKIP
        {'base: model.safetensors': 'sha256 of 16 slices 0b6f...'}
    """
    return {file.name: _file_digest(file.path, whole=file.kind == "adapter") for file in checkpoint.weight_files()}


def _file_digest(path: Path, *, whole: bool, slices: int = 16, slice_bytes: int = 1 << 16) -> str:
    size = path.stat().st_size
    with path.open("rb") as f:
        # A file no larger than the slices is read once, whole, rather than slice by overlapping slice.
        if whole or size <= slices * slice_bytes:
            return "sha256 " + hashlib.file_digest(f, "sha256").hexdigest()
        digest = hashlib.sha256(str(size).encode())
        for i in range(slices):
            f.seek(i * (size - slice_bytes) // (slices - 1))
            digest.update(f.read(slice_bytes))
    return f"sha256 of {slices} slices " + digest.hexdigest()
