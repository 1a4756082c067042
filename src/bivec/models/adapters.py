"""Apply LoRA adapters (peft) on top of a loaded model, in order, merging each into the weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transformers import PreTrainedModel

from bivec.models.loading import resolve_local_dir
from bivec.models.safety import check_weights


def resolve_adapter(adapter: str | Path, *, allow_pickle: bool = False) -> Path:
    """The local directory of a peft adapter (a path, or a hub name found in the local Hugging Face
    cache), checked to hold ``adapter_config.json`` and safetensors weights (pickles only with
    ``allow_pickle``)."""
    path = resolve_local_dir(adapter, ("adapter_config.json",), "adapter")
    if not check_weights(path, "adapter", allow_pickle=allow_pickle):
        raise FileNotFoundError(
            f"adapter {str(adapter)!r} has adapter_config.json but no adapter weights (adapter_model.safetensors)"
        )
    return path


def apply_adapters(
    model: PreTrainedModel, adapters: Sequence[str | Path], *, allow_pickle: bool = False
) -> PreTrainedModel:
    """Load each peft adapter directory onto ``model`` and merge it before the next, as LLM2Vec
    stacks its MNTP and SimCSE/supervised adapters. Returns the merged plain model.

    An adapter whose tensors do not all land on the model (say, one saved from a causal-LM wrapper
    and applied to the bare decoder) is refused rather than silently left out.

    Example:
        >>> model = apply_adapters(AutoModel.from_pretrained("base"), ["mntp", "simcse"])  # doctest: +SKIP
    """
    from peft import PeftConfig, PeftModel

    for adapter in adapters:
        path = resolve_adapter(adapter, allow_pickle=allow_pickle)
        config = PeftConfig.from_pretrained(str(path))
        config.inference_mode = True
        peft_model = PeftModel(model, config)
        result = peft_model.load_adapter(str(path), adapter_name="default")
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"adapter {str(adapter)!r} does not fit the {type(model).__name__}: "
                f"{len(result.missing_keys)} adapter weights are missing (e.g. {result.missing_keys[:1]}) and "
                f"{len(result.unexpected_keys)} saved weights match no layer (e.g. {result.unexpected_keys[:1]}); "
                "was it saved from a different model class or architecture?"
            )
        model = peft_model.merge_and_unload()
    return model
