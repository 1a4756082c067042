"""bivec against the reference llm2vec 0.2.3, same machine, same texts, same weights.

Prints the CPU, the linear-layer limit per dtype (and its FLOP/s against a large square matrix
product's, the most this CPU's GEMM gives), speed per engine/dtype/corpus ("short":
sentences of evenly spaced STS12, STS13 and STS14 pairs; "long": WikiText-2 paragraphs cut at 512
tokens), peak RSS against the weights' size, and accuracy of every mode against bivec float32
(per-text cosine; Spearman on each STS file's pairs). bivec modes: ``auto`` (the default: the
dtype its accuracy check picks on this machine), float32, bfloat16 and int8 (:mod:`bivec.int8`:
per-token activations, with the leading float32 layers its check keeps; its limit is all-int8
linear layers); ``+compile`` adds ``compile=True`` (its one-off cost is in the load time); the
backends ``onnx`` (ONNX Runtime), ``openvino`` and ``onnx-int8`` (the model exported once; the
export and the backend's check are in the first round's load time). bfloat16 runs only where the
CPU has it natively (AVX512-BF16 or AMX; elsewhere it is emulated, many times slower than float32):
on other CPUs its modes and limits are skipped, and the benchmark says so. Each
engine and dtype runs in its own process so peak RSS is its own; loading's peak is reported apart
from encoding's. The reference runs in its own virtualenv (transformers 4.44), created on first use under
benchmarks/.reference (about 1 GB).

Times are the median of --repeats rounds; each round runs every engine and dtype once, in turn,
in a fresh process (one warm-up, then one timed pass per corpus, then the linear-layer limit of
the dtype used, measured there and then: a shared machine's speed drifts by 20% within minutes).
"% of limit" is the median of the rounds' speed / limit.

Usage: python benchmarks/encode_vs_reference.py [--short-pairs 200] [--long 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import SHARED_DATA, cpu_description, memory_mb, reset_peak_memory

HERE = Path(__file__).resolve().parent
REFERENCE = ["torch==2.13.0", "llm2vec==0.2.3", "transformers==4.44.2"]
REFERENCE_BATCH_SIZE = 32  # llm2vec's encode default


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


STS_FILES = ("sts12", "sts13", "sts14")


def corpora(short_pairs: int, long_paragraphs: int) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """Texts per corpus, and the gold scores of each STS file's pairs: the short corpus holds, per
    file in order, the first sentences of its pairs, then the second ones."""
    from bivec.evaluation import read_sts_file

    short, gold = [], {}
    for name in STS_FILES:
        scores, first, second = read_sts_file(SHARED_DATA / "sts" / f"{name}.tsv")
        step = max(1, len(scores) // short_pairs)
        picked = list(range(0, len(scores), step))[:short_pairs]
        gold[name] = [scores[i] for i in picked]
        short += [first[i] for i in picked] + [second[i] for i in picked]
    paragraphs = [
        line.strip() for line in (SHARED_DATA / "text" / "wikitext2_valid.txt").read_text().splitlines()
        if len(line.split()) > 60 and not line.strip().startswith("=")
    ]
    return {"short": short, "long": paragraphs[:long_paragraphs]}, gold


def sts_spearman(vectors: np.ndarray, gold: dict[str, list[float]]) -> dict[str, float]:
    from bivec.evaluation import pair_correlations

    out, start = {}, 0
    for name, scores in gold.items():
        n = len(scores)
        out[name] = pair_correlations(scores, vectors[start : start + n], vectors[start + n : start + 2 * n])[0]
        start += 2 * n
    return out


def linear_shapes(config) -> list[tuple[int, int]]:
    """(out, in) of every linear layer in the decoder stack: its 7 shapes x its layers."""
    h, i = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    return [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i)] * config.num_hidden_layers


def linear_flops_per_token(config) -> int:
    return 2 * sum(o * n for o, n in linear_shapes(config))


def large_matmul_flops(dtype: str, size: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of one square ``size``-sided matrix product, the best shape a CPU's GEMM has: what
    the hardware gives at most, to set the model-shaped limit against."""
    a, b = (torch.randn(size, size, dtype=getattr(torch, dtype)) for _ in range(2))
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * size**3 / (time.perf_counter() - start)


def linear_limit(config, dtype: str, tokens: int = 2048, repeats: int = 5) -> float:
    """Tokens/s of the model's linear layers alone (its 7 shapes x its layers, each layer with
    weights of its own, so they stream from memory as the real model's do) on one
    ``tokens``-row batch."""
    shapes = linear_shapes(config)
    if dtype == "int8":
        from bivec.int8 import Int8Linear

        layers = [Int8Linear.from_linear(torch.nn.Linear(n, o, bias=False)) for o, n in shapes]
        activations = torch.float32  # quantised per token inside the layer
    else:
        activations = getattr(torch, dtype)
        layers = [torch.nn.Linear(n, o, bias=False, dtype=activations) for o, n in shapes]
    x = {n: torch.randn(tokens, n, dtype=activations) for _, n in set(shapes)}
    times = []
    with torch.inference_mode():
        for repeat in range(repeats + 1):
            start = time.perf_counter()
            for (_, n), layer in zip(shapes, layers):
                layer(x[n])
            if repeat:  # the first pass warms up the kernels
                times.append(time.perf_counter() - start)
    return tokens / statistics.median(times)


def worker_limit(model: str, dtype: str) -> float:
    """The linear-layer limit of ``dtype``, measured in a child process so that its layers never
    count in the worker's peak RSS (freed memory stays in the worker's heap)."""
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from transformers import AutoConfig; "
            f"from encode_vs_reference import linear_limit; print(linear_limit(AutoConfig.from_pretrained({model!r}), {dtype!r}))")
    return float(run([sys.executable, "-c", code]).split()[-1])


def timed_corpora(encode, corpora: dict[str, list[str]], repeats: int, model: str, dtype: str) -> dict:
    """Per corpus: one warm-up, ``repeats`` timed encodes (median seconds), then the limit of
    ``dtype``, measured right after them: a shared machine's speed drifts by 20% within minutes,
    so each speed is set against the machine's speed of the same moment."""
    arrays, seconds, limits = {}, {}, {}
    for name, items in corpora.items():
        encode(items[:32])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            arrays[name] = encode(items)
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
        limits[name] = worker_limit(model, dtype)
    return {"arrays": arrays, "seconds": seconds, "limit": limits, "peak_rss_mb": memory_mb()}


def bivec_worker(model: str, dtype: str, corpora_file: str, out: str, repeats: int, batch_size: int) -> None:
    from bivec import Encoder

    base, _, option = dtype.partition("+")
    before_load = memory_mb("VmRSS")
    start = time.perf_counter()
    from bivec.backends import BACKENDS

    if base in BACKENDS:
        encoder = Encoder.from_pretrained(model, backend=base)
    else:
        encoder = Encoder.from_pretrained(model, dtype=base, compile=option == "compile")
    load_seconds = time.perf_counter() - start
    # Loading in a dtype other than the file's holds the file's pages and the converted weights
    # at once, for a moment: its peak is reported apart from the encoding's.
    load_peak = memory_mb()
    reset_peak_memory()
    texts = json.loads(Path(corpora_file).read_text())
    weights = sum(t.numel() * t.element_size() for t in (*encoder.model.parameters(), *encoder.model.buffers()))
    resolved = encoder.precision.dtype if encoder.precision else base
    if base in BACKENDS:  # the limit that a backend's arithmetic is held to
        resolved = "int8" if base == "onnx-int8" else "float32"
    backend = encoder.backend_choice.backend if encoder.backend_choice else None
    report = {"rss_before_load_mb": before_load, "weights_mb": weights / 2**20, "resolved": resolved, "backend": backend,
              "load_seconds": load_seconds, "load_peak_rss_mb": load_peak,
              "ids": {name: [[t for t, m in zip(x.input_ids, x.pooling_mask) if m] for x in encoder.tokenize(items)]
                      for name, items in texts.items()}}
    timed = timed_corpora(lambda items: encoder.encode(items, batch_size=batch_size), texts, repeats, model, resolved)
    arrays = timed.pop("arrays")
    report.update(timed)
    np.savez(out, **arrays)
    Path(out + ".json").write_text(json.dumps(report))


def run(command: list[str]) -> str:
    """Run ``command`` offline; its standard output, or exit with the end of its errors."""
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode:
        sys.exit(f"{' '.join(command[:3])} ... failed:\n{result.stderr[-3000:]}")
    return result.stdout


def corpus_tokens(report: dict, name: str) -> int:
    """Real tokens a worker encoded for corpus ``name`` (texts are cut at 512 tokens)."""
    return sum(min(len(ids), 512) for ids in report["ids"][name])


def merged(paths: list[str]) -> tuple[dict[str, np.ndarray], dict]:
    """One engine and dtype over the rounds: median time, limit and load time, the median of
    the rounds' fractions of the limit (each round's speed over the limit measured right after
    it), highest peaks, the first round's vectors."""
    reports = [json.loads(Path(path + ".json").read_text()) for path in paths]
    report = dict(reports[0])
    for key in ("seconds", "limit"):
        report[key] = {name: statistics.median(r[key][name] for r in reports) for name in report[key]}
    report["fraction_of_limit"] = {
        name: statistics.median(corpus_tokens(r, name) / r["seconds"][name] / r["limit"][name] for r in reports)
        for name in report["seconds"]
    }
    if "load_seconds" in report:
        report["load_seconds"] = statistics.median(r["load_seconds"] for r in reports)
    for key in ("peak_rss_mb", "load_peak_rss_mb"):
        if key in report:
            report[key] = max(r[key] for r in reports)
    return dict(np.load(paths[0])), report


def _label(mode: str, report: dict) -> str:
    """The mode as asked, and what it resolved to where that differs (auto's dtype; a backend that
    failed its check and left torch)."""
    if mode == "auto":
        return f"auto -> {report['resolved']}"
    backend = report.get("backend")
    return f"{mode} -> {backend}" if backend and backend != mode else mode


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> None:
    # Imported here: the reference's worker, in a virtualenv without bivec, imports this module.
    from bivec.encoder import DEFAULT_BATCH_SIZE

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short-pairs", type=int, default=200, help="pairs per STS file (2 sentences each)")
    parser.add_argument("--long", type=int, default=60, help="WikiText-2 paragraphs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="texts per forward pass for both engines (default: each "
                        f"engine's own, bivec {DEFAULT_BATCH_SIZE} and llm2vec {REFERENCE_BATCH_SIZE})")
    parser.add_argument("--bivec-dtypes", default="auto,float32,float32+compile,bfloat16,bfloat16+compile,int8,"
                        "onnx,openvino,onnx-int8", help="bivec modes: dtypes (+compile) and backends")
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

    from transformers import AutoConfig

    from bivec.precision import bf16_supported

    sys.stdout.reconfigure(line_buffering=True)  # each line as it comes, also into a pipe or a file
    print(f"CPU: {cpu_description()}")
    native = ("float32", "bfloat16") if bf16_supported() else ("float32",)
    if "bfloat16" not in native:
        print("bfloat16: skipped (not native on this CPU, no AVX512-BF16 or AMX: emulated, many times slower than float32)")
        args.bivec_dtypes = ",".join(d for d in args.bivec_dtypes.split(",") if not d.startswith("bfloat16"))
        args.reference_dtypes = ",".join(d for d in args.reference_dtypes.split(",") if d != "bfloat16")
    config = AutoConfig.from_pretrained(model_dir)
    limits = {d: linear_limit(config, d) for d in (*native, "int8")}
    flops = linear_flops_per_token(config)
    print("linear-layer limit (tokens/s, 2,048-token batch): " + ", ".join(f"{d} {v:.0f}" for d, v in limits.items()))
    for d in native:
        rate, square = limits[d] * flops, large_matmul_flops(d)
        print(f"{d}: the limit is {rate / 1e9:.0f} GFLOP/s ({flops / 1e6:.0f} MFLOP per token), "
              f"{rate / square:.0%} of a 4096x4096x4096 product's {square / 1e9:.0f} GFLOP/s")
    texts, gold = corpora(args.short_pairs, args.long)
    work = Path(tempfile.mkdtemp(prefix="bivec-bench-"))
    corpora_file = work / "corpora.json"
    corpora_file.write_text(json.dumps(texts))
    batch = {"bivec": args.batch_size or DEFAULT_BATCH_SIZE, "llm2vec": args.batch_size or REFERENCE_BATCH_SIZE}
    print(f"texts per forward pass at most: bivec {batch['bivec']}, llm2vec {batch['llm2vec']}")
    jobs = {("bivec", d): [sys.executable, __file__, "--worker", d] for d in args.bivec_dtypes.split(",") if d}
    ref_dtypes = [d for d in args.reference_dtypes.split(",") if d]
    if ref_dtypes:
        python = reference_python(args.reference_venv)
        ref_model = reference_model_dir(model_dir, args.reference_venv / "model")
        jobs.update({("llm2vec 0.2.3", d): [str(python), str(HERE / "_llm2vec_worker.py"), str(ref_model), d] for d in ref_dtypes})
    # Rounds that each run every engine and dtype once, in turn, so that a slow spell of a shared
    # machine falls on all of them rather than on one.
    results: dict[tuple[str, str], list[str]] = {key: [] for key in jobs}
    for round_ in range(args.repeats):
        for (engine, dtype), command in jobs.items():
            package = engine.split()[0]
            out = str(work / f"{package}-{dtype}-{round_}.npz")
            run([*command, str(corpora_file), out, "1", str(batch[package])])
            results[(engine, dtype)].append(out)

    loaded = {key: merged(paths) for key, paths in results.items()}
    print()
    print("| engine | dtype | corpus | texts | tokens | s (median) | texts/s | tokens/s | limit tokens/s | % of limit | peak RSS MB: encoding (loading) | weights MB | load s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    speed = {}
    for (engine, dtype), (arrays, report) in loaded.items():
        label = _label(dtype, report)
        for name in texts:
            tokens = corpus_tokens(report, name)
            seconds = report["seconds"][name]
            speed[(engine, dtype, name)] = tokens / seconds
            weights = f"{report['weights_mb']:.0f}" if "weights_mb" in report else ""
            load = f"{report['load_seconds']:.1f}" if "load_seconds" in report else ""
            peak = f"{report['peak_rss_mb']:.0f}" + (f" ({report['load_peak_rss_mb']:.0f})" if "load_peak_rss_mb" in report else "")
            print(f"| {engine} | {label} | {name} | {len(texts[name])} | {tokens} | {seconds:.2f} | "
                  f"{len(texts[name]) / seconds:.1f} | {tokens / seconds:.0f} | {report['limit'][name]:.0f} | "
                  f"{report['fraction_of_limit'][name]:.0%} | "
                  f"{peak} | {weights} | {load} |")
    print()
    for name in texts:
        for engine, mode, corpus in speed:
            # A backend is set against the reference in float32, the arithmetic it keeps.
            ref_mode = mode.partition("+")[0] if mode.partition("+")[0] in ref_dtypes else "float32"
            if engine == "bivec" and corpus == name and ref_mode in ref_dtypes:
                reference = speed[("llm2vec 0.2.3", ref_mode, name)]
                print(f"{name}: bivec {mode} / reference {ref_mode}: {speed[('bivec', mode, name)] / reference:.2f}x")
        if ref_dtypes and ("bivec", "auto", name) in speed:
            fastest = max(speed[("llm2vec 0.2.3", d, name)] for d in ref_dtypes)
            print(f"{name}: bivec default (auto) / reference's fastest: {speed[('bivec', 'auto', name)] / fastest:.2f}x")
    for (engine, dtype), (_, report) in loaded.items():
        if "weights_mb" in report:
            print(f"bivec {dtype}: peak RSS while encoding {report['peak_rss_mb']:.0f} MB = {report['rss_before_load_mb']:.0f} MB before "
                  f"loading (Python, torch, transformers) + {report['weights_mb']:.0f} MB weights + "
                  f"{report['peak_rss_mb'] - report['rss_before_load_mb'] - report['weights_mb']:.0f} MB for everything else")

    if ("bivec", "float32") not in loaded:
        return
    base, base_report = loaded[("bivec", "float32")]
    base_rho = sts_spearman(base["short"], gold)
    print()
    print("accuracy against bivec float32: per-text cosine, and Spearman x100 on each STS file's pairs (short corpus)")
    print("| engine | dtype | corpus | min cos | 1st pct cos | share >= 0.99 | share >= 0.999 | " +
          " | ".join(f"{n} (vs fp32)" for n in STS_FILES) + " |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(STS_FILES))
    for (engine, dtype), (arrays, report) in loaded.items():
        label = _label(dtype, report)
        for name in texts:
            cos = cosine(arrays[name], base[name])
            line = (f"| {engine} | {label} | {name} | {cos.min():.5f} | {np.percentile(cos, 1):.5f} | "
                    f"{100 * (cos >= 0.99).mean():.1f}% | {100 * (cos >= 0.999).mean():.1f}% |")
            if name == "short":
                rho = sts_spearman(arrays[name], gold)
                line += "".join(f" {rho[n]:.2f} ({rho[n] - base_rho[n]:+.2f}) |" for n in STS_FILES)
            else:
                line += " |" * len(STS_FILES)
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
