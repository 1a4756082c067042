"""Evaluation results: one JSON file per run, Markdown tables, and side-by-side comparisons."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bivec.textio import atomic_write

_KINDS = ("sts", "mteb", "word")


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, infinity) replaced by None, which JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass
class EvalResult:
    """Scores of one model on one kind of evaluation.

    ``scores`` maps a row (an STS file, an MTEB task, a probe task) to its metrics;
    ``main_metric`` names the metric that tables and plots compare.

    Example:
        >>> r = EvalResult("sts", "causal", "spearman", {"sts12": {"spearman": 39.8, "pearson": 35.1}})
        >>> print(r.to_markdown().splitlines()[2])
        | sts12 | 39.80 | 35.10 |
    """

    kind: str
    model: str
    main_metric: str
    scores: dict[str, dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        for name, metrics in self.scores.items():
            if self.main_metric not in metrics:
                raise ValueError(f"row {name!r} has no {self.main_metric!r} score (it has {', '.join(metrics)})")

    @property
    def average(self) -> float:
        """Mean of the main metric over all rows."""
        values = [m[self.main_metric] for m in self.scores.values()]
        return sum(values) / len(values) if values else math.nan

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON (creating parent directories) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # JSON has no NaN: an undefined score (a constant embedding gives no correlation) is null.
        text = json.dumps(json_safe(asdict(self) | {"average": self.average}), indent=2, allow_nan=False) + "\n"
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "EvalResult":
        """Read a result written by :meth:`save`; a file that is not one raises a ValueError naming it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"result file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        names = {"kind", "model", "main_metric", "scores", "settings", "wall_seconds"}
        if not isinstance(data, dict) or not {"kind", "model", "main_metric", "scores"} <= data.keys():
            raise ValueError(f"{path}: not a bivec result file (needs kind, model, main_metric and scores)")
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def to_markdown(self) -> str:
        """A table with one row per score row and one column per metric, plus the average."""
        # The fullest row sets the column order, so optional metrics do not land after the counts.
        rows = sorted(self.scores.values(), key=len, reverse=True)
        metrics = list(dict.fromkeys(m for row in rows for m in row))
        lines = [f"| {self.kind} | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
        for name, row in self.scores.items():
            lines.append(f"| {name} | " + " | ".join(_cell(row.get(m)) for m in metrics) + " |")
        if len(self.scores) > 1:
            lines.append(f"| average ({self.main_metric}) | {self.average:.2f} |" + " |" * (len(metrics) - 1))
        return "\n".join(lines)


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def _rows(results: list[EvalResult]) -> list[str]:
    return list(dict.fromkeys(f"{name} ({r.main_metric})" for r in results for name in r.scores))


def _table(results: list[EvalResult]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Models (in first-seen order) and, per row label, each model's main score."""
    models = list(dict.fromkeys(r.model for r in results))
    cells: dict[str, dict[str, float]] = {row: {} for row in _rows(results)}
    for r in results:
        for name, metrics in r.scores.items():
            label = f"{name} ({r.main_metric})"
            if r.model in cells[label]:
                raise ValueError(f"model {r.model!r} has two results for {label}; give the runs different --name")
            cells[label][r.model] = metrics[r.main_metric]
    return models, cells


def compare_markdown(results: list[EvalResult]) -> str:
    """One row per task/file, one column per model (the results' ``model`` labels).

    Example:
        >>> a = EvalResult("sts", "causal", "spearman", {"sts12": {"spearman": 39.8}})
        >>> b = EvalResult("sts", "bidirectional", "spearman", {"sts12": {"spearman": 30.1}})
        >>> print(compare_markdown([a, b]).splitlines()[2])
        | sts12 (spearman) | 39.80 | 30.10 |
    """
    if not results:
        raise ValueError("compare needs at least one result")
    models, cells = _table(results)
    lines = ["| task | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for label, row in cells.items():
        lines.append(f"| {label} | " + " | ".join(_cell(row.get(m)) for m in models) + " |")
    return "\n".join(lines)


def compare_plot(results: list[EvalResult], path: str | Path, *, title: str = "bivec evaluation") -> Path:
    """Save a grouped bar chart (one group per task, one bar per model) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plot path {str(path)!r}: only .png is supported")
    models, cells = _table(results)
    labels = list(cells)
    x = np.arange(len(labels))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) * max(1, len(models)) / 2 + 2), 4.5))
    for i, model in enumerate(models):
        values = [cells[label].get(model, np.nan) for label in labels]
        bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, values, width, label=model)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel("score (x100)")
    ax.set_title(title)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside, never over a bar
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
