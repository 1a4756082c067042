"""Shared helpers for the benchmark scripts."""

from __future__ import annotations

from pathlib import Path

import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def cpu_description() -> str:
    """CPU model, the SIMD/matrix flags that decide the fast dtype, torch's thread count and version."""
    from bivec.precision import machine_description  # imported here: the reference's worker has no bivec

    return f"{machine_description(torch.device('cpu'))}; torch {torch.__version__}"


def print_table(columns: list[str], rows: list[list]) -> None:
    """Print a markdown table."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def memory_mb(field: str = "VmHWM") -> float:
    """This process's peak (``VmHWM``) or current (``VmRSS``) resident memory in MB. Unlike
    ``ru_maxrss``, which a child keeps from its parent across fork and exec, these start afresh
    in each process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_memory() -> None:
    """Start this process's VmHWM afresh from its current RSS (Linux: ``clear_refs`` value 5), so
    that a later peak belongs to the work done after this call."""
    Path("/proc/self/clear_refs").write_text("5")
