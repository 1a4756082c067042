"""What each of bivec's encoding optimisations contributes, added one at a time.

Same texts as benchmarks/encode_vs_reference.py ("short": sentences of evenly spaced STS12-14
pairs; "long": WikiText-2 paragraphs), the default model, per dtype. The steps, each keeping the
ones before it:

1. llm2vec-style batching: chunks of 32 texts (llm2vec's default) sorted by characters, left
   padding, eager (Python) attention, no token budget;
2. bivec's batching without a token budget: texts sorted by token count, cut where padding
   costs least;
3. SDPA attention instead of eager;
4. the CPU's padded-token budget per forward pass (2,048; bivec's default);
5. up to bivec's default number of texts per pass (128) instead of 32;
6. ``compile=True`` (regional torch.compile; its one-off cost is printed apart).

Tokens/s counts real tokens only; median of --repeats runs after a warm-up. Every step runs with
freed memory kept in the process (set when an encoder loads): its gain depends on the process's
history, so benchmarks/encode_allocator.py measures it apart, in fresh processes.

Usage: python benchmarks/encode_ablation.py [--dtypes float32,bfloat16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _common import cpu_description, print_table
from encode_vs_reference import corpora

from bivec import Encoder
from bivec.attention import last_hidden_state
from bivec.encoder import DEFAULT_BATCH_SIZE
from bivec.pooling import pool

UNLIMITED = 1 << 30
LLM2VEC_BATCH_SIZE = 32


def llm2vec_style(encoder: Encoder, texts: list[str], batch_size: int) -> np.ndarray:
    """One forward pass per chunk of ``batch_size`` texts sorted by characters, as llm2vec does
    (``encode`` would cut each chunk again by token count)."""
    tokenized = encoder.tokenize(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, attention, pooling_mask = encoder.collate([tokenized[i] for i in chunk])
            hidden = last_hidden_state(encoder.model, ids, attention)
            out[chunk] = pool(hidden, pooling_mask, encoder.pooling).float().numpy()
    return out


def timed(run, repeats: int) -> tuple[float, np.ndarray]:
    vectors = run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--short-pairs", type=int, default=200)
    parser.add_argument("--long", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts, _ = corpora(args.short_pairs, args.long)
    print(f"CPU: {cpu_description()}")
    rows = []
    for dtype in args.dtypes.split(","):
        eager = Encoder.from_pretrained(dtype=dtype, attn_implementation="eager")
        eager.padding_side = "left"
        sdpa = Encoder.from_pretrained(dtype=dtype)
        steps = [
            ("1 llm2vec-style batches, eager attention", lambda t: llm2vec_style(eager, t, LLM2VEC_BATCH_SIZE)),
            ("2 + sorted by tokens", lambda t: eager.encode(t, batch_size=LLM2VEC_BATCH_SIZE, max_batch_tokens=UNLIMITED)),
            ("3 + SDPA", lambda t: sdpa.encode(t, batch_size=LLM2VEC_BATCH_SIZE, max_batch_tokens=UNLIMITED)),
            ("4 + token budget", lambda t: sdpa.encode(t, batch_size=LLM2VEC_BATCH_SIZE)),
            (f"5 + up to {DEFAULT_BATCH_SIZE} texts per pass", lambda t: sdpa.encode(t)),
            ("6 + compile", lambda t: sdpa.encode(t)),
        ]
        reference, previous = {}, {}
        for label, run in steps:
            if label.startswith("6"):
                start = time.perf_counter()
                sdpa.compile()
                print(f"{dtype}: compile took {time.perf_counter() - start:.1f} s (once per process)", flush=True)
            for name, items in texts.items():
                tokens = sum(len(t.input_ids) for t in sdpa.tokenize(items))
                seconds, vectors = timed(lambda: run(items), args.repeats)
                reference.setdefault(name, vectors)
                cos = (vectors * reference[name]).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference[name], axis=1)
                speed = tokens / seconds
                gain = f"{speed / previous[name]:.2f}x" if name in previous else ""
                previous[name] = speed
                rows.append([dtype, label, name, f"{seconds:.2f}", f"{speed:.0f}", gain, f"{cos.min():.6f}"])
                print(f"{dtype} | {label} | {name} | {speed:.0f} tokens/s", flush=True)
    print()
    print_table(["dtype", "step", "corpus", "s (median)", "tokens/s", "vs previous step", "min cos vs step 1"],
                rows)


if __name__ == "__main__":
    main()
