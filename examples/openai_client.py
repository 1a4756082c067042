"""Embeddings from a running ``bivec serve`` with the official OpenAI client.

Start the server first, then run this in another shell:

    bivec serve --port 8000 --api-key secret
    python examples/openai_client.py --base-url http://127.0.0.1:8000/v1 --api-key secret

The model id is whatever ``GET /v1/models`` lists (the server's ``--model-name``).
"""

from __future__ import annotations

import argparse

import numpy as np
from openai import OpenAI


TEXTS = ["A man plays a guitar.", "Someone is playing music.", "The stock market fell."]


def embed(client: OpenAI, texts: list[str]) -> tuple[str, np.ndarray, int]:
    """The served model's id, its vectors for ``texts`` (unit length: the server normalises) and the
    number of tokens it counted."""
    model = client.models.list().data[0].id
    response = client.embeddings.create(input=texts, model=model)
    return model, np.array([item.embedding for item in response.data]), response.usage.prompt_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="none", help="the server's --api-key (any string when it has none)")
    args = parser.parse_args()
    model, vectors, tokens = embed(OpenAI(base_url=args.base_url, api_key=args.api_key), TEXTS)
    print(f"model {model}: {len(TEXTS)} texts -> {vectors.shape[1]}-dim vectors, {tokens} tokens")
    for text, cosine in zip(TEXTS[1:], vectors[1:] @ vectors[0]):
        print(f"cos({TEXTS[0]!r}, {text!r}) = {cosine:.3f}")


if __name__ == "__main__":
    main()
