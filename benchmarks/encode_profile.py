"""Where bivec's encoding time goes, and how close the matrix products leave it to the limit.

For each mode, one encode of the corpus of benchmarks/encode_vs_reference.py runs under the
torch profiler; each operator's own time is put in a group: the matrix products (the work the
linear-layer limit measures), the attention kernel, inductor's fused kernels (compiled modes),
compiled-code runtime (guards, wrappers), every other torch operator (norms, rotary, activations,
copies, masks), and what lies outside torch operators (tokenising, batching, Python). The last
column is the speed if everything but the matrix products took no time: no mode can beat it
without faster matrix products, so it bounds the "fraction of the limit" of the other benchmark.
Tokens/s counts real tokens, from a separate timed run (the profiler slows small operators).

Usage: python benchmarks/encode_profile.py [--modes float32,float32+compile] [--corpus short]
"""

from __future__ import annotations

import argparse
import time

from _common import cpu_description, print_table
from encode_vs_reference import corpora, linear_limit

GROUPS = (
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")),
    ("attention kernel", ("aten::_scaled_dot_product",)),
    ("fused kernels", ("## Call CompiledFxGraph",)),
    ("compiled runtime", ("Torch-Compiled Region", "TorchDynamo Cache Lookup", "Pregraph bytecode", "AOTDispatcher")),
)


def group_of(key: str) -> str:
    for name, prefixes in GROUPS:
        if key.startswith(prefixes):
            return name
    return "other torch ops"


def profile_mode(mode: str, texts: list[str]) -> list:
    from torch.profiler import ProfilerActivity, profile

    from bivec import Encoder

    dtype, _, option = mode.partition("+")
    encoder = Encoder.from_pretrained(dtype=dtype, compile=option == "compile")
    tokens = sum(len(t.input_ids) for t in encoder.tokenize(texts))
    padded = 0
    collate = encoder.collate

    def counting_collate(items):
        nonlocal padded
        ids, attention, pooling_mask = collate(items)
        padded += ids.numel()
        return ids, attention, pooling_mask

    encoder.encode(texts)  # warm-up
    start = time.perf_counter()
    encoder.encode(texts)
    seconds = time.perf_counter() - start
    encoder.collate = counting_collate
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        encoder.encode(texts)
        wall = time.perf_counter() - start
    spent = dict.fromkeys([name for name, _ in GROUPS] + ["other torch ops"], 0.0)
    for event in prof.key_averages():
        spent[group_of(event.key)] += event.self_cpu_time_total / 1e6
    outside = max(0.0, wall - sum(spent.values()))
    limit = linear_limit(encoder.model.config, encoder.precision.dtype if encoder.precision else dtype)
    matmul_only = tokens / spent["matrix products"]
    return [
        mode, f"{tokens / seconds:.0f}", f"{limit:.0f}", f"{tokens / seconds / limit:.0%}", f"{1 - tokens / padded:.1%}",
        *(f"{s / wall:.1%}" for s in spent.values()), f"{outside / wall:.1%}",
        f"{matmul_only:.0f} ({matmul_only / limit:.0%})",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="float32,float32+compile",
                        help="comma-separated dtypes, each optionally +compile (default: %(default)s)")
    parser.add_argument("--corpus", choices=("short", "long"), default="short")
    parser.add_argument("--short-pairs", type=int, default=200)
    parser.add_argument("--long-paragraphs", type=int, default=60)
    args = parser.parse_args()
    texts = corpora(args.short_pairs, args.long_paragraphs)[0][args.corpus]
    print(cpu_description())
    print(f"corpus: {args.corpus}, {len(texts)} texts; shares are of the profiled run's wall time")
    rows = [profile_mode(mode, texts) for mode in args.modes.split(",")]
    print_table(
        ["mode", "tokens/s", "limit tokens/s", "% of limit", "padding", *(name for name, _ in GROUPS), "other torch ops",
         "outside torch ops", "matrix products alone: tokens/s (% of limit)"],
        rows,
    )


if __name__ == "__main__":
    main()
