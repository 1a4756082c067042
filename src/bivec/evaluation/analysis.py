"""The LLM2Vec paper's look inside the model: how much bidirectional attention changes each layer.

For every text, the model runs twice on the same tokens, with its causal and with bidirectional
attention, and each layer's states of each token are compared by cosine similarity (mean and
spread over tokens, and by position: first, middle and last third of the text). A model whose
states barely move (the paper found this for Mistral-7B) needs little adaptation; one whose
states change much needs MNTP. A second measure, *future reach*, changes each text's last token
and reports how much the earlier tokens' states change (relative L2), layer by layer, under
bidirectional attention: zero for a model that ignores the future, large for one that uses it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bivec.attention import BidirectionalError, hidden_states, make_bidirectional, set_attention_mode
from bivec.textio import atomic_write, read_text_file

THIRDS = ("first", "middle", "last")


@dataclass
class LayerStats:
    """One layer of one model: causal-vs-bidirectional cosine over tokens, and future reach."""

    layer: int
    cosine_mean: float
    cosine_std: float
    cosine_by_third: dict[str, float]
    future_reach: float


@dataclass
class Analysis:
    """Per-layer statistics of one model over the analysed texts."""

    model: str
    texts: int
    tokens: int
    layers: list[LayerStats] = field(default_factory=list)


def default_texts() -> list[str]:
    """The paragraphs shipped for bivec's precision check: varied, multi-sentence English."""
    text = (resources.files("bivec") / "data" / "calibration_paragraphs.txt").read_text(encoding="utf-8")
    return [p.strip() for p in text.strip().split("\n\n") if p.strip()]


def read_texts_file(path: str | Path) -> list[str]:
    """Texts to analyse, one per non-blank line; an empty file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--data {path}: no such file")
    texts = [line.strip() for line in read_text_file(path).splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"--data {path}: the file holds no text")
    return texts


def _changed_last(ids: torch.Tensor, vocab: int, special: set[int]) -> torch.Tensor:
    out = ids.clone()
    candidate = (int(ids[0, -1]) + 1) % vocab
    while candidate in special:
        candidate = (candidate + 1) % vocab
    out[0, -1] = candidate
    return out


@torch.inference_mode()
def analyze(encoder, texts: list[str], *, name: str = "model", layers: list[int] | None = None,
            show_progress: bool = True) -> Analysis:
    """Compare ``encoder``'s model under causal and bidirectional attention on ``texts`` (see the
    module docstring). ``layers`` (1-based, default all) selects the layers reported. The model is
    left in the attention mode it had.

    Example:
        >>> analyze(Encoder.from_pretrained("bivec/default-base"), default_texts()).layers[0].cosine_mean  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from bivec.attention import is_bidirectional

    model = encoder.model
    count = int(model.config.get_text_config().num_hidden_layers)
    chosen = list(range(1, count + 1)) if layers is None else sorted(set(layers))
    for layer in chosen:
        if not 1 <= layer <= count:
            raise ValueError(f"--layers: the model has {count} layers (1 to {count}), got {layer}")
    if not texts:
        raise ValueError("no texts to analyse")
    was_bidirectional = is_bidirectional(model)
    if not was_bidirectional:
        make_bidirectional(model)  # proves the switch works on this model, or raises BidirectionalError
    tokenized = encoder.tokenize(texts)
    vocab = model.get_input_embeddings().num_embeddings
    special = set(encoder.tokenizer.all_special_ids)
    cosines: dict[int, list[np.ndarray]] = {layer: [] for layer in chosen}
    thirds: dict[int, dict[str, list[np.ndarray]]] = {layer: {t: [] for t in THIRDS} for layer in chosen}
    reach: dict[int, list[np.ndarray]] = {layer: [] for layer in chosen}
    device = encoder.device
    try:
        for item in tqdm(tokenized, desc=f"analyze {name}", unit="text", disable=not show_progress):
            ids = torch.tensor([item.input_ids], device=device)
            mask = torch.ones_like(ids)
            set_attention_mode(model, bidirectional=False)
            causal = hidden_states(model, ids, mask)
            set_attention_mode(model, bidirectional=True)
            bidirectional = hidden_states(model, ids, mask)
            changed = hidden_states(model, _changed_last(ids, vocab, special), mask)
            n = ids.shape[1]
            position = np.arange(n) * 3 // max(n, 1)
            for layer in chosen:
                a, b = causal[layer][0].float(), bidirectional[layer][0].float()
                cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1).cpu().numpy()
                cosines[layer].append(cosine)
                for index, third in enumerate(THIRDS):
                    thirds[layer][third].append(cosine[position == index])
                if n > 1:
                    c = changed[layer][0, :-1].float()
                    delta = (c - b[:-1]).norm(dim=-1) / b[:-1].norm(dim=-1).clamp(min=1e-12)
                    reach[layer].append(delta.cpu().numpy())
    finally:
        set_attention_mode(model, bidirectional=was_bidirectional)
    stats = []
    for layer in chosen:
        values = np.concatenate(cosines[layer])
        by_third = {t: _mean(np.concatenate(thirds[layer][t])) for t in THIRDS}
        reached = np.concatenate(reach[layer]) if reach[layer] else np.zeros(0)
        stats.append(LayerStats(layer, _mean(values), float(values.std()), by_third, _mean(reached)))
    return Analysis(name, len(texts), sum(len(t.input_ids) for t in tokenized), stats)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def to_markdown(analyses: list[Analysis]) -> str:
    """One table: a row per layer, per model its cosine (mean, std, by third) and future reach."""
    head = ["layer"]
    for a in analyses:
        head += [f"{a.model} cos", "std", "first", "middle", "last", "future reach"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in range(len(analyses[0].layers)):
        cells = [str(analyses[0].layers[row].layer)]
        for a in analyses:
            s = a.layers[row]
            cells += [f"{s.cosine_mean:.3f}", f"{s.cosine_std:.3f}",
                      *[f"{s.cosine_by_third[t]:.3f}" for t in THIRDS], f"{s.future_reach:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(analyses: list[Analysis], path: str | Path) -> Path:
    """A PNG with two panels (cosine causal vs bidirectional; future reach), a line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for a in analyses:
        x = [s.layer for s in a.layers]
        left.plot(x, [s.cosine_mean for s in a.layers], marker="o", ms=3, label=a.model)
        right.plot(x, [s.future_reach for s in a.layers], marker="o", ms=3, label=a.model)
    left.set(xlabel="layer", ylabel="cosine(causal, bidirectional)", title="How much the states move")
    right.set(xlabel="layer", ylabel="relative change of earlier tokens", title="Future reach (last token changed)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def save_json(analyses: list[Analysis], path: str | Path) -> Path:
    """The analyses as JSON (an undefined value is null)."""
    from bivec.evaluation.report import json_safe

    data: list[dict[str, Any]] = [json_safe(asdict(a)) for a in analyses]
    text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return Path(path)


__all__ = ["Analysis", "BidirectionalError", "LayerStats", "analyze", "default_texts", "plot", "save_json", "to_markdown"]
