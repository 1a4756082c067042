"""Freed activations stay in the process: repeated forward passes stop faulting their pages in.

Each check runs in a child process, since the thresholds are process-wide and the environment
decides whether bivec sets them. (glibc's default behaviour is not checked: its adaptive thresholds
fault on every round in some runs and settle in others, with the address-space layout.)"""

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")

# Rounds like a forward pass: hidden states, wider MLP activations and small temporaries are
# allocated and written (about 15,000 pages), then all freed. Prints, as JSON, what ``setup``
# left in ``result`` and the page faults per round once the heap has grown to its working size.
CHILD = """
import json, resource, torch

def one_round():
    tensors = []
    for _ in range(8):
        tensors += [torch.ones(300_000), torch.ones(800_000), torch.ones(800_000), torch.ones(20_000)]
    del tensors

{setup}
for _ in range(2):
    one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    one_round()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
print(json.dumps({{"result": result, "faults": faults}}))
"""
PAGES_PER_ROUND = 15_000
CALL = "from bivec.runtime import keep_freed_memory\nresult = keep_freed_memory('cpu')"


def run_child(setup: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup)], env={**clean, **env},
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_after_keep_freed_memory_rounds_reuse_their_pages():
    child = run_child(CALL)
    assert child["result"] is True
    assert child["faults"] < PAGES_PER_ROUND / 20


def test_an_encoder_on_the_cpu_sets_the_thresholds(tiny_model_dir):
    child = run_child(f"from bivec import Encoder\nEncoder.from_pretrained({str(tiny_model_dir)!r}, dtype='float32')\n"
                      "from bivec.runtime import keep_freed_memory\n"
                      "result = keep_freed_memory.cache_info().currsize")
    assert child["result"] == 1
    assert child["faults"] < PAGES_PER_ROUND / 20


def test_a_model_on_an_accelerator_leaves_the_allocator_alone():
    from bivec.runtime import keep_freed_memory

    assert keep_freed_memory("cuda") is False


@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "0"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}])
def test_malloc_settings_in_the_environment_win(env):
    # A trim threshold of 0 returns all freed memory at once: every round faults its pages in again.
    child = run_child(CALL, **env)
    assert child["result"] is False
    assert child["faults"] > PAGES_PER_ROUND / 2
