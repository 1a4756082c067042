"""bivec against the reference llm2vec 0.2.3, same machine, same texts, same weights.

Prints the CPU, the linear-layer limit per dtype, speed per engine/dtype/corpus ("short": STS12
sentences, "long": WikiText-2 paragraphs cut at 512 tokens), peak RSS, and accuracy of every mode
against bivec fp32 (per-text cosine; STS12 Spearman). Each engine and dtype runs in its own
process so peak RSS is its own. The reference runs in its own virtualenv (transformers 4.44),
created on first use under benchmarks/.reference (about 1 GB).

Usage: python benchmarks/encode_vs_reference.py [--short-pairs 600] [--long 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import SHARED_DATA, cpu_description

HERE = Path(__file__).resolve().parent
REFERENCE = ["torch==2.13.0", "llm2vec==0.2.3", "transformers==4.44.2"]


def reference_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating the reference virtualenv in {venv} ({' '.join(REFERENCE)})...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", REFERENCE[0]], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REFERENCE[1:]], check=True)
    return python


def reference_model_dir(source: Path, target: Path) -> Path:
    """A copy of ``source`` that transformers 4.44 reads correctly: it ignores `rope_parameters`
    (silently using theta 10,000) and old `tokenizers` cannot read merges stored as pairs."""
    target.mkdir(parents=True, exist_ok=True)
    config = json.loads((source / "config.json").read_text())
    config["rope_theta"] = config.get("rope_parameters", {}).get("rope_theta", config.get("rope_theta"))
    config["torch_dtype"] = config.get("dtype", "float32")
    (target / "config.json").write_text(json.dumps(config, indent=1))
    tokenizer = json.loads((source / "tokenizer.json").read_text())
    tokenizer["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in tokenizer["model"]["merges"]]
    tokenizer["model"].pop("ignore_merges", None)
    (target / "tokenizer.json").write_text(json.dumps(tokenizer))
    tok_config = json.loads((source / "tokenizer_config.json").read_text())
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_config["model_input_names"] = ["input_ids", "attention_mask"]
    (target / "tokenizer_config.json").write_text(json.dumps(tok_config))
    weights = target / "model.safetensors"
    if not weights.exists():
        weights.symlink_to(source / "model.safetensors")
    return target


def corpora(short_pairs: int, long_paragraphs: int) -> tuple[dict[str, list[str]], list[float]]:
    from bivec.evaluation import read_sts_file

    gold, first, second = read_sts_file(SHARED_DATA / "sts" / "sts12.tsv")
    paragraphs = [
        line.strip() for line in (SHARED_DATA / "text" / "wikitext2_valid.txt").read_text().splitlines()
        if len(line.split()) > 60 and not line.strip().startswith("=")
    ]
    short = first[:short_pairs] + second[:short_pairs]
    return {"short": short, "long": paragraphs[:long_paragraphs]}, gold[:short_pairs]


def linear_limit(config, dtype: torch.dtype, tokens: int = 2048, repeats: int = 3) -> float:
    """Tokens/s of the model's linear layers alone (7 shapes x layers) on one `tokens`-row batch."""
    h, i = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    shapes = [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i)]
    weights = [torch.randn(o, n, dtype=dtype) for o, n in shapes]
    x = {n: torch.randn(tokens, n, dtype=dtype) for n in (h, i)}
    times = []
    with torch.inference_mode():
        for repeat in range(repeats + 1):
            start = time.perf_counter()
            for _ in range(config.num_hidden_layers):
                for w in weights:
                    torch.nn.functional.linear(x[w.shape[1]], w)
            if repeat:  # the first pass warms up the kernels
                times.append(time.perf_counter() - start)
    return tokens / statistics.median(times)


def bivec_worker(model: str, dtype: str, corpora_file: str, out: str, repeats: int, batch_size: int) -> None:
    from bivec import Encoder

    encoder = Encoder.from_pretrained(model, dtype=dtype)
    texts = json.loads(Path(corpora_file).read_text())
    arrays, report = {}, {"tokens": {}, "seconds": {}, "ids": {}}
    for name, items in texts.items():
        report["ids"][name] = [[t for t, m in zip(x.input_ids, x.pooling_mask) if m] for x in encoder.tokenize(items)]
        encoder.encode(items[:32], batch_size=batch_size)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            arrays[name] = encoder.encode(items, batch_size=batch_size)
            times.append(time.perf_counter() - start)
        report["seconds"][name] = statistics.median(times)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.savez(out, **arrays)
    Path(out + ".json").write_text(json.dumps(report))


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode:
        sys.exit(f"{' '.join(command[:3])} ... failed:\n{result.stderr[-3000:]}")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short-pairs", type=int, default=600, help="STS12 pairs (2 sentences each)")
    parser.add_argument("--long", type=int, default=60, help="WikiText-2 paragraphs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bivec-dtypes", default="float32,bfloat16")
    parser.add_argument("--reference-dtypes", default="float32,bfloat16")
    parser.add_argument("--reference-venv", type=Path, default=HERE / ".reference")
    parser.add_argument("--worker", nargs=5, metavar=("DTYPE", "CORPORA", "OUT", "REPEATS", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    from bivec.models import ensure_default_model

    model_dir = ensure_default_model()
    if args.worker:
        dtype, corpora_file, out, repeats, batch = args.worker
        bivec_worker(str(model_dir), dtype, corpora_file, out, int(repeats), int(batch))
        return

    from scipy.stats import spearmanr
    from transformers import AutoConfig

    print(f"CPU: {cpu_description()}")
    config = AutoConfig.from_pretrained(model_dir)
    limits = {d: linear_limit(config, getattr(torch, d)) for d in ("float32", "bfloat16")}
    print("linear-layer limit (tokens/s, 2,048-token batch): " + ", ".join(f"{d} {v:.0f}" for d, v in limits.items()))
    texts, gold = corpora(args.short_pairs, args.long)
    work = Path(tempfile.mkdtemp(prefix="bivec-bench-"))
    corpora_file = work / "corpora.json"
    corpora_file.write_text(json.dumps(texts))
    results = {}
    for dtype in filter(None, args.bivec_dtypes.split(",")):
        out = str(work / f"bivec-{dtype}.npz")
        run([sys.executable, __file__, "--worker", dtype, str(corpora_file), out, str(args.repeats), str(args.batch_size)])
        results[("bivec", dtype)] = out
    ref_dtypes = [d for d in args.reference_dtypes.split(",") if d]
    if ref_dtypes:
        python = reference_python(args.reference_venv)
        ref_model = reference_model_dir(model_dir, args.reference_venv / "model")
        for dtype in ref_dtypes:
            out = str(work / f"reference-{dtype}.npz")
            run([str(python), str(HERE / "_llm2vec_worker.py"), str(ref_model), dtype, str(corpora_file), out,
                 str(args.repeats), str(args.batch_size)])
            results[("llm2vec 0.2.3", dtype)] = out

    loaded = {key: (np.load(path), json.loads(Path(path + ".json").read_text())) for key, path in results.items()}
    print()
    print("| engine | dtype | corpus | texts | tokens | s (median) | texts/s | tokens/s | % of limit | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    speed = {}
    for (engine, dtype), (arrays, report) in loaded.items():
        for name in texts:
            tokens = sum(min(len(ids), 512) for ids in report["ids"][name])
            seconds = report["seconds"][name]
            speed[(engine, dtype, name)] = tokens / seconds
            print(f"| {engine} | {dtype} | {name} | {len(texts[name])} | {tokens} | {seconds:.2f} | "
                  f"{len(texts[name]) / seconds:.1f} | {tokens / seconds:.0f} | {100 * tokens / seconds / limits[dtype]:.0f}% | "
                  f"{report['peak_rss_mb']:.0f} |")
    print()
    for name in texts:
        for dtype in ref_dtypes:
            if ("bivec", dtype, name) in speed:
                print(f"{name}: bivec / reference, {dtype}: {speed[('bivec', dtype, name)] / speed[('llm2vec 0.2.3', dtype, name)]:.2f}x")
        if ref_dtypes and ("bivec", "float32", name) in speed:
            fastest = max(speed[("llm2vec 0.2.3", d, name)] for d in ref_dtypes)
            print(f"{name}: bivec float32 (default on CPU) / reference's fastest: {speed[('bivec', 'float32', name)] / fastest:.2f}x")

    if ("bivec", "float32") not in loaded:
        return
    base, base_report = loaded[("bivec", "float32")]
    n = len(gold)
    print()
    print("accuracy against bivec float32: per-text cosine, and STS12 Spearman x100 on the short corpus's pairs")
    print("| engine | dtype | corpus | min cos | 1st pct cos | share >= 0.999 | STS12 Spearman | vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    fp32_spearman = 100 * spearmanr(gold, cosine(base["short"][:n], base["short"][n:])).statistic
    for (engine, dtype), (arrays, _) in loaded.items():
        for name in texts:
            cos = cosine(arrays[name], base[name])
            line = f"| {engine} | {dtype} | {name} | {cos.min():.5f} | {np.percentile(cos, 1):.5f} | {100 * (cos >= 0.999).mean():.1f}% |"
            if name == "short":
                rho = 100 * spearmanr(gold, cosine(arrays[name][:n], arrays[name][n:])).statistic
                line += f" {rho:.2f} | {rho - fp32_spearman:+.2f} |"
            else:
                line += " | |"
            print(line)
    if ("llm2vec 0.2.3", "float32") in loaded:
        ref, ref_report = loaded[("llm2vec 0.2.3", "float32")]
        print()
        for name in texts:
            same = np.array([a == b for a, b in zip(base_report["ids"][name], ref_report["ids"][name])])
            cos = cosine(base[name], ref[name])[same]
            print(f"{name}: bivec fp32 vs reference fp32 on {same.sum()}/{len(same)} texts with identical token ids: "
                  f"min cosine {cos.min():.7f} ({'PASS' if cos.min() >= 0.9999 else 'FAIL'} at >= 0.9999)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
