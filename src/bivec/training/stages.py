"""The three LLM2Vec training stages, writing the published LLM2Vec checkpoint layout:
an adapter directory (``adapter_config.json``, ``adapter_model.safetensors``) with the base
model's ``config.json`` and tokenizer, plus ``llm2vec_config.json`` with the encoder settings."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from bivec.attention import make_bidirectional, set_attention_mode
from bivec.encoder import cut_note
from bivec.models.checkpoint import (
    DEFAULT_SETTINGS,
    LLM2VEC_CONFIG,
    Checkpoint,
    EncoderSettings,
    load_model,
    resolve_checkpoint,
    write_bivec_config,
)
from bivec.models.default import DEFAULT_BASE
from bivec.models.loading import load_tokenizer
from bivec.training.config import ContrastiveConfig, MNTPConfig, SimCSEConfig, SupervisedConfig, TrainConfig
from bivec.training.contrastive import Embedder, contrastive_step
from bivec.training.data import ContrastiveRow, read_contrastive, read_documents, read_sentences
from bivec.training.loop import StepFn, batch_indices, make_accelerator, train_loop
from bivec.training.mntp import MNTPModel, make_blocks, mask_tokens, resolve_mask_token

if TYPE_CHECKING:
    from bivec.encoder import Encoder, Tokenized

OnStep = Callable[[int, float], None]
TRAINING_ARGS = "training_args.json"
BlockBatches = Callable[[int], list[list[int]]]
"""Step number -> this process's MNTP token blocks for that step."""
ContrastiveBatches = Callable[[int], tuple[list["Tokenized"], list["Tokenized"], list["Tokenized"]]]
"""Step number -> this process's tokenised queries, their positives (one each, in query order)
and hard negatives for that step."""


def _lora(model: nn.Module, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_targets), bias="none")
    # LoRA's A matrices are drawn at random: seed them so runs with one seed are identical.
    torch.manual_seed(config.seed)
    return get_peft_model(model, lora)


def _local_rows(indices: list[int], accelerator) -> list[int]:
    per = len(indices) // accelerator.num_processes
    return indices[accelerator.process_index * per : (accelerator.process_index + 1) * per]


def _check_batch(config: TrainConfig, accelerator, n: int) -> None:
    if config.batch_size % accelerator.num_processes:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {accelerator.num_processes} processes")
    if n < 2:
        raise ValueError(f"the training data holds {n} example(s); at least 2 are needed")


def _write_outputs(config: TrainConfig, stage: str, peft_model, tokenizer, checkpoint: Checkpoint, *,
                   pooling: str = "mean", mask_token: str | None = None) -> Path:
    """The adapter, the base config and tokenizer, the encoder settings (``llm2vec_config.json``
    for the reference library, ``bivec_config.json`` with the whole stack, so that the folder
    loads on its own) and, apart from them, the training settings (``training_args.json``).
    The encoder's length limit is the inference default (512, or the model's positions if fewer),
    not the (short) training length."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.copy(checkpoint.base / "config.json", out / "config.json")
    positions = getattr(peft_model.get_base_model().config.get_text_config(), "max_position_embeddings", None)
    max_length = min(DEFAULT_SETTINGS.max_length, positions or DEFAULT_SETTINGS.max_length)
    llm2vec = {"pooling_mode": pooling, "max_length": max_length, "skip_instruction": True}
    (out / LLM2VEC_CONFIG).write_text(json.dumps(llm2vec, indent=1) + "\n", encoding="utf-8")
    instruction = getattr(config, "instruction", "")
    prompts = {"query": instruction, "document": ""} if instruction else None
    settings = EncoderSettings(pooling, max_length, config.bidirectional, prompts, getattr(config, "echo", None))
    write_bivec_config(out, settings, base=checkpoint.base,
                       adapters=[*checkpoint.adapters, out], mask_token=mask_token)
    args = {"stage": stage, "base_model": str(checkpoint.base), "adapters": [str(a) for a in checkpoint.adapters],
            "config": {k: v for k, v in asdict(config).items() if k != "data"} | {"data": [str(d) for d in config.data]}}
    (out / TRAINING_ARGS).write_text(json.dumps(args, indent=1, default=str) + "\n", encoding="utf-8")
    return out


def _save_merged(config: TrainConfig, model: nn.Module, tokenizer, pooling: str) -> Path:
    """``output_dir/merged``: the model with every adapter merged, saved as the causal model it was
    loaded as (loaders switch attention themselves), its tokenizer and encoder settings."""
    out = Path(config.output_dir) / "merged"
    set_attention_mode(model, bidirectional=False)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    max_length = json.loads((Path(config.output_dir) / LLM2VEC_CONFIG).read_text(encoding="utf-8"))["max_length"]
    settings = EncoderSettings(pooling, max_length, config.bidirectional, echo=getattr(config, "echo", None))
    write_bivec_config(out, settings)
    return out


def base_checkpoint(config: TrainConfig) -> tuple[Checkpoint, PreTrainedTokenizerBase]:
    """Where ``config``'s base model and adapters live, resolved (and checked for safe weights)
    the way the encoder resolves them, and its tokenizer."""
    checkpoint = resolve_checkpoint(base_name(config.model), config.adapters, allow_pickle=config.allow_pickle)
    return checkpoint, load_tokenizer(checkpoint.tokenizer, trust_remote_code=config.trust_remote_code)


def base_name(model: str | Path | None) -> str | Path:
    """The model a stage trains from: ``model``, or the untrained default base when None (not the
    shipped encoder)."""
    return DEFAULT_BASE if model is None else model


def _load_base(config: TrainConfig, checkpoint: Checkpoint, model_class: type) -> nn.Module:
    return load_model(checkpoint, device=torch.device("cpu"), dtype=torch.float32, model_class=model_class,
                      allow_pickle=config.allow_pickle, trust_remote_code=config.trust_remote_code)


def mntp_model(config: MNTPConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[nn.Module, MNTPModel]:
    """The causal LM of ``config.model`` with ``config.adapters`` merged, bidirectional, gradient
    checkpointing as ``config`` asks, and a new LoRA on its decoder; returns the LoRA-wrapped
    decoder (what is saved) and the module returning the MNTP loss (what is trained).
    ``tokenizer`` must already hold the mask token, so that an added one gets an embedding."""
    from transformers import AutoModelForCausalLM

    checkpoint = resolve_checkpoint(base_name(config.model), config.adapters, allow_pickle=config.allow_pickle)
    lm = _load_base(config, checkpoint, AutoModelForCausalLM)
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))
    if config.bidirectional:
        make_bidirectional(lm)
    if config.gradient_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    decoder = _lora(lm.get_decoder(), config)
    setattr(lm, lm.base_model_prefix, decoder)
    # Only the LoRA is trained and saved, as in LLM2Vec; an LM head not tied to the (frozen)
    # input embeddings would otherwise be trained in full and then thrown away.
    lm.get_output_embeddings().requires_grad_(False)
    return decoder, MNTPModel(lm)


def mntp_step_fn(config: MNTPConfig, model: MNTPModel, tokenizer: PreTrainedTokenizerBase, mask_id: int,
                 accelerator, batches: BlockBatches) -> StepFn:
    """``train_loop``'s step for MNTP: mask the blocks ``batches(step)`` gives, then forward and
    backward through the (prepared) ``model``."""
    special = frozenset(tokenizer.all_special_ids)
    vocab = model.lm.get_output_embeddings().out_features

    def step_fn(prepared: nn.Module, step: int) -> tuple[float, int]:
        batch = mask_tokens(batches(step), mask_id=mask_id, pad_id=tokenizer.pad_token_id,
                            vocab_size=vocab, ratio=config.mask_ratio, special_ids=special)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        loss = prepared(**batch)
        accelerator.backward(loss)
        return float(loss.detach()), int(batch["attention_mask"].sum())

    return step_fn


def train_mntp(config: MNTPConfig, *, on_step: OnStep | None = None) -> dict:
    """Train a LoRA adapter with masked next-token prediction on the bidirectional model.

    Writes the adapter to ``config.output_dir`` (and, with ``merge``, the merged causal LM to
    ``output_dir/merged``); returns the training log.

    Example:
        >>> log = train_mntp(MNTPConfig(data=["wiki.txt"], output_dir="out/mntp", steps=50,
        ...                             batch_size=8, max_length=128))  # doctest: +SKIP
    """
    config.validate()
    checkpoint, tokenizer = base_checkpoint(config)
    mask_id = resolve_mask_token(tokenizer, config.mask_token)
    blocks = make_blocks(tokenizer, read_documents(config.data), config.max_length, pack=config.pack)
    accelerator = make_accelerator(config)
    _check_batch(config, accelerator, len(blocks))
    decoder, model = mntp_model(config, tokenizer)

    def batches(step: int) -> list[list[int]]:
        rows = _local_rows(batch_indices(len(blocks), config.batch_size, step, config.seed), accelerator)
        return [blocks[i] for i in rows]

    step_fn = mntp_step_fn(config, model, tokenizer, mask_id, accelerator, batches)
    log = train_loop(config, model, step_fn, accelerator=accelerator, stage="mntp", on_step=on_step)
    if accelerator.is_main_process:
        _write_outputs(config, "mntp", decoder, tokenizer, checkpoint, mask_token=tokenizer.convert_ids_to_tokens(mask_id))
        if config.merge:
            lm = model.lm
            setattr(lm, lm.base_model_prefix, decoder.merge_and_unload())
            _save_merged(config, lm, tokenizer, "mean")
    accelerator.wait_for_everyone()
    return log


def contrastive_model(config: ContrastiveConfig) -> tuple[Checkpoint, PreTrainedTokenizerBase, nn.Module, Encoder]:
    """Base model with earlier adapters merged, bidirectional, dropout set, new LoRA on top;
    returns where the base and adapters live, the tokenizer, the LoRA-wrapped model and an
    encoder over it."""
    from transformers import AutoModel

    from bivec.encoder import Encoder

    checkpoint, tokenizer = base_checkpoint(config)
    model = _load_base(config, checkpoint, AutoModel)
    if config.bidirectional:
        make_bidirectional(model)
    for module in model.modules():
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = config.dropout
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    decoder = _lora(model, config)
    # The encoder gives the pooling masks (text tokens only: no padding, instruction or template).
    encoder = Encoder(decoder, tokenizer, pooling=config.pooling, max_length=config.max_length, echo=config.echo)
    return checkpoint, tokenizer, decoder, encoder


def contrastive_step_fn(config: ContrastiveConfig, encoder: Encoder, accelerator,
                        batches: ContrastiveBatches) -> StepFn:
    """``train_loop``'s step for the contrastive stages: InfoNCE over what ``batches(step)``
    gives, forward and backward through the (prepared) ``Embedder``, in chunks of
    ``config.chunk_size`` texts."""
    chunk = config.chunk_size or config.batch_size

    def chunks(items) -> list:
        return [tuple(t.to(accelerator.device) for t in encoder.collate(items[i : i + chunk]))
                for i in range(0, len(items), chunk)]

    def step_fn(prepared: nn.Module, step: int) -> tuple[float, int]:
        queries, positives, negatives = batches(step)
        loss = contrastive_step(lambda b: prepared(*b), chunks(queries), chunks(positives) + chunks(negatives),
                                scale=config.scale, loss_weight=accelerator.num_processes,
                                no_sync=lambda: accelerator.no_sync(prepared))
        return loss, sum(len(t.input_ids) for t in (*queries, *positives, *negatives))

    return step_fn


def _train_contrastive(config: ContrastiveConfig, rows: list[ContrastiveRow], stage: str, on_step: OnStep | None) -> dict:
    checkpoint, tokenizer, decoder, encoder = contrastive_model(config)
    accelerator = make_accelerator(config)
    _check_batch(config, accelerator, len(rows))
    queries = encoder.tokenize([[r.instruction, r.query] if r.instruction else r.query for r in rows])
    documents = encoder.tokenize([text for r in rows for text in (r.positive, *r.negatives)])
    doc_start = [0]
    for r in rows:
        doc_start.append(doc_start[-1] + 1 + len(r.negatives))
    cut = sum(queries[i].truncated or any(d.truncated for d in documents[doc_start[i]:doc_start[i + 1]])
              for i in range(len(rows)))
    if cut and accelerator.is_main_process:
        note = cut_note(cut, len(rows), "training rows with a text", encoder.max_length, encoder.echo)
        print(f"{stage}: {note}; a larger max_length keeps them whole", file=sys.stderr, flush=True)

    def batches(step: int) -> tuple[list[Tokenized], list[Tokenized], list[Tokenized]]:
        local = _local_rows(batch_indices(len(rows), config.batch_size, step, config.seed), accelerator)
        # InfoNCE does not depend on row order; sorted rows make chunks of similar length (less padding).
        local.sort(key=lambda i: len(queries[i].input_ids))
        return ([queries[i] for i in local], [documents[doc_start[i]] for i in local],
                [documents[j] for i in local for j in range(doc_start[i] + 1, doc_start[i + 1])])

    step_fn = contrastive_step_fn(config, encoder, accelerator, batches)
    log = train_loop(config, Embedder(decoder, config.pooling), step_fn, accelerator=accelerator,
                     stage=stage, on_step=on_step)
    if accelerator.is_main_process:
        _write_outputs(config, stage, decoder, tokenizer, checkpoint, pooling=config.pooling)
        if config.merge:
            _save_merged(config, decoder.merge_and_unload(), tokenizer, config.pooling)
    accelerator.wait_for_everyone()
    return log


def train_simcse(config: SimCSEConfig, *, on_step: OnStep | None = None) -> dict:
    """Unsupervised SimCSE: each sentence is its own positive under dropout, other sentences of
    the batch are negatives; a new LoRA on top of ``config.adapters`` (the MNTP output).

    Example:
        >>> log = train_simcse(SimCSEConfig(data=["sentences.txt"], adapters=["out/mntp"],
        ...                                 output_dir="out/simcse", steps=100, batch_size=32))  # doctest: +SKIP
    """
    config.validate()
    sources = [config.data] if isinstance(config.data, (str, Path)) else config.data
    rows = [ContrastiveRow(s, s, (), config.instruction) for s in read_sentences(sources)]
    if config.dropout == 0 and config.lora_dropout == 0:
        raise ValueError("SimCSE needs dropout: with dropout=0 and lora_dropout=0 both views are identical")
    return _train_contrastive(config, rows, "simcse", on_step)


def train_supervised(config: SupervisedConfig, *, on_step: OnStep | None = None) -> dict:
    """Supervised contrastive training on (query, positive, hard negatives) rows, in-batch and
    hard negatives, gathered across processes; chunked (GradCache) with ``chunk_size``.

    Example:
        >>> log = train_supervised(SupervisedConfig(data=["triplets.jsonl"], adapters=["out/mntp"],
        ...                                         output_dir="out/sup", batch_size=512, chunk_size=32))  # doctest: +SKIP
    """
    config.validate()
    sources = [config.data] if isinstance(config.data, (str, Path)) else config.data
    return _train_contrastive(config, read_contrastive(sources, instruction=config.instruction), "supervised", on_step)


__all__ = ["train_mntp", "train_simcse", "train_supervised"]
