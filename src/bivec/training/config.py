"""One dataclass per training stage; defaults follow the LLM2Vec paper's published configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bivec.pooling import POOLING_MODES, check_pooling_mode

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def paired_lora_alpha(lora_r: int) -> int:
    """The LoRA alpha a rank gets when none is given: 2 x rank, the paper's ratio (16 and 32)."""
    return 2 * lora_r


@dataclass
class TrainConfig:
    """Settings shared by every stage; each field's ``help`` metadata says what it does (``setting_help``).

    The base model and adapters load as the encoder loads them: safetensors only unless
    ``allow_pickle``, shipped code only with ``trust_remote_code``.
    """

    data: list[Any] = field(default_factory=list, metadata={"help": "Training data files (or folders of .txt files)."})
    output_dir: str | Path = field(default="bivec-output",
                                   metadata={"help": "Output folder (adapter, logs, checkpoints)."})
    model: str | Path | None = field(default=None, metadata={
        "help": "Base model folder; default: bivec/default-base (the untrained embedded model)."})
    adapters: list[str | Path] = field(default_factory=list, metadata={
        "help": "Adapters merged into the base first (e.g. the MNTP output), in order."})
    steps: int = field(default=1000, metadata={"help": "Optimiser steps."})
    batch_size: int = field(default=32, metadata={"help": "Global batch size per step (split across processes)."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warmup steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradients are clipped to this norm."})
    max_length: int = field(default=512, metadata={"help": "Tokens per text (MNTP: per block)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA inputs."})
    lora_targets: tuple[str, ...] = field(default=LORA_TARGETS,
                                          metadata={"help": "Modules that get LoRA (comma-separated)."})
    seed: int = field(default=42, metadata={"help": "Random seed (data order, masks, dropout)."})
    save_steps: int = field(default=200, metadata={"help": "Write a checkpoint every N steps (0: never)."})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 autocast where the hardware supports it, else fp32), bf16 or fp32."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations to save memory."})
    deepspeed_config: str | Path | None = field(default=None, metadata={"help": "DeepSpeed JSON config (multi-GPU)."})
    fsdp_config: str | Path | None = field(default=None, metadata={
        "help": "JSON of accelerate FullyShardedDataParallelPlugin arguments."})
    resume: bool = field(default=False, metadata={
        "help": "Continue from the newest checkpoint in the output folder, refusing one made with other settings."})
    progress: bool = field(default=True, metadata={"help": "Progress bar with ETA."})
    allow_pickle: bool = field(default=False, metadata={"help": "Allow pickled (.bin) weights: they can run code."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run the model repository's own Python code."})
    bidirectional: bool = field(default=True, metadata={
        "help": "False: train with the model's causal attention (the paper's ablation); the output says so, "
                "so that it is encoded causally too."})
    merge: bool = field(default=False, metadata={
        "help": "Also write the model with every adapter merged in OUTPUT/merged (a plain Hugging Face folder)."})

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

    mask_ratio: float = field(default=0.2, metadata={"help": "Fraction of tokens masked."})
    mask_token: str = field(default="auto", metadata={
        "help": "auto (the tokenizer's, else '_'), new, or an existing token."})
    pack: bool = field(default=True, metadata={"help": "Pack texts into full blocks (false: truncate each)."})

    def validate(self) -> None:
        super().validate()
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be between 0 and 1, got {self.mask_ratio}")


@dataclass
class ContrastiveConfig(TrainConfig):
    """Settings of the contrastive stages; the output encodes with the pooling and echo it trained with."""

    scale: float = field(default=20.0, metadata={"help": "Similarity scale of the InfoNCE loss."})
    pooling: str = field(default="mean", metadata={
        "help": f"Pooling trained with, and stored for encoding: {', '.join(POOLING_MODES)}."})
    dropout: float = field(default=0.0, metadata={"help": "Attention dropout making the two views of a text differ."})
    chunk_size: int | None = field(default=None, metadata={
        "help": "Texts per forward pass (GradCache); the loss is unchanged."})
    instruction: str = field(default="", metadata={"help": "Instruction for queries without their own; not pooled."})
    echo: bool = field(default=False, metadata={
        "help": "Train on echo embeddings: each text read twice, the second copy pooled."})

    def validate(self) -> None:
        super().validate()
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        try:
            check_pooling_mode(self.pooling)
        except ValueError as exc:
            raise ValueError(f"pooling: {exc}") from None


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


def setting_help(cls: type, name: str) -> str:
    """The help of setting ``name`` of a stage config (a stage that changes a shared default keeps its help).

    Example:
        >>> setting_help(SimCSEConfig, "batch_size")
        'Global batch size per step (split across processes).'
    """
    for base in cls.__mro__:
        spec = getattr(base, "__dataclass_fields__", {}).get(name)
        if spec is not None and "help" in spec.metadata:
            return spec.metadata["help"]
    raise KeyError(f"{cls.__name__} has no setting {name!r}")
