"""int8 on texts its check never saw: the benchmark's corpora (1,200 STS sentences, 60 WikiText-2
paragraphs), encoded by one model in torch float32, OpenVINO float32 (exact) and bivec int8 (with
the leading float32 layers its check keeps), in one process and one run: per-text cosine to float32
and tokens/s (median of --repeats timed passes after a warm-up).

Usage: python benchmarks/int8_heldout.py [--model bivec/default] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import cpu_description, print_table
from encode_vs_reference import corpora

from bivec import Encoder


def timed(encoder: Encoder, texts: list[str], repeats: int) -> tuple[np.ndarray, float]:
    encoder.encode(texts[:64], normalize=True)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        vectors = encoder.encode(texts, normalize=True)
        seconds.append(time.perf_counter() - start)
    return vectors, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bivec/default")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", flush=True)
    texts, _ = corpora(200, 60)
    modes = {"torch float32": {"dtype": "float32"}, "openvino float32": {"backend": "openvino"}, "int8": {"dtype": "int8"}}
    encoders = {name: Encoder.from_pretrained(args.model, **options) for name, options in modes.items()}
    int8 = encoders["int8"].precision
    print(f"int8: {int8.describe()}", flush=True)
    rows = []
    for corpus, items in texts.items():
        tokens = sum(sum(t.pooling_mask) for t in encoders["torch float32"].tokenize(items))
        results = {name: timed(encoder, items, args.repeats) for name, encoder in encoders.items()}
        reference = results["torch float32"][0]
        for name, (vectors, seconds) in results.items():
            cosines = np.sum(vectors * reference, axis=1)
            rows.append([name, corpus, len(items), f"{tokens / seconds:.0f}",
                         f"{results['openvino float32'][1] / seconds:.2f}x", f"{cosines.min():.4f}",
                         f"{100 * np.mean(cosines >= 0.99):.1f}%"])
            print(rows[-1], flush=True)
    print_table(["mode", "corpus", "texts", "tokens/s", "vs openvino", "min cos to fp32", "texts at cos >= 0.99"], rows)


if __name__ == "__main__":
    main()
