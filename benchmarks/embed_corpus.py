"""embed-corpus throughput: the same short texts embedded by the local engine and by Ray Data.

Texts: the distinct sentences of ../shared/data/sts/*.tsv, then WikiText-2 validation lines,
cut to --rows (repeated with new ids if --rows asks for more). Each engine writes its own
output directory; the time is end to end (reading, model loading, Ray start-up included).

Usage: python benchmarks/embed_corpus.py [--rows 10000] [--engines local,ray] [--workers 2] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import print_table  # noqa: E402

from bivec.corpus import CorpusConfig, EncoderSettings, RayOptions, embed_corpus, read_embeddings  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared/data"


def short_texts(rows: int) -> list[str]:
    texts: dict[str, None] = {}
    for path in sorted((DATA / "sts").glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            for sentence in line.split("\t")[1:]:
                texts[sentence.strip()] = None
    for line in (DATA / "text/wikitext2_valid.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.strip().startswith("="):
            texts[line.strip()] = None
    pool = [t for t in texts if t]
    return [pool[i % len(pool)] for i in range(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="texts to embed (scale up on bigger machines)")
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--workers", type=int, default=2, help="Ray encoder actors")
    parser.add_argument("--model", default=None)
    parser.add_argument("--shard-size", type=int, default=2_000)
    parser.add_argument("--progress", action="store_true", help="show embed-corpus's progress bar")
    parser.add_argument("--out", default=None, help="directory for the corpus and outputs (default: a temporary one)")
    args = parser.parse_args()

    work = Path(args.out or tempfile.mkdtemp(prefix="bivec-embed-corpus-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.jsonl"
    texts = short_texts(args.rows)
    corpus.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    print(f"{len(texts)} texts, {sum(len(t) for t in texts) / len(texts):.0f} characters on average; {os.cpu_count()} CPUs")

    rows = []
    for engine in args.engines.split(","):
        config = CorpusConfig(
            encoder=EncoderSettings(model=args.model), shard_size=args.shard_size, engine=engine,
            ray=RayOptions(workers=args.workers),
        )
        output = work / f"out-{engine}"
        start = time.perf_counter()
        summary = embed_corpus(corpus, output, config, show_progress=args.progress)
        seconds = time.perf_counter() - start
        ids, vectors = read_embeddings(output)
        assert len(set(ids)) == len(texts) == vectors.shape[0], "lost or duplicated rows"
        print(summary)
        rows.append((engine, args.workers if engine == "ray" else 1, summary.rows_this_run, seconds))
    print()
    print_table(["engine", "workers", "rows", "seconds (end to end)", "rows/s"],
                [[engine, workers, n, f"{seconds:.1f}", f"{n / seconds:.1f}"] for engine, workers, n, seconds in rows])


if __name__ == "__main__":
    main()
