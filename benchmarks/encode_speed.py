"""Encoding speed of the default model (or --model) per dtype: sentences/s and tokens/s.

Texts: both sentences of the first --rows rows of ../shared/data/sts/sts13.tsv (2,372 sentences
by default). Tokens/s counts real tokens only (no padding). Median of --repeats runs.

Usage: python benchmarks/encode_speed.py [--model DIR] [--dtypes float32,bfloat16]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import SHARED_DATA, cpu_description, print_table

from bivec import Encoder
from bivec.evaluation import read_sts_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", default=str(SHARED_DATA / "sts/sts13.tsv"))
    parser.add_argument("--rows", type=int, default=1186)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _, first, second = read_sts_file(args.data)
    texts = first[: args.rows] + second[: args.rows]
    print(f"CPU: {cpu_description()}")
    rows = []
    for dtype in args.dtypes.split(","):
        encoder = Encoder.from_pretrained(args.model, dtype=dtype)
        tokens = sum(sum(t.pooling_mask) for t in encoder.tokenize(texts))
        encoder.encode(texts[:64], batch_size=args.batch_size)  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            encoder.encode(texts, batch_size=args.batch_size)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        rows.append((dtype, len(texts), tokens, seconds))
    print()
    print_table(["dtype", "sentences", "tokens", "seconds (median)", "sentences/s", "tokens/s"],
                [[dtype, n, tokens, f"{seconds:.1f}", f"{n / seconds:.1f}", f"{tokens / seconds:.0f}"]
                 for dtype, n, tokens, seconds in rows])


if __name__ == "__main__":
    main()
