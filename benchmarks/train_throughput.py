"""Training throughput of one MNTP and one SimCSE step on the default model (or --model), with
and without gradient checkpointing, in fp32 and bf16 autocast (where the CPU/GPU has bf16).

A step is what ``bivec train`` runs: the stage's own model, step function and ``train_loop``
(forward, backward, gradient clipping, AdamW on what the stage trains, accelerate autocast), on
random token ids of exactly batch x seq len (no padding, no special tokens). Tokens per step
counts every token through the model, as the training log does: a SimCSE step sees each
sentence twice (two dropout views). Seconds per step: median of --steps timed steps after one
warm-up step. Each row runs in a fresh process, so its peak RSS is its own.

Usage: python benchmarks/train_throughput.py [--model DIR] [--steps 3] [--stages mntp,simcse]
       [--precisions fp32,bf16] [--mntp-batch 8 --mntp-len 128] [--simcse-batch 32 --simcse-len 32] [--threads N]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from _common import cpu_description, memory_mb

from bivec.encoder import Tokenized
from bivec.models import ensure_default_model
from bivec.precision import bf16_supported
from bivec.training import MNTPConfig, SimCSEConfig
from bivec.training.contrastive import Embedder
from bivec.training.loop import make_accelerator, train_loop
from bivec.training.mntp import resolve_mask_token
from bivec.training.stages import base_checkpoint, contrastive_model, contrastive_step_fn, mntp_model, mntp_step_fn

COLUMNS = ["stage", "precision", "grad checkpointing", "batch", "seq len", "tokens per step",
           "seconds per step", "tokens/s", "peak RSS (MB)"]


def random_ids(tokenizer, batch: int, length: int, seed: int = 0) -> list[list[int]]:
    """``batch`` rows of ``length`` ids drawn from the tokenizer's non-special tokens."""
    ordinary = torch.tensor(sorted(set(range(len(tokenizer))) - set(tokenizer.all_special_ids)))
    picks = torch.randint(len(ordinary), (batch, length), generator=torch.Generator().manual_seed(seed))
    return ordinary[picks].tolist()


def _mntp(config: MNTPConfig):
    _, tokenizer = base_checkpoint(config)
    mask_id = resolve_mask_token(tokenizer, config.mask_token)
    accelerator = make_accelerator(config)
    _, model = mntp_model(config, tokenizer)
    blocks = random_ids(tokenizer, config.batch_size, config.max_length)
    return model, mntp_step_fn(config, model, tokenizer, mask_id, accelerator, lambda step: blocks), accelerator


def _simcse(config: SimCSEConfig):
    _, tokenizer, decoder, encoder = contrastive_model(config)
    accelerator = make_accelerator(config)
    # SimCSE's positive is the sentence itself, seen again under other dropout.
    items = [Tokenized(ids, [1] * len(ids)) for ids in random_ids(tokenizer, config.batch_size, config.max_length)]
    step_fn = contrastive_step_fn(config, encoder, accelerator, lambda step: (items, items, []))
    return Embedder(decoder, config.pooling), step_fn, accelerator


STAGES = {"mntp": (MNTPConfig, _mntp), "simcse": (SimCSEConfig, _simcse)}


def measure(stage: str, *, model: str | None, precision: str, checkpointing: bool, batch: int, length: int,
            steps: int, threads: int | None = None) -> dict:
    """One table row: ``steps`` timed training steps after one warm-up, in this process."""
    if threads:
        torch.set_num_threads(threads)
    make_config, build = STAGES[stage]
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        config = make_config(model=model, output_dir=out, steps=steps + 1, batch_size=batch, max_length=length,
                             precision=precision, gradient_checkpointing=checkpointing, save_steps=0, progress=False)
        config.validate()
        module, step_fn, accelerator = build(config)
        log = train_loop(config, module, step_fn, accelerator=accelerator, stage=stage,
                         on_step=lambda *_: stamps.append(time.perf_counter()))
    seconds = statistics.median(b - a for a, b in itertools.pairwise(stamps))
    tokens = log["tokens"] // log["steps"]
    return dict(zip(COLUMNS, [stage, precision, "on" if checkpointing else "off", batch, length, tokens,
                              seconds, tokens / seconds, memory_mb()]))


def _in_fresh_process(**kwargs) -> dict:
    # A peak never falls, so only a process that ran nothing else reports one row's peak.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure, **kwargs).result()


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{v:.3f}" if k == "seconds per step" else f"{v:.0f}" if isinstance(v, float) else str(v)
                 for k, v in row.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the embedded default model)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row, after one warm-up step")
    parser.add_argument("--stages", default="mntp,simcse")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--mntp-batch", type=int, default=8)
    parser.add_argument("--mntp-len", type=int, default=128)
    parser.add_argument("--simcse-batch", type=int, default=32)
    parser.add_argument("--simcse-len", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); on a busy shared CPU fewer can be faster")
    args = parser.parse_args()
    stages = args.stages.split(",")
    precisions = args.precisions.split(",")
    if unknown := [s for s in stages if s not in STAGES] + [p for p in precisions if p not in ("fp32", "bf16")]:
        parser.error(f"unknown stage or precision: {', '.join(unknown)}")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if "bf16" in precisions and not bf16_supported():
        print("bf16 left out: this machine has no fast bf16 (bivec.precision.bf16_supported() is false)")
        precisions.remove("bf16")
    if args.threads:
        torch.set_num_threads(args.threads)
    # Converted here once, so that the row processes do not each race to convert it.
    model = str(args.model or ensure_default_model())
    shapes = {"mntp": (args.mntp_batch, args.mntp_len), "simcse": (args.simcse_batch, args.simcse_len)}
    print(f"CPU: {cpu_description()}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
    print(f"model: {model}; median of {args.steps} timed step(s) after 1 warm-up step")
    rows = []
    for stage in stages:
        batch, length = shapes[stage]
        for precision in precisions:
            for checkpointing in (False, True):
                rows.append(_in_fresh_process(stage=stage, model=model, precision=precision,
                                              checkpointing=checkpointing, batch=batch, length=length,
                                              steps=args.steps, threads=args.threads))
    print()
    print(markdown(rows))


if __name__ == "__main__":
    main()
