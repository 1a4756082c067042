"""Spearman x100 on STS files for causal vs bidirectional mean pooling (no training).

Usage: python benchmarks/sts_causal_vs_bidirectional.py [--model DIR] [--data ../shared/data/sts]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bivec import Encoder
from bivec.evaluation import evaluate_sts

FILES = ["sts12.tsv", "sts13.tsv", "sts14.tsv", "sick_trial.tsv"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/sts"))
    parser.add_argument("--pooling", default="mean")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    rows = []
    for mode, bidirectional in (("causal", False), ("bidirectional", True)):
        encoder = Encoder.from_pretrained(args.model, bidirectional=bidirectional, pooling=args.pooling, dtype=args.dtype)
        for name in FILES:
            start = time.perf_counter()
            result = evaluate_sts(encoder, Path(args.data) / name)
            rows.append((mode, result, time.perf_counter() - start))
            print(f"{mode:>13} {result.name:>10} spearman {result.spearman:6.2f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    print()
    print("| attention | " + " | ".join(n.removesuffix(".tsv") for n in FILES) + " | average | wall s |")
    print("|---|" + "---|" * (len(FILES) + 2))
    for mode in ("causal", "bidirectional"):
        mine = [(r, t) for m, r, t in rows if m == mode]
        avg = sum(r.spearman for r, _ in mine) / len(mine)
        print(f"| {mode} | " + " | ".join(f"{r.spearman:.2f}" for r, _ in mine) + f" | {avg:.2f} | {sum(t for _, t in mine):.0f} |")


if __name__ == "__main__":
    main()
