"""Process-level concerns: where bivec keeps its cache, and the memory allocator's settings.

``keep_freed_memory``: keep the memory that forward passes free inside the process (Linux with glibc).

Each forward pass allocates its activations and frees them at the end. Under glibc's default,
adaptive settings, freed memory at the top of the heap beyond about twice the largest recent
allocation goes back to the kernel, so the next pass faults every page in again: 0.4 to 1.3 million
page faults per encode of the benchmark's 1,200 short texts, and 0.9-1.1 s of kernel time each.
``benchmarks/encode_allocator.py`` measured encoding 3% faster in float32 and 19-32% faster in
bfloat16 with the thresholds below (2-core Xeon, fresh processes). Intel's launcher
(``python -m torch.backends.xeon.run_cpu``) preloads jemalloc with its decay turned off for the
same reason; bivec sets glibc's two thresholds in the process instead, which needs nothing
installed. A process's peak memory is unchanged; it keeps up to
``TRIM_THRESHOLD`` of freed memory after the peak instead of returning it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path

from platformdirs import user_cache_dir

# Allocations up to this size come from the heap (which keeps freed memory) rather than from
# mmap (whose every allocation faults its pages in). 32 MiB is the most glibc's adaptive rule
# itself would reach; it covers the activations of a 2,048-token pass of models up to ~4k hidden
# size; larger ones are rarer and cost more compute per page.
MMAP_THRESHOLD = 32 << 20
# Freed memory at the top of the heap is returned to the kernel only beyond this.
TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# A user who set any of these chose the allocator's behaviour: bivec leaves it alone.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def cache_dir() -> Path:
    """Where bivec keeps converted models and cached measurements: ``$BIVEC_CACHE`` or the user
    cache dir."""
    return Path(os.environ.get("BIVEC_CACHE") or user_cache_dir("bivec"))


@functools.cache
def keep_freed_memory(device_type: str) -> bool:
    """For a model on ``device_type`` (``torch.device.type``), set glibc's mmap and trim thresholds
    once per process; True if they were set. Does nothing for accelerators (their activations are
    not in the process's heap), off glibc, or when the environment sets malloc options (the
    variables above, or ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``)."""
    if device_type != "cpu" or platform.libc_ver()[0] != "glibc":  # libc_ver: empty on macOS, Windows, musl
        return False
    if any(name in os.environ for name in _USER_SETTINGS) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
