"""Tiny random checkpoints in the published LLM2Vec layout, built with peft, for loading tests.

Every function receives the directories it works on; a base model directory to start from comes
from the ``build_base`` or ``tiny_model_dir`` fixture (tests/conftest.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModel

from bivec import Encoder
from bivec.attention import make_bidirectional
from bivec.models.loading import load_tokenizer

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def drop_added_tokens(model_dir: Path) -> Path:
    """Make the tokenizer in ``model_dir`` add no token (BOS, ...) around a text, as SmolLM2's adds none."""
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    tokenizer["post_processor"] = None
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer))
    return model_dir


def build_adapter(
    base_dir: Path, out: Path, *, seed: int, base_name: str | None = None, modules_to_save: list[str] | None = None
) -> Path:
    """A peft LoRA adapter trained on nothing: random, non-zero weights on every projection.
    ``base_name`` replaces the base named in adapter_config.json (as published adapters name a hub
    model); ``modules_to_save`` stores random full copies of those modules, which makes merge
    order visible."""
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False,
                        modules_to_save=modules_to_save)
    model = get_peft_model(AutoModel.from_pretrained(base_dir), config)
    for name, param in model.named_parameters():
        if "modules_to_save" in name:
            param.data.normal_(1.0, 0.5)
    model.save_pretrained(out)
    if base_name is not None:
        path = out / "adapter_config.json"
        config_json = json.loads(path.read_text())
        config_json["base_model_name_or_path"] = base_name
        path.write_text(json.dumps(config_json))
    return out


def build_mntp(base_dir: Path, out: Path, *, base_name: str, seed: int = 1, llm2vec_config: dict | None = None) -> Path:
    """The published ``-mntp`` layout: the base's config.json and tokenizer plus an MNTP adapter
    naming ``base_name``, no base weights."""
    build_adapter(base_dir, out, seed=seed, base_name=base_name)
    for path in base_dir.iterdir():
        if path.name == "config.json" or path.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(path, out / path.name)
    if llm2vec_config is not None:
        (out / "llm2vec_config.json").write_text(json.dumps(llm2vec_config))
    return out


def add_to_hub_cache(cache: Path, repo_id: str, source: Path) -> Path:
    """Copy ``source`` into a Hugging Face cache under ``repo_id``, as a download would leave it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def manual_encoder(base_dir: Path, adapters: list[Path], tokenizer_dir: Path, **kwargs) -> Encoder:
    """The reference way: load the base, apply and merge each adapter with peft, switch to
    bidirectional attention."""
    model = AutoModel.from_pretrained(base_dir)
    for adapter in adapters:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return Encoder(make_bidirectional(model.eval()), load_tokenizer(tokenizer_dir), **kwargs)
