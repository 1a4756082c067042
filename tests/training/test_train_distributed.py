"""Two CPU processes on gloo, launched by torchrun, must train like one process with the same
global batch: negatives are gathered across processes and gradients averaged."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bivec.training import SupervisedConfig, train_supervised

TRIPLETS = "/work/shared/data/nli/sick_train_triplets.jsonl"
SRC = Path(__file__).resolve().parents[2] / "src"
ARGS = ["--steps", "3", "--batch-size", "8", "--chunk-size", "3", "--warmup", "0", "--lr", "1e-2",
        "--precision", "fp32", "--save-steps", "0", "--lora-dropout", "0"]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, tiny_lm_dir):
    script = tmp_path / "bivec_main.py"
    script.write_text("from bivec.cli import main\nmain()\n")
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               str(script), "train", "supervised", TRIPLETS, "-m", str(tiny_lm_dir), "-o", str(tmp_path / "ddp"), *ARGS]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "supervised: 3 steps" in done.stdout
    assert json.loads((tmp_path / "ddp" / "training_log.json").read_text())["processes"] == 2
    single = tmp_path / "single"
    train_supervised(SupervisedConfig(data=[TRIPLETS], model=tiny_lm_dir, output_dir=single, steps=3, batch_size=8,
                                      chunk_size=3, warmup_steps=0, learning_rate=1e-2, precision="fp32",
                                      save_steps=0, progress=False, lora_dropout=0.0))
    a, b = load_file(single / "adapter_model.safetensors"), load_file(tmp_path / "ddp" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key
