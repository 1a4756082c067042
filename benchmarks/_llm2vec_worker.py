"""Runs inside the reference virtualenv (llm2vec 0.2.3, transformers 4.44): encodes a JSON list of
corpora with the reference library and writes embeddings, token counts and timings.

Invoked by encode_vs_reference.py; it must not import bivec (not installed there).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from _common import memory_mb, reset_peak_memory
from encode_vs_reference import timed_corpora
from llm2vec import LLM2Vec


def main() -> None:
    model_dir, dtype, corpora_file, out, repeats, batch_size = sys.argv[1:7]
    corpora = json.loads(Path(corpora_file).read_text())
    l2v = LLM2Vec.from_pretrained(
        model_dir, enable_bidirectional=True, pooling_mode="mean", max_length=512,
        torch_dtype=getattr(torch, dtype), attn_implementation="sdpa",
    )
    report = {"load_peak_rss_mb": memory_mb(),
              "ids": {name: [l2v.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
                      for name, texts in corpora.items()}}
    reset_peak_memory()
    timed = timed_corpora(
        lambda texts: l2v.encode(texts, batch_size=int(batch_size), show_progress_bar=False, convert_to_numpy=True),
        corpora, int(repeats), model_dir, dtype,
    )
    arrays = timed.pop("arrays")
    report.update(timed)
    np.savez(out, **arrays)
    Path(out + ".json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
