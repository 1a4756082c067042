"""Try every checkpoint loading path on the embedded default model and print a table.

Builds, in a temporary directory, the published LLM2Vec layout from SmolLM2-135M-Instruct (random
LoRA adapters made with peft: an MNTP adapter in a directory with the base config and tokenizer,
and SimCSE / supervised adapters), puts it in a temporary Hugging Face cache under the published
names' pattern, and loads it every supported way, comparing each result with applying and merging
the adapters by hand. Also tries the real published names (found only if their files are in the
local Hugging Face cache) and the sentence-transformers export.

    HF_HUB_OFFLINE=1 python benchmarks/checkpoint_loading_paths.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import constants
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModel

from bivec import Encoder, LLM2Vec
from bivec.attention import make_bidirectional
from bivec.models import ensure_default_model, load_tokenizer

TEXTS = ["A man is playing a guitar.", ["Retrieve semantically similar text:", "Someone plays music."],
         "The stock market fell sharply today."]
PUBLISHED = [
    "McGill-NLP/LLM2Vec-Mistral-7B-Instruct-v2-mntp",
    "McGill-NLP/LLM2Vec-Llama-2-7b-chat-hf-mntp",
    "McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp",
    "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp",
]
BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
MNTP_NAME = "bivec-local/LLM2Vec-SmolLM2-135M-Instruct-mntp"


def _adapter(base: Path, out: Path, seed: int, base_name: str) -> Path:
    torch.manual_seed(seed)
    config = LoraConfig(r=16, lora_alpha=32, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(AutoModel.from_pretrained(base), config)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.mul_(0.05)  # keep the random update small, like a trained adapter
    model.save_pretrained(out)
    path = out / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "base_model_name_or_path": base_name}))
    return out


def _cache(cache: Path, repo_id: str, source: Path) -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(source, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)


def _manual(base: Path, adapters: list[Path], tokenizer: Path) -> np.ndarray:
    model = AutoModel.from_pretrained(base)
    for adapter in adapters:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return Encoder(make_bidirectional(model.eval()), load_tokenizer(tokenizer)).encode(TEXTS)


def _try(label: str, run, expected: np.ndarray | None, work: Path) -> None:
    try:
        vectors = run()
    except (ValueError, FileNotFoundError, TypeError) as exc:
        result = f"{type(exc).__name__}: {exc}"
    else:
        result = f"ok, {vectors.shape[0]} x {vectors.shape[1]}"
        if expected is not None:
            result += f", max abs diff vs manual peft merge {np.abs(vectors - expected).max():.2e}"
    print(f"| {label} | {result.replace(str(work), '<tmp>')} |", flush=True)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bivec-paths-"))
    base = ensure_default_model()
    print(f"real Hugging Face cache: {constants.HF_HUB_CACHE}\n\n| loading path | result |\n|---|---|")
    for name in PUBLISHED:
        _try(f"Encoder.from_pretrained({name!r})  (real published name, real cache)",
             lambda name=name: Encoder.from_pretrained(name).encode(TEXTS), None, work)
    cache = work / "hub"
    constants.HF_HUB_CACHE = str(cache)
    mntp = _adapter(base, work / "mntp", 1, BASE_NAME)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (base / name).is_file():
            shutil.copy(base / name, mntp / name)
    (mntp / "llm2vec_config.json").write_text(json.dumps({"pooling_mode": "mean", "max_length": 512,
                                                          "doc_max_length": 400, "skip_instruction": True}))
    simcse = _adapter(base, work / "simcse", 2, MNTP_NAME)
    supervised = _adapter(base, work / "supervised", 3, MNTP_NAME)
    _cache(cache, BASE_NAME, base)
    _cache(cache, MNTP_NAME, mntp)
    _cache(cache, MNTP_NAME + "-unsup-simcse", simcse)
    _cache(cache, MNTP_NAME + "-supervised", supervised)
    local_mntp = work / "mntp-local"
    shutil.copytree(mntp, local_mntp)
    cfg = local_mntp / "adapter_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "base_model_name_or_path": str(base)}))
    pickled = work / "pickled-base"
    shutil.copytree(base, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    no_weights = work / "no-weights"
    no_weights.mkdir()
    shutil.copy(simcse / "adapter_config.json", no_weights)
    elsewhere = work / "mntp-elsewhere"
    shutil.copytree(mntp, elsewhere)
    cfg = elsewhere / "adapter_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "base_model_name_or_path": "nobody/not-downloaded"}))

    plain = _manual(base, [], base)
    with_mntp = _manual(base, [mntp], mntp)
    with_simcse = _manual(base, [mntp, simcse], mntp)
    with_supervised = _manual(base, [mntp, supervised], mntp)
    print(f"adapters change the vectors: max abs diff base vs +MNTP {np.abs(with_mntp - plain).max():.2e}, "
          f"+MNTP vs +MNTP+SimCSE {np.abs(with_simcse - with_mntp).max():.2e}\n", flush=True)
    cases = [
        ("Encoder.from_pretrained()  (embedded default)", lambda: Encoder.from_pretrained().encode(TEXTS), plain),
        ("Encoder.from_pretrained(base dir)", lambda: Encoder.from_pretrained(base).encode(TEXTS), plain),
        ("Encoder.from_pretrained(mntp dir, adapter names local base)",
         lambda: Encoder.from_pretrained(local_mntp).encode(TEXTS), with_mntp),
        ("Encoder.from_pretrained(MNTP hub name, base hub name from HF cache)",
         lambda: Encoder.from_pretrained(MNTP_NAME).encode(TEXTS), with_mntp),
        ("Encoder.from_pretrained(MNTP name, adapters=[...-unsup-simcse name])",
         lambda: Encoder.from_pretrained(MNTP_NAME, adapters=[MNTP_NAME + "-unsup-simcse"]).encode(TEXTS), with_simcse),
        ("Encoder.from_pretrained(MNTP name, adapters=[...-supervised name])",
         lambda: Encoder.from_pretrained(MNTP_NAME, adapters=[MNTP_NAME + "-supervised"]).encode(TEXTS), with_supervised),
        ("Encoder.from_pretrained(base dir, adapters=[mntp dir, simcse dir])",
         lambda: Encoder.from_pretrained(base, adapters=[mntp, simcse]).encode(TEXTS), with_simcse),
        ("LLM2Vec.from_pretrained(MNTP name, ...-supervised name)",
         lambda: LLM2Vec.from_pretrained(MNTP_NAME, MNTP_NAME + "-supervised").encode(TEXTS, show_progress_bar=False).numpy(),
         with_supervised),
        ("LLM2Vec.from_pretrained(mntp dir, extra_model_name_or_path=[simcse dir])",
         lambda: LLM2Vec.from_pretrained(local_mntp, extra_model_name_or_path=[simcse]).encode(TEXTS, show_progress_bar=False).numpy(),
         with_simcse),
        ("Encoder.from_pretrained(pickle-only base)", lambda: Encoder.from_pretrained(pickled).encode(TEXTS), plain),
        ("Encoder.from_pretrained(pickle-only base, allow_pickle=True)",
         lambda: Encoder.from_pretrained(pickled, allow_pickle=True).encode(TEXTS), plain),
        ("Encoder.from_pretrained(base, adapters=[dir without adapter weights])",
         lambda: Encoder.from_pretrained(base, adapters=[no_weights]).encode(TEXTS), None),
        ("Encoder.from_pretrained(mntp dir naming a base not available locally)",
         lambda: Encoder.from_pretrained(elsewhere).encode(TEXTS), None),
    ]
    print("\nbuilt layout, in a temporary Hugging Face cache:\n\n| loading path | result |\n|---|---|")
    for label, run, expected in cases:
        _try(label, run, expected, work)
    _export(work, simcse)
    shutil.rmtree(work, ignore_errors=True)


def _export(work: Path, simcse: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from bivec.export.sentence_transformers import export_sentence_transformers

    encoder = Encoder.from_pretrained(MNTP_NAME, adapters=[MNTP_NAME + "-unsup-simcse"])
    out = export_sentence_transformers(encoder, work / "st")
    model = SentenceTransformer(str(out))
    texts = [t for t in TEXTS if isinstance(t, str)]
    for batch in (texts, texts[:1]):
        diff = np.abs(model.encode(batch) - encoder.encode(batch)).max()
        print(f"| SentenceTransformer(export of MNTP+SimCSE).encode({len(batch)} text(s)) | max abs diff vs bivec {diff:.2e} |")


if __name__ == "__main__":
    sys.exit(main())
