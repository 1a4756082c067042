"""Precision as a measured choice.

``Encoder.from_pretrained(dtype="auto")`` (the default) encodes a calibration set shipped with
bivec in float32 and in each faster candidate this machine runs natively (bfloat16 on CPUs with
AVX512-BF16 or AMX, and int8 on every CPU; bfloat16 and float16 on CUDA), and keeps the fastest
candidate whose embeddings stay close to float32: per-text cosine >= 0.99 for at least 99% of the
texts, and STS Spearman on the calibration pairs within 0.3 points of float32's. Otherwise it stays
in float32. The verdict is stored per machine, library versions and model, so the check runs once.

int8 (:mod:`bivec.int8`: int8 weights per channel, activations per token, after SmoothQuant's
scale migration) is held to the same rule by keeping the first layers of the model in float32:
the check finds, by bisection, the fewest leading layers that must stay float32 for the rule to
hold (:func:`int8_float_layers`), and that number is part of the verdict.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from bivec.encoder import Encoder
    from bivec.int8 import Int8Plan
    from bivec.models.checkpoint import Checkpoint

MIN_COSINE = 0.99
MIN_SHARE = 0.99
MAX_SPEARMAN_DROP = 0.3
# int8 is fitted (SmoothQuant's maxima) and its float32 layer count chosen on the calibration texts
# themselves, so it is held to a closer cosine there: on held-out STS sentences the layer count
# that just passed at 0.99 (8 of 30 on the trained default) left 95.6% of texts at >= 0.99, the one
# that passes at 0.995 (11) left 99.8%.
INT8_MIN_COSINE = 0.995
# auto's int8 search encodes the calibration set about five times; past this many seconds of
# float32 calibration (a multi-billion-parameter model on a few cores) it waits for dtype="int8".
INT8_SEARCH_MAX_FLOAT32_SECONDS = 20.0
_CACHE_FILE = "precision.json"
DTYPE_HELP = ("auto: the fastest dtype whose embeddings pass bivec's accuracy check against float32 on "
              "this machine (checked once per model); or float32, bfloat16, float16, int8 (CPU; checked too).")
COMPILE_HELP = ("torch.compile the model's layers at load (seconds, once per process): faster encoding for "
                "long jobs; needs a C++ compiler on the CPU.")


def bf16_supported() -> bool:
    """bf16 on CUDA when the GPU has it; on the CPU when it has AVX512-BF16 or AMX (elsewhere
    bf16 matmuls are emulated and far slower than fp32)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return frozenset()
    return frozenset(flag for line in lines if line.startswith("flags") for flag in line.split(":", 1)[1].split())


@functools.cache
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device) -> str:
    """The hardware a precision verdict holds for: the GPU's name, or the CPU's model and the
    instruction-set flags that decide its matmul speed."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    flags = sorted(f for f in _cpu_flags() if f in {"avx2", "avx512f", "avx512_bf16", "avx512_fp16"} or f.startswith("amx"))
    return f"{_cpu_name()} [{' '.join(flags)}], {torch.get_num_threads()} threads"


def candidates(device: torch.device) -> list[str]:
    """Dtypes worth trying on ``device``; float32 is the fallback, not a candidate."""
    if device.type == "cuda":
        return (["bfloat16"] if torch.cuda.is_bf16_supported() else []) + ["float16"]
    if device.type == "cpu":
        return (["bfloat16"] if bf16_supported() else []) + ["int8"]
    return []


@dataclass
class Trial:
    """How one candidate dtype compared with float32 on the calibration set."""

    dtype: str
    passed: bool
    min_cosine: float
    share_close: float
    spearman: float
    spearman_float32: float
    seconds: float
    float32_seconds: float
    reason: str = ""
    float_layers: int | None = None  # int8: leading layers kept in float32


@dataclass
class PrecisionChoice:
    """The dtype ``auto`` settled on, with every trial behind it.

    Example:
        >>> encoder = Encoder.from_pretrained()  # doctest: +SKIP
        >>> print(encoder.precision.describe())  # doctest: +SKIP
        float32 (bfloat16 rejected: 97.2% of texts at cosine >= 0.99, needs 99%)
    """

    dtype: str
    machine: str
    trials: list[Trial] = field(default_factory=list)
    cached: bool = False

    @property
    def float_layers(self) -> int | None:
        """For int8: how many leading layers the check kept in float32."""
        return next((t.float_layers for t in self.trials if t.dtype == self.dtype), None)

    def describe(self) -> str:
        parts = []
        for t in self.trials:
            verdict = "kept" if t.dtype == self.dtype else ("rejected: " + t.reason if not t.passed else "passed, slower")
            if t.float_layers is not None:
                verdict += f" ({t.float_layers} leading layers in float32)"
            parts.append(f"{t.dtype} {verdict}; min cosine {t.min_cosine:.4f}, {100 * t.share_close:.1f}% at >= "
                         f"{INT8_MIN_COSINE if t.dtype == 'int8' else MIN_COSINE}, Spearman {t.spearman:.2f} vs {t.spearman_float32:.2f}, "
                         f"{t.float32_seconds / max(t.seconds, 1e-9):.2f}x float32 speed")
        tried = "; ".join(parts) if parts else "no faster dtype runs natively here"
        return f"{self.dtype} ({tried}){' [cached]' if self.cached else ''}"


def calibration_set() -> tuple[list[str], list[tuple[float, int, int]]]:
    """Texts (sentences of graded pairs, then paragraphs) and pairs (gold score, index, index)."""
    data = resources.files("bivec") / "data"
    texts: list[str] = []
    pairs: list[tuple[float, int, int]] = []
    for line in (data / "calibration_pairs.tsv").read_text(encoding="utf-8").splitlines():
        score, first, second = line.split("\t")
        pairs.append((float(score), len(texts), len(texts) + 1))
        texts += [first, second]
    texts += (data / "calibration_paragraphs.txt").read_text(encoding="utf-8").strip().split("\n\n")
    return texts, pairs


def _spearman(vectors: np.ndarray, pairs: list[tuple[float, int, int]]) -> float:
    from bivec.correlation import pair_correlations

    gold, first, second = zip(*pairs)
    return pair_correlations(gold, vectors[list(first)], vectors[list(second)])[0]


def judge(reference: np.ndarray, candidate: np.ndarray, pairs: list[tuple[float, int, int]],
          min_cosine: float = MIN_COSINE) -> dict:
    """Compare unit-normalised embeddings of the same texts under the accuracy rule."""
    cosines = np.sum(reference * candidate, axis=1)
    share = float(np.mean(cosines >= min_cosine))
    spearman, spearman_ref = _spearman(candidate, pairs), _spearman(reference, pairs)
    reasons = []
    if share < MIN_SHARE:
        reasons.append(f"{100 * share:.1f}% of texts at cosine >= {min_cosine}, needs {100 * MIN_SHARE:.0f}%")
    if spearman < spearman_ref - MAX_SPEARMAN_DROP:
        reasons.append(f"Spearman {spearman:.2f} is more than {MAX_SPEARMAN_DROP} below float32's {spearman_ref:.2f}")
    return {"passed": not reasons, "min_cosine": float(cosines.min()), "share_close": share,
            "spearman": spearman, "spearman_float32": spearman_ref, "reason": "; ".join(reasons)}


def _timed_encode(encoder: Encoder, texts: list[str]) -> tuple[np.ndarray, float]:
    encoder.encode(texts[:8], normalize=True)  # first calls pay for kernel selection
    start = time.perf_counter()
    vectors = encoder.encode(texts, normalize=True)
    return vectors, time.perf_counter() - start


def choose(build: Callable[..., Encoder], device: torch.device, tried: list[str] | None = None,
           faster_only: bool = True) -> tuple[Encoder, PrecisionChoice]:
    """Build the float32 encoder, try each candidate dtype (default :func:`candidates`) against it,
    and return the encoder in the fastest dtype that passes (``faster_only=False``: in the first
    that passes, faster or not). ``build(dtype, float_layers=None)`` loads a fresh encoder in
    ``dtype`` (for int8, with ``float_layers`` leading layers in float32)."""
    texts, pairs = calibration_set()
    encoder = build(torch.float32)
    choice = PrecisionChoice("float32", machine_description(device))
    tried = candidates(device) if tried is None else tried
    if not tried:
        return encoder, choice
    print(f"bivec: checking {', '.join(tried)} against float32 on this machine (once per model)", file=sys.stderr)
    reference, reference_s = _timed_encode(encoder, texts)
    best: Trial | None = None
    if faster_only and "int8" in tried and reference_s > INT8_SEARCH_MAX_FLOAT32_SECONDS:
        print(f"bivec: int8 not tried: its search would take about {5 * reference_s:.0f} s on this model "
              "(dtype='int8' runs it)", file=sys.stderr)
        tried = [name for name in tried if name != "int8"]
    for i, name in enumerate(tried):
        if i:
            encoder = build(torch.float32)  # the previous trial left the weights rounded
        if name == "int8":
            trial = int8_float_layers(encoder, texts, pairs, reference, reference_s)
        else:
            encoder.model.to(getattr(torch, name))
            vectors, seconds = _timed_encode(encoder, texts)
            trial = Trial(dtype=name, seconds=seconds, float32_seconds=reference_s, **judge(reference, vectors, pairs))
        choice.trials.append(trial)
        if trial.passed and (not faster_only or trial.seconds < reference_s) and (best is None or trial.seconds < best.seconds):
            best = trial
            if not faster_only:
                break
    if best is not None:
        choice.dtype = best.dtype
    if choice.trials and (best is None or best is not choice.trials[-1]):  # the encoder holds the last trial's weights
        encoder = build(best.dtype if best else torch.float32, float_layers=best.float_layers if best else None)
    return encoder, choice


def prepare_int8(encoder: Encoder) -> Int8Plan:
    """Smooth the float32 model (where :func:`bivec.int8.smoothable`) and plan its int8 layers.
    The activation maxima come from every calibration text (the paragraphs alone, without the
    short sentences' outlier tokens, left the trained default needing 13 float32 layers instead of
    about 10 in a simulation); they are cached per model, so that a later load smooths alike
    without encoding them again."""
    from bivec.int8 import Int8Plan, activation_maxima, smooth, smoothable

    if smoothable(encoder.model):
        key = cache_key({"maxima": 1, "model": weights_digest(encoder), "max_length": encoder.max_length})
        path = _verdict_dir() / "int8" / f"{key}.safetensors"
        maxima = _read_maxima(path)
        if maxima is None:
            texts, _ = calibration_set()
            maxima = activation_maxima(encoder.model, lambda: encoder.encode(texts, show_progress=False))
            _write_maxima(path, maxima)
        smooth(encoder.model, maxima)
    return Int8Plan(encoder.model)


def _read_maxima(path: Path) -> list[dict[str, torch.Tensor]] | None:
    from safetensors.torch import load_file

    try:
        flat = load_file(path)
    except (OSError, ValueError):
        return None
    maxima: list[dict[str, torch.Tensor]] = [{} for _ in range(1 + max(int(k.split(":")[0]) for k in flat))]
    for name, tensor in flat.items():
        layer, module = name.split(":")
        maxima[int(layer)][module] = tensor
    return maxima


def _write_maxima(path: Path, maxima: list[dict[str, torch.Tensor]]) -> None:
    from safetensors.torch import save_file

    from bivec.textio import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {f"{i}:{name}": tensor.contiguous() for i, layer in enumerate(maxima) for name, tensor in layer.items()}
    atomic_write(path, lambda tmp: save_file(flat, tmp))


def int8_float_layers(encoder: Encoder, texts: list[str], pairs, reference: np.ndarray, reference_s: float) -> Trial:
    """Put the float32 ``encoder`` in int8 with the fewest leading layers in float32 that pass the
    accuracy rule (at cosine :data:`INT8_MIN_COSINE`), found by bisection (the more layers in
    float32, the closer to float32); the trial of that number, or of the last that failed when only
    all-float32 passes."""
    plan = prepare_int8(encoder)
    low, high = 0, len(plan.slots)
    kept: Trial | None = None
    failed: Trial | None = None
    while low < high:
        middle = (low + high) // 2
        plan.use(middle)
        vectors, seconds = _timed_encode(encoder, texts)
        trial = Trial(dtype="int8", seconds=seconds, float32_seconds=reference_s, float_layers=middle,
                      **judge(reference, vectors, pairs, min_cosine=INT8_MIN_COSINE))
        if trial.passed:
            high, kept = middle, trial
        else:
            low, failed = middle + 1, trial
    layers = len(plan.slots)
    plan.keep(high)
    if kept is None and failed is not None:
        failed.reason += f", even with {failed.float_layers} of {layers} layers in float32"
    return kept or failed


def cache_key(parts: dict) -> str:
    """A stable key for a verdict: the model files, settings, machine and library versions."""
    import transformers

    blob = json.dumps(parts | {"torch": torch.__version__, "transformers": transformers.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def weights_digest(encoder) -> str:
    """A short hash of the model's config (attention mode and dtype included), a sample of every
    weight tensor and the tokenizer's vocabulary size: it changes when the model does."""
    digest = hashlib.sha256(encoder.model.config.get_text_config().to_json_string().encode())
    digest.update(str(len(encoder.tokenizer)).encode())
    with torch.no_grad():
        for name, param in encoder.model.named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().flatten()[:64].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_file_stats(checkpoint: Checkpoint) -> list[tuple[str, int, int]]:
    """Path, size and modification time of each weight file and JSON config of ``checkpoint``: a
    changed model is a new model. It keys this machine's cache, where a modification time is the
    cheap sign of a change; what identifies weights across machines is ``weights_fingerprint``."""
    configs = [p for directory in (checkpoint.base, *checkpoint.adapters) for p in sorted(directory.glob("*.json"))]
    return [(str(path.resolve()), (stat := path.stat()).st_size, stat.st_mtime_ns)
            for path in [*(file.path for file in checkpoint.weight_files()), *configs]]


def _verdict_dir() -> Path:
    from bivec.runtime import cache_dir

    return cache_dir()


def read_verdict(file: str, key: str) -> dict | None:
    """The entry stored under ``key`` in the JSON verdict file ``file`` of bivec's cache, if any."""
    try:
        return json.loads((_verdict_dir() / file).read_text())[key]
    except (OSError, ValueError, KeyError):
        return None


def write_verdict(file: str, key: str, entry: dict) -> None:
    """Store ``entry`` under ``key`` in the JSON verdict file ``file`` (atomically)."""
    from bivec.textio import atomic_write

    path = _verdict_dir() / file
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        entries = {}
    entries[key] = entry
    text = json.dumps(entries, indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def load_cached(key: str) -> PrecisionChoice | None:
    entry = read_verdict(_CACHE_FILE, key)
    if entry is None:
        return None
    return PrecisionChoice(entry["dtype"], entry["machine"], [Trial(**t) for t in entry["trials"]], cached=True)


def store(key: str, choice: PrecisionChoice) -> None:
    write_verdict(_CACHE_FILE, key, {k: v for k, v in asdict(choice).items() if k != "cached"})
