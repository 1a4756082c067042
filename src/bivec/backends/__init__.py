"""Inference engines for the encoder's forward pass: torch, or the bidirectional model exported to
ONNX and run by ONNX Runtime or OpenVINO, whose graph optimisers fuse what torch runs op by op
(norms, rotary embeddings, attention, activations).

Tokenising, batching and pooling stay bivec's; a backend only maps ``(input_ids, attention_mask)``
to final hidden states. The model (adapters merged, float32) is exported once per model into
bivec's cache, keyed by the hash of its weights. Before first use a backend's token states are
compared with torch float32 on the calibration set shipped with bivec: an exact backend must keep
``1 - cos <= 1e-5`` for every token of every text; an int8 backend must pass the accuracy rule of
``dtype="auto"`` (:func:`bivec.precision.judge`). ``backend="auto"`` takes the fastest backend that
passes, measured once per machine and model and cached like the dtype choice. A backend that is
not installed or fails its check is reported and torch is used.

Example:
    >>> encoder = Encoder.from_pretrained(backend="auto")  # doctest: +SKIP
    >>> print(encoder.backend_choice.describe())  # doctest: +SKIP
    onnx (onnx kept; worst 1-cos 2.1e-07, 1.31x torch speed; openvino ...)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from bivec import precision

if TYPE_CHECKING:
    from bivec.encoder import Encoder

BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "auto")
EXACT_BACKENDS = ("onnx", "openvino")
MAX_TOKEN_DISTANCE = 1e-5
BACKEND_HELP = ("torch; onnx or openvino (the model exported to ONNX once, run by ONNX Runtime or OpenVINO); "
                "onnx-int8 (ONNX Runtime, int8 weights); auto: the fastest that passes bivec's check against "
                "torch float32 on this machine (measured once per model).")
_CACHE_FILE = "backends.json"

Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class BackendUnavailable(RuntimeError):
    """A backend's package is not installed, or its engine could not build the model."""


@dataclass
class BackendTrial:
    """How one backend compared with torch float32 on the calibration set."""

    backend: str
    passed: bool
    worst_distance: float
    seconds: float
    torch_seconds: float
    reason: str = ""


@dataclass
class BackendChoice:
    """The backend an encoder runs on, with the trials behind it."""

    backend: str
    machine: str
    trials: list[BackendTrial] = field(default_factory=list)
    cached: bool = False
    weights_hash: str = ""  # of the exported model: a cached verdict finds its export without reading the weights

    def describe(self) -> str:
        parts = []
        for t in self.trials:
            verdict = "kept" if t.backend == self.backend else ("rejected: " + t.reason if not t.passed else "passed, slower")
            speed = f", {t.torch_seconds / t.seconds:.2f}x torch speed" if t.seconds > 0 else ""
            parts.append(f"{t.backend} {verdict}; worst token 1-cos {t.worst_distance:.1e}{speed}")
        return f"{self.backend} ({'; '.join(parts) or 'no other backend tried'}){' [cached]' if self.cached else ''}"


def check_backend_name(name: str) -> str:
    """``name`` lower-cased, or a ValueError listing the backends."""
    if name.lower() not in BACKENDS:
        raise ValueError(f"backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return name.lower()


def build_forward(name: str, encoder: Encoder, digest: str | None = None) -> Forward:
    """The exported model of ``encoder`` (float32, on the CPU; ``digest``: its weights' hash, if
    known) run by backend ``name``; raises :class:`BackendUnavailable` when the engine is missing or
    cannot run the model."""
    from bivec.backends import onnx

    if encoder.device.type != "cpu":
        raise BackendUnavailable(f"backend {name!r} runs on the CPU; the model is on {encoder.device}")
    path = onnx.exported_model(encoder.model, int8=name == "onnx-int8", digest=digest)
    if name == "openvino":
        from bivec.backends.openvino import openvino_forward

        return openvino_forward(path)
    return onnx.onnxruntime_forward(path)


def token_states(encoder: Encoder, texts: list[str], forward: Forward | None) -> tuple[list[np.ndarray], float]:
    """Each text's token states through ``forward`` (None: torch), and the seconds the second pass
    over all texts took (the first pays for kernel selection)."""
    previous = encoder.backend_forward
    encoder.backend_forward = forward
    try:
        tokenized = encoder.tokenize(texts, truncate=True)
        encoder.token_states(tokenized[:8], show_progress=False)
        start = time.perf_counter()
        states = encoder.token_states(tokenized, show_progress=False)
        return states, time.perf_counter() - start
    finally:
        encoder.backend_forward = previous


def worst_token_distance(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """The largest ``1 - cos`` between matching token states of any text."""
    worst = 0.0
    for a, b in zip(reference, candidate):
        cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
        worst = max(worst, float(np.max(1.0 - cos)))
    return worst


def judge_states(reference: list[np.ndarray], candidate: list[np.ndarray], pairs) -> dict:
    """dtype="auto"'s accuracy rule on mean-pooled, unit-length vectors of the token states."""
    def pooled(states: list[np.ndarray]) -> np.ndarray:
        vectors = np.stack([s.mean(axis=0) for s in states])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return precision.judge(pooled(reference), pooled(candidate), pairs)


def trial(encoder: Encoder, name: str, texts: list[str], pairs, reference: list[np.ndarray],
          torch_seconds: float, digest: str | None = None) -> tuple[BackendTrial, Forward | None]:
    """Build backend ``name`` and check it; the trial and the forward (None when it failed)."""
    try:
        forward = build_forward(name, encoder, digest)
        states, seconds = token_states(encoder, texts, forward)
    except BackendUnavailable as exc:
        return BackendTrial(name, False, float("nan"), 0.0, torch_seconds, str(exc)), None
    distance = worst_token_distance(reference, states)
    if name in EXACT_BACKENDS:
        passed = distance <= MAX_TOKEN_DISTANCE
        reason = "" if passed else f"a token state is {distance:.1e} from torch float32 (1 - cos), above {MAX_TOKEN_DISTANCE:.0e}"
    else:
        verdict = judge_states(reference, states, pairs)
        passed, reason = verdict["passed"], verdict["reason"]
    return BackendTrial(name, passed, distance, seconds, torch_seconds, reason), forward if passed else None


def attach(encoder: Encoder, name: str, key: str) -> BackendChoice:
    """Put ``encoder`` on backend ``name`` (or, for ``auto``, the fastest that passes), checked once
    per ``key`` (machine, model, settings); torch stays when the backend fails, with a warning."""
    cached = _load(key)
    if cached is not None:
        chosen = cached.backend
        if chosen == "torch" and name != "auto":
            print(f"bivec: backend {name} failed its check on this machine earlier; using torch "
                  f"({cached.describe()})", file=sys.stderr)
        if chosen != "torch":
            try:
                encoder.backend_forward = build_forward(chosen, encoder, cached.weights_hash or None)
            except BackendUnavailable as exc:
                print(f"bivec: backend {chosen} unavailable ({exc}); using torch", file=sys.stderr)
                cached.backend = "torch"
        encoder.backend_choice = cached
        return cached
    names = [n for n in BACKENDS if n not in ("torch", "auto")] if name == "auto" else [name]
    print(f"bivec: checking backend {', '.join(names)} against torch float32 (once per model)", file=sys.stderr)
    texts, pairs = precision.calibration_set()
    reference, torch_seconds = token_states(encoder, texts, None)
    from bivec.backends.onnx import weights_hash

    choice = BackendChoice("torch", precision.machine_description(encoder.device), weights_hash=weights_hash(encoder.model))
    best: tuple[float, Forward] | None = None
    for candidate in names:
        result, forward = trial(encoder, candidate, texts, pairs, reference, torch_seconds, choice.weights_hash)
        choice.trials.append(result)
        faster = name != "auto" or result.seconds < torch_seconds
        if forward is not None and faster and (best is None or result.seconds < best[0]):
            best, choice.backend = (result.seconds, forward), candidate
    if best is not None:
        encoder.backend_forward = best[1]
    else:
        failed = "; ".join(f"{t.backend}: {t.reason}" for t in choice.trials if not t.passed)
        print(f"bivec: using torch ({failed or 'no backend was faster'})", file=sys.stderr)
    _store(key, choice)
    encoder.backend_choice = choice
    return choice


def _load(key: str) -> BackendChoice | None:
    entry = precision.read_verdict(_CACHE_FILE, key)
    if entry is None:
        return None
    return BackendChoice(entry["backend"], entry["machine"], [BackendTrial(**t) for t in entry["trials"]], cached=True,
                         weights_hash=entry.get("weights_hash", ""))


def _store(key: str, choice: BackendChoice) -> None:
    precision.write_verdict(_CACHE_FILE, key, {k: v for k, v in asdict(choice).items() if k != "cached"})
