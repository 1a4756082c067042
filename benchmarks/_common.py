"""Shared helpers for the benchmark scripts."""

from __future__ import annotations

from pathlib import Path

import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def cpu_description() -> str:
    """CPU model, the SIMD/matrix flags that decide the fast dtype, and torch's thread count."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line for line in lines if line.startswith("model name")).split(":", 1)[1].strip()
        flags = next(line for line in lines if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        model, flags = "unknown CPU", []
    wanted = [f for f in flags if f in ("avx2", "avx512f", "avx512_bf16") or f.startswith("amx")]
    return f"{model}; flags: {' '.join(wanted) or 'none of avx2/avx512/amx'}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def memory_mb(field: str = "VmHWM") -> float:
    """This process's peak (``VmHWM``) or current (``VmRSS``) resident memory in MB. Unlike
    ``ru_maxrss``, which a child keeps from its parent across fork and exec, these start afresh
    in each process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")
