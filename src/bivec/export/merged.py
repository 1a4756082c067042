"""Export an :class:`~bivec.Encoder` as one merged Hugging Face folder that other runtimes read.

Every adapter is already merged into the encoder's weights when it loads; the folder holds them
with ``is_causal: false`` in ``config.json`` for a bidirectional encoder (which transformers 5 reads:
a plain ``AutoModel.from_pretrained(out)`` attends bidirectionally; a causal encoder keeps its
model's causal config), the tokenizer, and
``bivec_config.json`` with the encoder settings and prompts. Before the export counts as done, the
folder is reloaded with plain transformers (no bivec code on that path) and its token states are
compared with bivec's; only then is it moved into place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from bivec.attention import is_bidirectional
from bivec.encoder import Encoder
from bivec.models.checkpoint import EncoderSettings, write_bivec_config

_PROBE = ["A man is playing a guitar.", "The stock market fell sharply today, and investors sold their shares.", "a dog"]


class MergedExportError(ValueError):
    """A merged folder that plain transformers would not read as bivec does."""


def export_merged(encoder: Encoder, out: str | Path, *, atol: float = 1e-4) -> Path:
    """Write ``encoder`` (adapters merged) to ``out`` and check it with plain transformers.

    Example:
        >>> export_merged(Encoder.from_pretrained("out/encoder"), "out/merged")  # doctest: +SKIP
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergedExportError(f"output {str(out)!r} exists and is not an empty folder; choose a new one")
    if encoder.padding_side != "right":
        raise MergedExportError("a merged export needs right padding: plain transformers passes no position ids")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        encoder.model.save_pretrained(tmp)
        encoder.tokenizer.save_pretrained(tmp)
        write_bivec_config(tmp, EncoderSettings(encoder.pooling, encoder.max_length, is_bidirectional(encoder.model),
                                                   encoder.prompts or None, encoder.echo))
        verify_merged(encoder, tmp, atol=atol)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@torch.inference_mode()
def verify_merged(encoder: Encoder, folder: str | Path, *, atol: float = 1e-4) -> None:
    """Reload ``folder`` with plain ``transformers.AutoModel`` and compare its last hidden states
    with bivec's on a right-padded batch; a difference raises :class:`MergedExportError` naming it."""
    from transformers import AutoModel

    plain = AutoModel.from_pretrained(folder, dtype=encoder.model.dtype).to(encoder.device).eval()
    items = encoder.tokenize(_PROBE)
    ids, attention, _ = encoder.collate(items)
    got = plain(input_ids=ids, attention_mask=attention).last_hidden_state.float().cpu().numpy()
    expected = encoder.token_states(items, show_progress=False)
    scale = max(float(np.abs(e).max()) for e in expected)
    tol = atol if encoder.model.dtype == torch.float32 else 3e-2
    for row, states in enumerate(expected):
        error = float(np.abs(got[row, : len(states)] - states).max()) / max(scale, 1e-6)
        if not error <= tol:
            raise MergedExportError(
                f"plain transformers does not reproduce bivec's token states from {folder} (text {row}: relative "
                f"difference {error:.2e} > {tol:.0e}); is_causal in its config.json may not be honoured by this "
                "transformers version for this architecture"
            )
