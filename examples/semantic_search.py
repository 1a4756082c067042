"""Semantic search over a few documents with the trained default encoder.

Usage: python examples/semantic_search.py "how do plants make food?" [--model bivec/default] [--top 3]

Documents and queries go through ``encode_document`` / ``encode_query``, so a model with named
``query`` / ``document`` prompts (a supervised bivec checkpoint) uses them; the default has none.
"""

from __future__ import annotations

import argparse

import numpy as np

import bivec

DOCUMENTS = [
    "Plants turn sunlight, water and carbon dioxide into sugar by photosynthesis.",
    "The Great Wall of China was built over many centuries to keep out invaders.",
    "A guitar has six strings that are plucked or strummed.",
    "Rain forms when water vapour in clouds condenses into droplets heavy enough to fall.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Dogs were domesticated from wolves thousands of years ago.",
    "A violin is played with a bow drawn across its strings.",
    "Volcanoes erupt when molten rock rises through the crust.",
]


def search(encoder: bivec.Encoder, query: str, documents: list[str], top: int) -> list[tuple[float, str]]:
    """The ``top`` documents closest to ``query`` by cosine similarity, best first."""
    vectors = encoder.encode_document(documents, normalize=True)
    scores = vectors @ encoder.encode_query(query, normalize=True)[0]
    return [(float(scores[i]), documents[i]) for i in np.argsort(-scores)[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("query")
    parser.add_argument("--model", default=None, help="model or encoder folder (default: bivec's trained default)")
    parser.add_argument("--top", type=int, default=3, help="how many documents to show")
    args = parser.parse_args()
    if args.top < 1:
        parser.error(f"--top must be at least 1, got {args.top}")
    encoder = bivec.Encoder.from_pretrained(args.model)
    for score, document in search(encoder, args.query, DOCUMENTS, args.top):
        print(f"{score:.3f}  {document}")


if __name__ == "__main__":
    main()
