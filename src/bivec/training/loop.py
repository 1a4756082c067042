"""The optimisation loop shared by every stage: accelerate for devices and processes,
deterministic per-step randomness (so a resumed run matches an uninterrupted one), checkpoints,
a progress bar, a JSON log and a loss-curve plot."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from bivec.precision import bf16_supported
from bivec.runtime import keep_freed_memory
from bivec.textio import atomic_write
from bivec.training.config import TrainConfig
from bivec.training.state import latest_checkpoint, load_checkpoint, run_settings, save_checkpoint

StepFn = Callable[[nn.Module, int], tuple[float, int]]


def make_accelerator(config: TrainConfig):
    """An ``accelerate.Accelerator`` for ``config``'s precision and DeepSpeed / FSDP file."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps one process-wide state; several stages in one process may differ in
    # precision, so drop it (the distributed part, PartialState, is kept).
    AcceleratorState._reset_state(reset_partial_state=False)
    kwargs = {}
    if config.deepspeed_config is not None:
        from accelerate import DeepSpeedPlugin

        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(hf_ds_config=str(config.deepspeed_config))
    if config.fsdp_config is not None:
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(**json.loads(Path(config.fsdp_config).read_text()))
    bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_supported())
    # Without a GPU, accelerate only forms a multi-process (gloo) group when told to use the CPU.
    return Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not torch.cuda.is_available(), **kwargs)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The example indices of global batch ``step``: a fresh seeded permutation every epoch."""
    out = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n)
        if offset == 0 or not out:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919 * epoch))
        out.append(int(order[offset]))
    return out


def seed_step(seed: int, step: int, rank: int) -> None:
    """Seed every random source from (seed, step, rank) alone, so a step draws the same masks and
    dropout whether or not the run was interrupted before it."""
    value = (seed * 1_000_003 + step * 101 + rank) % (2**31)
    random.seed(value)
    torch.manual_seed(value)


def train_loop(
    config: TrainConfig,
    module: nn.Module,
    step_fn: StepFn,
    *,
    accelerator,
    stage: str,
    on_step: Callable[[int, float], None] | None = None,
) -> dict:
    """Optimise ``module``'s trainable parameters for ``config.steps`` steps; ``step_fn(module,
    step)`` runs forward and backward and returns (loss, tokens seen by this process).
    Returns the run's log, also written to ``output_dir/training_log.json``."""
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    output_dir = Path(config.output_dir)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=config.warmup_steps,
                              num_training_steps=config.steps)
    prepared, optimizer = accelerator.prepare(module, optimizer)
    keep_freed_memory(accelerator.device.type)
    start, history, elapsed, tokens = 0, [], 0.0, 0
    settings = run_settings(config, accelerator.num_processes)
    checkpoint = latest_checkpoint(output_dir) if config.resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, settings)
        named = {name: p for name, p in module.named_parameters() if p.requires_grad}
        if state["params"].keys() != named.keys():
            raise ValueError(f"checkpoint {checkpoint} holds other trainable parameters than this model's "
                             f"({len(state['params'])} saved, {len(named)} here); delete it to start over")
        with torch.no_grad():
            for name, value in state["params"].items():
                named[name].copy_(value)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, progress = state["step"], state["progress"]
        history, elapsed, tokens = progress["history"], progress["elapsed"], progress["tokens"]
        accelerator.print(f"resuming from {checkpoint} (step {start} of {config.steps})")
    prepared.train()
    bar = tqdm(total=config.steps, initial=start, desc=stage, unit="step",
               disable=not (config.progress and accelerator.is_main_process))
    began = time.perf_counter() - elapsed
    for step in range(start, config.steps):
        seed_step(config.seed, step, accelerator.process_index)
        loss, seen = step_fn(prepared, step)
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(params, config.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        totals = accelerator.reduce(torch.tensor([loss, float(seen)], device=accelerator.device), "sum")
        loss = float(totals[0]) / accelerator.num_processes
        tokens += int(totals[1])
        history.append({"step": step + 1, "loss": loss, "lr": lr,
                        "elapsed_s": round(time.perf_counter() - began, 3), "tokens": tokens})
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if config.save_steps and (step + 1) % config.save_steps == 0 and step + 1 < config.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(output_dir, step + 1, params=_trainable(module), optimizer=optimizer.state_dict(),
                                scheduler=scheduler.state_dict(), settings=settings,
                                progress={"history": list(history), "elapsed": time.perf_counter() - began,
                                          "tokens": tokens})
            accelerator.wait_for_everyone()
        if on_step is not None:
            on_step(step + 1, loss)
    bar.close()
    wall = time.perf_counter() - began
    log = {"stage": stage, "steps": config.steps, "batch_size": config.batch_size,
           "processes": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision,
           "wall_s": round(wall, 2), "tokens": tokens, "tokens_per_s": round(tokens / max(wall, 1e-9), 2),
           "history": history}
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(log, indent=1)
        atomic_write(output_dir / "training_log.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        _plot(history, output_dir / "training_curve.png", stage)
    return log


def _trainable(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


def _plot(history: list[dict], path: Path, stage: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"bivec {stage}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
