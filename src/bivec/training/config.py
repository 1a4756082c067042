"""One dataclass per training stage; defaults follow the LLM2Vec paper's published configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainConfig:
    """Settings shared by every stage.

    ``batch_size`` is the global batch per optimiser step, split across processes;
    ``chunk_size`` (contrastive stages) bounds how many texts go through the model at once.
    ``precision``: ``auto`` (bf16 autocast where the hardware supports it, else fp32), ``bf16``
    or ``fp32``. ``resume`` continues from the newest checkpoint in ``output_dir``, refusing one
    made with other settings. The base model and adapters load as the encoder loads them:
    safetensors only unless ``allow_pickle``, shipped code only with ``trust_remote_code``.
    ``bidirectional=False`` trains with the model's causal attention (the paper's ablation), and
    the output says so, so that it is encoded causally too. ``merge`` also writes the model with
    every adapter merged into ``output_dir/merged`` (a plain Hugging Face folder).
    """

    data: list[Any] = field(default_factory=list)
    output_dir: str | Path = "bivec-output"
    model: str | Path | None = None
    adapters: list[str | Path] = field(default_factory=list)
    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 512
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS
    seed: int = 42
    save_steps: int = 200
    precision: str = "auto"
    gradient_checkpointing: bool = False
    deepspeed_config: str | Path | None = None
    fsdp_config: str | Path | None = None
    resume: bool = False
    progress: bool = True
    allow_pickle: bool = False
    trust_remote_code: bool = False
    bidirectional: bool = True
    merge: bool = False

    def validate(self) -> None:
        """Raise a ValueError naming the first bad setting."""
        positive = ("steps", "batch_size", "max_length", "lora_r", "lora_alpha")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.save_steps < 0 or self.warmup_steps < 0:
            raise ValueError("save_steps and warmup_steps must not be negative")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        out = Path(self.output_dir)
        if out.exists() and not out.is_dir():
            raise ValueError(f"output_dir {str(out)!r} is a file; expected a folder")
        for name in ("deepspeed_config", "fsdp_config"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{name} {str(path)!r} does not exist")


@dataclass
class MNTPConfig(TrainConfig):
    """Masked next-token prediction (paper: Wikitext-103, 1000 steps, batch 32, 512 tokens,
    lr 5e-5, mask ratio 0.2 with ``_`` as mask token for Llama models).

    Example:
        >>> from bivec.training import MNTPConfig, train_mntp
        >>> train_mntp(MNTPConfig(data=["wiki.txt"], output_dir="out/mntp", steps=100))  # doctest: +SKIP
    """

    mask_ratio: float = 0.2
    mask_token: str = "auto"
    pack: bool = True

    def validate(self) -> None:
        super().validate()
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be between 0 and 1, got {self.mask_ratio}")


@dataclass
class ContrastiveConfig(TrainConfig):
    """Settings of the contrastive stages. ``echo=True`` trains on echo embeddings (each text read
    twice, the second copy pooled; see :class:`~bivec.Encoder`), and the output encodes that way."""

    scale: float = 20.0
    pooling: str = "mean"
    dropout: float = 0.0
    chunk_size: int | None = None
    instruction: str = ""
    echo: bool = False

    def validate(self) -> None:
        super().validate()
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class SimCSEConfig(ContrastiveConfig):
    """Unsupervised SimCSE (paper: 1000 steps, batch 128, 128 tokens, lr 3e-5, dropout 0.3,
    scale 20, mean pooling), a new LoRA on top of the merged MNTP model (``adapters``).

    Example:
        >>> train_simcse(SimCSEConfig(data=["sentences.txt"], adapters=["out/mntp"],
        ...                           output_dir="out/simcse"))  # doctest: +SKIP
    """

    batch_size: int = 128
    max_length: int = 128
    learning_rate: float = 3e-5
    dropout: float = 0.3


@dataclass
class SupervisedConfig(ContrastiveConfig):
    """Supervised contrastive training (paper: 1000 steps, global batch 512, 512 tokens,
    lr 2e-4, warmup 300, scale 50, instructions on the query side).

    Example:
        >>> train_supervised(SupervisedConfig(data=["triplets.jsonl"], adapters=["out/mntp"],
        ...                                   batch_size=512, chunk_size=32))  # doctest: +SKIP
    """

    batch_size: int = 512
    learning_rate: float = 2e-4
    warmup_steps: int = 300
    scale: float = 50.0
    chunk_size: int | None = 32
