"""Safe loading: safetensors only unless the user opts in to pickle-based checkpoints.

A ``pytorch_model.bin`` or ``adapter_model.bin`` is a Python pickle; unpickling can run arbitrary
code. ``torch.load(weights_only=True)``, which transformers and peft use, narrows that but has had
escapes, so bivec refuses such files unless ``allow_pickle=True``. Remote code (``auto_map`` in a
config) is never run unless ``trust_remote_code=True``.
"""

from __future__ import annotations

from pathlib import Path

# Weight files by kind: (safetensors patterns, pickle patterns), shards included.
_PATTERNS = {
    "model": (("model*.safetensors",), ("pytorch_model*.bin", "model*.bin", "*.pt", "*.pth", "*.ckpt")),
    "adapter": (("adapter_model*.safetensors",), ("adapter_model*.bin", "adapter_model*.pt")),
}


class UnsafeCheckpointError(ValueError):
    """A checkpoint whose weights exist only in a pickle-based format."""


def weight_files(directory: Path, kind: str) -> tuple[list[Path], list[Path]]:
    """The safetensors and the pickle weight files of ``kind`` ("model" or "adapter") in ``directory``."""
    safe_patterns, pickle_patterns = _PATTERNS[kind]
    found = [sorted({p for pattern in patterns for p in directory.glob(pattern) if p.is_file()})
             for patterns in (safe_patterns, pickle_patterns)]
    return found[0], found[1]


def check_weights(directory: Path, kind: str, *, allow_pickle: bool) -> bool:
    """Whether ``directory`` holds loadable ``kind`` ("model" or "adapter") weights.

    True for safetensors weights, or pickle weights when ``allow_pickle`` is set; False when it has
    no weights at all. Raises :class:`UnsafeCheckpointError` when its only weights are pickles and
    ``allow_pickle`` is False, saying why.

    Example:
        >>> check_weights(Path("path/to/model"), "model", allow_pickle=False)  # doctest: +SKIP
        True
    """
    safe, pickled = weight_files(directory, kind)
    if safe:
        return True
    if pickled and not allow_pickle:
        names = ", ".join(p.name for p in pickled)
        raise UnsafeCheckpointError(
            f"{kind} {str(directory)!r} has weights only in a pickle-based format ({names}). Unpickling can "
            "run arbitrary code, so bivec loads safetensors only by default. Convert the checkpoint to "
            "safetensors, or pass allow_pickle=True (--allow-pickle) if you trust its source."
        )
    return bool(pickled)
