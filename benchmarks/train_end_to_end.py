"""End to end LLM2Vec on the default model: MNTP on WikiText-2, SimCSE on SICK train sentences
(or WikiText sentences), then Spearman x100 on STS for causal, bidirectional, Bi+MNTP and
Bi+MNTP+SimCSE (all mean pooling, evaluated in float32).

Usage: python benchmarks/train_end_to_end.py [--out results/e2e] [--pairs 0] [--mntp-steps 250] ...
``--pairs N`` evaluates N evenly spaced pairs per STS file (0: all pairs).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from bivec import Encoder, LLM2Vec
from bivec.evaluation import evaluate_sts
from bivec.models import ensure_default_model
from bivec.training import MNTPConfig, SimCSEConfig, train_mntp, train_simcse
from bivec.training.data import read_contrastive

DATA = Path(__file__).resolve().parents[2] / "shared/data"
FILES = ["sts12.tsv", "sts13.tsv", "sts14.tsv", "sick_trial.tsv"]


def wiki_sentences(path: Path, min_words: int = 6, max_words: int = 40) -> list[str]:
    """Sentences of WikiText's tokenised paragraphs, its @-@ style escapes undone."""
    seen, out = set(), []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.strip().startswith("="):
            continue
        text = re.sub(r" @(.)@ ", r"\1", line.strip())
        for sentence in re.split(r"(?<= \.) ", text):
            if min_words <= len(sentence.split()) <= max_words and sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
    return out


def sick_sentences(path: Path) -> list[str]:
    """The distinct sentences of the SICK train pairs (queries and positives)."""
    rows = read_contrastive([path])
    return list(dict.fromkeys(text for row in rows for text in (row.query, row.positive)))


def sts_subsets(out: Path, pairs: int) -> list[Path]:
    if not pairs:
        return [DATA / "sts" / name for name in FILES]
    paths = []
    for name in FILES:
        lines = (DATA / "sts" / name).read_text(encoding="utf-8").splitlines()
        step = max(1, len(lines) // pairs)
        target = out / f"subset-{name}"
        target.write_text("\n".join(lines[::step][:pairs]) + "\n", encoding="utf-8")
        paths.append(target)
    return paths


def evaluate(label: str, encoder: Encoder, files: list[Path], results: dict) -> None:
    start = time.perf_counter()
    scores = {}
    for path in files:
        result = evaluate_sts(encoder, path, batch_size=64)
        scores[path.stem.removeprefix("subset-")] = (round(result.spearman, 2), result.pairs)
        print(f"{label:>22} {path.stem:>18} spearman {result.spearman:6.2f}", flush=True)
    results["eval"][label] = {"scores": scores, "wall_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/e2e")
    parser.add_argument("--pairs", type=int, default=0)
    parser.add_argument("--mntp-steps", type=int, default=250)
    parser.add_argument("--mntp-batch", type=int, default=8)
    parser.add_argument("--mntp-length", type=int, default=128)
    parser.add_argument("--mntp-lr", type=float, default=2e-4)
    parser.add_argument("--simcse-data", choices=["sick", "wiki"], default="sick")
    parser.add_argument("--simcse-steps", type=int, default=200)
    parser.add_argument("--simcse-batch", type=int, default=64)
    parser.add_argument("--simcse-chunk", type=int, default=32, help="texts per forward pass (GradCache)")
    parser.add_argument("--simcse-length", type=int, default=64)
    parser.add_argument("--simcse-lr", type=float, default=3e-4)
    parser.add_argument("--simcse-dropout", type=float, default=0.3)
    parser.add_argument("--simcse-lora-dropout", type=float, default=0.0,
                        help="attention dropout already makes the two views differ")
    parser.add_argument("--precision", default="auto", help="training precision: auto (bf16 where native), bf16, fp32")
    parser.add_argument("--skip", nargs="*", default=[], help="evaluations to skip: causal bidirectional mntp")
    parser.add_argument("--reuse-mntp", action="store_true", help="keep a finished MNTP run in OUT/mntp")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = ensure_default_model()
    files = sts_subsets(out, args.pairs)
    results: dict = {"args": vars(args), "eval": {}, "stages": {}}
    if "causal" not in args.skip:
        evaluate("causal", Encoder.from_pretrained(base, bidirectional=False, dtype="float32"), files, results)
    if "bidirectional" not in args.skip:
        evaluate("bidirectional", Encoder.from_pretrained(base, dtype="float32"), files, results)

    mntp_dir, simcse_dir = out / "mntp", out / "simcse"
    if args.reuse_mntp and (mntp_dir / "adapter_model.safetensors").is_file():
        results["stages"]["mntp"] = json.loads((mntp_dir / "training_log.json").read_text())
    else:
        results["stages"]["mntp"] = train_mntp(MNTPConfig(
            data=[DATA / "text/wikitext2_valid.txt"], model=base, output_dir=mntp_dir, steps=args.mntp_steps,
            batch_size=args.mntp_batch, max_length=args.mntp_length, learning_rate=args.mntp_lr,
            precision=args.precision, save_steps=50))
    if "mntp" not in args.skip:
        evaluate("Bi+MNTP", LLM2Vec.from_pretrained(base, mntp_dir, torch_dtype="float32").encoder, files, results)

    sentences = out / f"{args.simcse_data}_sentences.txt"
    texts = (sick_sentences(DATA / "nli/sick_train_triplets.jsonl") if args.simcse_data == "sick"
             else wiki_sentences(DATA / "text/wikitext2_valid.txt"))
    sentences.write_text("\n".join(texts) + "\n", encoding="utf-8")
    results["stages"]["simcse"] = train_simcse(SimCSEConfig(
        data=[sentences], model=base, adapters=[mntp_dir], output_dir=simcse_dir, steps=args.simcse_steps,
        batch_size=args.simcse_batch, chunk_size=args.simcse_chunk, max_length=args.simcse_length,
        learning_rate=args.simcse_lr, dropout=args.simcse_dropout, lora_dropout=args.simcse_lora_dropout,
        precision=args.precision, save_steps=50))
    evaluate("Bi+MNTP+SimCSE", LLM2Vec.from_pretrained(base, mntp_dir, extra_model_name_or_path=simcse_dir,
                                                        torch_dtype="float32").encoder, files, results)
    for log in results["stages"].values():
        log.pop("history", None)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    names = [f.removesuffix(".tsv") for f in FILES]
    print("\n| model | " + " | ".join(names) + " | average |")
    print("|---|" + "---|" * (len(names) + 1))
    for label, entry in results["eval"].items():
        values = [entry["scores"][n][0] for n in names]
        print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {sum(values) / len(values):.2f} |")
    print("\n| stage | steps | batch | max len | lr | precision | wall s | tokens | tokens/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for stage, log in results["stages"].items():
        lr = args.mntp_lr if stage == "mntp" else args.simcse_lr
        length = args.mntp_length if stage == "mntp" else args.simcse_length
        print(f"| {stage} | {log['steps']} | {log['batch_size']} | {length} | {lr:g} | {log['mixed_precision']} | {log['wall_s']:.0f} | "
              f"{log['tokens']} | {log['tokens_per_s']:.1f} |")
    print("pairs per STS file:", {n: results["eval"][next(iter(results["eval"]))]["scores"][n][1] for n in names})


if __name__ == "__main__":
    main()
