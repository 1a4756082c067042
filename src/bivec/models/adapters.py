"""Apply LoRA adapters (peft) on top of a loaded model, in order, merging each into the weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transformers import PreTrainedModel


def apply_adapters(model: PreTrainedModel, adapters: Sequence[str | Path]) -> PreTrainedModel:
    """Load each peft adapter directory onto ``model`` and merge it before the next, as LLM2Vec
    stacks its MNTP and SimCSE/supervised adapters. Returns the merged plain model."""
    from peft import PeftModel

    for adapter in adapters:
        path = Path(adapter).expanduser()
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter {str(adapter)!r} has no adapter_config.json")
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    return model
