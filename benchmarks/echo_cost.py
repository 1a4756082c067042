"""What echo embeddings cost at encoding time: the shipped default with and without echo.

Echo gives the model each text twice and pools the second copy, so it runs about twice the
tokens. Same texts as benchmarks/encode_vs_reference.py ("short": sentences of evenly spaced
STS12-14 pairs; "long": WikiText-2 paragraphs), per dtype. Texts/s counts the caller's texts, so
the ratio is what a user waits; median of --repeats runs after a warm-up, echo and single copies
alternating within each repeat so that a shared machine's drift hits both. Also prints the STS
Spearman of the short corpus's pairs, to show what the time buys.

Usage: python benchmarks/echo_cost.py [--dtypes float32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import cpu_description, print_table
from encode_vs_reference import corpora, sts_spearman

from bivec import Encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--short-pairs", type=int, default=200)
    parser.add_argument("--long", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts, gold = corpora(args.short_pairs, args.long)
    print(f"CPU: {cpu_description()}", flush=True)
    rows = []
    for dtype in args.dtypes.split(","):
        encoders = {echo: Encoder.from_pretrained(dtype=dtype, echo=echo) for echo in (False, True)}
        for corpus, items in texts.items():
            seconds: dict[bool, list[float]] = {False: [], True: []}
            vectors = {echo: encoder.encode(items) for echo, encoder in encoders.items()}  # warm-up
            for _ in range(args.repeats):
                for echo, encoder in encoders.items():
                    start = time.perf_counter()
                    encoder.encode(items)
                    seconds[echo].append(time.perf_counter() - start)
            speed = {echo: len(items) / statistics.median(s) for echo, s in seconds.items()}
            for echo in (False, True):
                sts = statistics.mean(sts_spearman(vectors[echo], gold).values()) if corpus == "short" else None
                rows.append([dtype, corpus, "echo" if echo else "single copy", f"{speed[echo]:.1f}",
                             f"{speed[echo] / speed[False]:.2f}x", "-" if sts is None else f"{sts:.2f}"])
    print_table(["dtype", "corpus", "reading", "texts/s", "vs single copy", "STS Spearman (short pairs)"], rows)


if __name__ == "__main__":
    main()
