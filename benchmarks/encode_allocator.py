"""What keeping freed memory in the process (bivec.runtime) gives, in fresh processes.

glibc's adaptive thresholds depend on the process's history, so each measurement is a fresh
process that loads the encoder and encodes the corpus of benchmarks/encode_vs_reference.py: with
bivec's thresholds ("kept") or with glibc's defaults ("glibc default": the child replaces bivec's
call by one that does nothing; setting any ``MALLOC_*`` threshold in the environment instead would
turn glibc's adaptive rule off too). The two alternate, in swapped order each round. Prints, per dtype and corpus,
the median tokens/s over the rounds and, per encode, the minor page faults and the seconds of CPU
time spent in the kernel.

Usage: python benchmarks/encode_allocator.py [--dtypes float32,bfloat16] [--rounds 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

from _common import cpu_description, print_table
from encode_vs_reference import corpora, run

SETTINGS = ("glibc default", "kept")


def child(setting: str, dtype: str, short_pairs: int, long_paragraphs: int, repeats: int) -> None:
    import bivec.encoder
    from bivec import Encoder

    if setting == "glibc default":
        bivec.encoder.keep_freed_memory = lambda device_type: False
    texts, _ = corpora(short_pairs, long_paragraphs)
    encoder = Encoder.from_pretrained(dtype=dtype)
    out = {"kept": bivec.encoder.keep_freed_memory("cpu")}
    for name, items in texts.items():
        tokens = sum(len(t.input_ids) for t in encoder.tokenize(items))
        encoder.encode(items)  # warm-up
        times, before = [], resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(repeats):
            start = time.perf_counter()
            encoder.encode(items)
            times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        out[name] = {"tokens_per_s": tokens / statistics.median(times),
                     "faults": (after.ru_minflt - before.ru_minflt) / repeats,
                     "kernel_s": (after.ru_stime - before.ru_stime) / repeats}
    print(json.dumps(out))


def run_child(setting: str, dtype: str, args: argparse.Namespace) -> dict:
    out = json.loads(run([sys.executable, __file__, "--child", dtype, "--setting", setting, "--short-pairs",
                          str(args.short_pairs), "--long", str(args.long), "--repeats", str(args.repeats)]).splitlines()[-1])
    if out.pop("kept") != (setting == "kept"):
        sys.exit(f"{setting} {dtype}: bivec did not set the thresholds (malloc options in the environment?)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--short-pairs", type=int, default=200)
    parser.add_argument("--long", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--setting", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.setting, args.child, args.short_pairs, args.long, args.repeats)
        return
    print(f"CPU: {cpu_description()}")
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        for dtype in args.dtypes.split(","):
            for setting in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:
                out = run_child(setting, dtype, args)
                results.setdefault((dtype, setting), []).append(out)
                print(f"round {r + 1} {dtype} {setting}: " + ", ".join(
                    f"{name} {v['tokens_per_s']:.0f} tokens/s, {v['faults']:.0f} faults" for name, v in out.items()), flush=True)
    rows = []
    for dtype in args.dtypes.split(","):
        for name in results[dtype, SETTINGS[0]][0]:
            for setting in SETTINGS:
                runs = [out[name] for out in results[dtype, setting]]
                speed = statistics.median(v["tokens_per_s"] for v in runs)
                if setting == SETTINGS[0]:
                    baseline, gain = speed, ""
                else:
                    gain = f"{speed / baseline:.2f}x"
                rows.append([dtype, name, setting, f"{speed:.0f}", " ".join(f"{v['tokens_per_s']:.0f}" for v in runs),
                             f"{statistics.median(v['faults'] for v in runs):,.0f}",
                             f"{statistics.median(v['kernel_s'] for v in runs):.2f}", gain])
    print()
    print_table(["dtype", "corpus", "freed memory", "tokens/s (median)", "tokens/s per round",
                 "page faults per encode", "kernel CPU s per encode", "vs glibc default"], rows)


if __name__ == "__main__":
    main()
