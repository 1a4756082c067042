"""Does post-processing the embeddings help on STS? Centering, removing the top principal
directions ("all-but-the-top", Mu & Viswanath 2018) and whitening to k dimensions (Su et al. 2021),
each fitted on WikiText-2 sentences only (licence-clean, none of the STS text), against the raw
vectors. Spearman x100 of cosine per STS file and the average.

The rows are a measurement, not a tuned recipe: every k is shown, and picking the best k from this
table would be choosing on the test files.

Usage: python benchmarks/sts_postprocessing.py [--model bivec/default] [--fit-sentences 3000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from _common import SHARED_DATA, cpu_description, print_table

from bivec import Encoder
from bivec.correlation import pair_correlations
from bivec.evaluation.sts import read_sts_file
from bivec.training.data import read_documents, split_sentences

STS = ["sts12", "sts13", "sts14", "sick_trial"]


def transforms(fit: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Each post-processing, fitted on ``fit`` (rows are embeddings)."""
    mean = fit.mean(0)
    directions, variances, _ = np.linalg.svd(np.cov((fit - mean).T))
    out = {"raw": lambda v: v, "centred": lambda v: v - mean}
    for d in (1, 2, 5, 10):
        top = directions[:, :d]
        out[f"all-but-the-top {d}"] = lambda v, top=top: (v - mean) - (v - mean) @ top @ top.T
    # Fewer fit rows than dimensions leave zero variances past the covariance's rank: whiten within it.
    rank = min(fit.shape[1], len(fit) - 1)
    for k in dict.fromkeys((rank, 384, 256, 128, 64)):
        if k <= rank:
            project = directions[:, :k] / np.sqrt(variances[:k])
            out[f"whitened to {k}"] = lambda v, project=project: (v - mean) @ project
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="encoder (default: bivec's trained default)")
    parser.add_argument("--fit-sentences", type=int, default=3000, help="WikiText-2 sentences to fit on")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    if args.fit_sentences < 2:
        parser.error("--fit-sentences must be at least 2")
    print(f"CPU: {cpu_description()}", flush=True)
    encoder = Encoder.from_pretrained(args.model, dtype=args.dtype)
    sentences = split_sentences(read_documents([SHARED_DATA / "text" / "wikitext2_valid.txt"]))
    chosen = np.random.default_rng(0).permutation(len(sentences))[: args.fit_sentences]
    start = time.perf_counter()
    fit = encoder.encode([sentences[i] for i in chosen])
    print(f"fitted on {len(chosen)} of {len(sentences)} WikiText-2 sentences ({time.perf_counter() - start:.0f} s)")
    pairs = {}
    for name in STS:
        scores, first, second = read_sts_file(SHARED_DATA / "sts" / f"{name}.tsv")
        vectors = encoder.encode(first + second)
        pairs[name] = (scores, vectors[: len(first)], vectors[len(first):])
    rows = []
    for label, transform in transforms(fit).items():
        spearman = [pair_correlations(s, transform(a), transform(b))[0] for s, a, b in pairs.values()]
        rows.append([label, *[f"{v:.2f}" for v in spearman], f"{np.mean(spearman):.2f}"])
    print_table(["vectors", *STS, "average"], rows)


if __name__ == "__main__":
    main()
