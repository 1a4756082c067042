"""The LLM2Vec recipe in one call: MNTP, then SimCSE (or supervised contrastive training), then STS
evaluation, into one folder that every bivec command loads as it is.

``OUT/mntp`` and ``OUT/simcse`` (or ``OUT/supervised``) are the stages' own outputs in the
published LLM2Vec layout; ``OUT`` itself holds ``bivec_config.json`` naming the base and the
adapter stack, the tokenizer, ``results.json`` (stages and scores) and a model card
(``README.md``). Running it again skips the stages that finished with the same settings and
resumes one that was killed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bivec.models.checkpoint import EncoderSettings, write_bivec_config
from bivec.textio import atomic_write, check_writable_dir, json_object
from bivec.training.config import (
    ContrastiveConfig,
    MNTPConfig,
    SimCSEConfig,
    SupervisedConfig,
    TrainConfig,
    paired_lora_alpha,
)

RESULTS = "results.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@dataclass
class LLM2VecConfig:
    """The whole recipe. ``data`` is running text (MNTP); ``sentences`` are SimCSE's sentences
    (default: split from ``data``); ``triplets`` (query, positive, negatives rows) replace SimCSE
    with supervised training. ``mntp=False`` skips MNTP and ``bidirectional=False`` trains and
    encodes with causal attention (both for the paper's ablation). Each stage's settings are its
    own dataclass, with the paper's defaults; ``model``, ``seed``, ``precision`` and the safety
    options given here apply to every stage.

    Example:
        >>> train_llm2vec(LLM2VecConfig(data=["wiki.txt"], output_dir="out/encoder",
        ...               eval_files=["sts12.tsv"], mntp_stage=MNTPConfig(steps=250)))  # doctest: +SKIP
    """

    data: list[Any] = field(default_factory=list)
    output_dir: str | Path = "bivec-llm2vec"
    model: str | Path | None = None
    sentences: list[Any] = field(default_factory=list)
    triplets: list[Any] = field(default_factory=list)
    eval_files: list[str | Path] = field(default_factory=list)
    mntp: bool = True
    bidirectional: bool = True
    seed: int = 42
    precision: str = "auto"
    allow_pickle: bool = False
    trust_remote_code: bool = False
    progress: bool = True
    mntp_stage: MNTPConfig = field(default_factory=MNTPConfig)
    simcse_stage: SimCSEConfig = field(default_factory=SimCSEConfig)
    supervised_stage: SupervisedConfig = field(default_factory=SupervisedConfig)
    command: str = ""

    def stages(self) -> list[tuple[str, TrainConfig]]:
        """(name, config) of each stage to run, in order, with the shared settings filled in."""
        out = Path(self.output_dir)
        shared = dict(model=self.model, seed=self.seed, precision=self.precision, allow_pickle=self.allow_pickle,
                      trust_remote_code=self.trust_remote_code, bidirectional=self.bidirectional,
                      progress=self.progress, resume=True)
        stages: list[tuple[str, TrainConfig]] = []
        adapters: list[str | Path] = []
        if self.mntp:
            stages.append(("mntp", replace(self.mntp_stage, data=list(self.data), output_dir=out / "mntp", **shared)))
            adapters = [out / "mntp"]
        second: ContrastiveConfig
        if self.triplets:
            second = replace(self.supervised_stage, data=list(self.triplets), output_dir=out / "supervised",
                             adapters=adapters, **shared)
        else:
            second = replace(self.simcse_stage, data=list(self.sentences), output_dir=out / "simcse",
                             adapters=adapters, **shared)
        stages.append(("supervised" if self.triplets else "simcse", second))
        return stages

    def validate(self) -> None:
        """Raise a ValueError naming the first bad setting, before any training."""
        if not self.data:
            raise ValueError("no training text given (data)")
        if self.sentences and self.triplets:
            raise ValueError("give sentences (SimCSE) or triplets (supervised), not both")
        # Settings of a stage that does not run would otherwise be dropped without a word.
        stages = self.stages()
        ran = {name for name, _ in stages}
        for name, why in (("mntp", "MNTP is skipped (mntp=False, --no-mntp)"), ("simcse", "triplets replace SimCSE"),
                          ("supervised", "supervised training needs triplets")):
            settings = getattr(self, f"{name}_stage")
            if name not in ran and settings != type(settings)():
                raise ValueError(f"{name}_stage (--{name}) settings given, but {why}: they would be ignored")
        out = Path(self.output_dir)
        if out.exists() and not out.is_dir():
            raise ValueError(f"output_dir {str(out)!r} is a file; expected a folder")
        nearest = next(p for p in (out, *out.parents) if p.exists())
        check_writable_dir(nearest, f"output_dir {str(out)!r}")
        for path in self.eval_files:
            if not Path(path).is_file():
                raise FileNotFoundError(f"evaluation file {str(path)!r} does not exist")
        for _, config in stages:
            config.validate()


def finished_stage(config: TrainConfig) -> dict | None:
    """The training log of a stage that already finished with these settings; a finished stage
    made with other settings is an error naming the setting."""
    from bivec.training.stages import TRAINING_ARGS, base_name

    out = Path(config.output_dir)
    if not (out / "adapter_model.safetensors").is_file() or not (out / "training_log.json").is_file():
        return None
    saved = json.loads((out / TRAINING_ARGS).read_text(encoding="utf-8"))["config"]
    current = json.loads(json.dumps({k: v for k, v in asdict(config).items() if k != "data"}, default=str))
    current["data"] = [str(d) for d in config.data]
    # A setting newer than the saved stage counts as its default there.
    defaults = json.loads(json.dumps(asdict(type(config)()), default=str))
    # Paths name the same file, or the same place inside the recipe folder (the MNTP stage under it,
    # SimCSE's sentences), so that a finished folder that was moved or copied is reused.
    saved_root, current_root = _absolute(str(Path(saved.get("output_dir", out)).parent)), _absolute(str(out.parent))
    for key in sorted(set(saved) | set(current)):
        was, now = saved.get(key, defaults.get(key)), current.get(key)
        if key in ("data", "adapters"):
            was, now = _absolute(was), _absolute(now)
            if was != now:
                was, now = _in_folder(was, saved_root), _in_folder(now, current_root)
        if key == "model":
            # A stage trained without --model started from the default base, as the recipe's does.
            was, now = base_name(was), base_name(now)
        # Where the stage was written is not a setting: it is found where it is now.
        if key not in ("resume", "progress", "output_dir") and was != now:
            raise ValueError(f"{out} was trained with {key}={saved.get(key)!r}, this run has {key}={current.get(key)!r}; "
                             "use the same settings to reuse it, or another output folder")
    return json.loads((out / "training_log.json").read_text(encoding="utf-8"))


def _absolute(value: Any) -> Any:
    """``value`` (a path, or a list of them) with existing paths resolved, so that ``../data.txt``
    and ``/work/data.txt`` compare equal (a stage records its paths as given; a relative one is read
    from the directory the rerun starts in). Names that are not paths (hub datasets) stay as they are."""
    if isinstance(value, list):
        return [_absolute(item) for item in value]
    if isinstance(value, str) and Path(value).exists():
        return str(Path(value).resolve())
    return value


def _in_folder(value: Any, root: str) -> Any:
    """``value`` (a path, or a list of them) with the paths under ``root`` written from it."""
    if isinstance(value, list):
        return [_in_folder(item, root) for item in value]
    if isinstance(value, str) and Path(value).is_relative_to(root):
        return "<recipe>/" + Path(value).relative_to(root).as_posix()
    return value


def _sentences_file(config: LLM2VecConfig) -> Path:
    """SimCSE's sentences split from the MNTP text, written once into the output folder."""
    from bivec.training.data import read_documents, split_sentences

    path = Path(config.output_dir) / "simcse_sentences.txt"
    sentences = split_sentences(read_documents(config.data))
    if len(sentences) < 2:
        raise ValueError(f"the training text yields {len(sentences)} sentence(s) of 6-40 words for SimCSE; "
                         "give sentences with --sentences")
    text = "\n".join(sentences) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def train_llm2vec(config: LLM2VecConfig) -> dict[str, Any]:
    """Run the recipe (see the module docstring); returns what ``OUT/results.json`` holds."""
    from bivec.training.stages import train_mntp, train_simcse, train_supervised

    if not config.sentences and not config.triplets:
        config.validate()
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        config = replace(config, sentences=[_sentences_file(config)])
    config.validate()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = {"mntp": train_mntp, "simcse": train_simcse, "supervised": train_supervised}
    results: dict[str, Any] = {"command": config.command, "stages": {}, "scores": {}}
    stages = config.stages()
    trained = False
    for number, (name, stage) in enumerate(stages, 1):
        log = finished_stage(stage)
        print(f"bivec llm2vec: stage {number}/{len(stages)} {name}"
              + (" already finished, kept" if log else f" ({stage.steps} steps)"), file=sys.stderr, flush=True)
        trained = trained or not log
        log = log or train[name](stage)
        results["stages"][name] = {k: v for k, v in log.items() if k != "history"} | {
            "final_loss": log["history"][-1]["loss"], "max_length": stage.max_length, "lr": stage.learning_rate,
            "lora_r": stage.lora_r}
    last = Path(stages[-1][1].output_dir)
    for name in _TOKENIZER_FILES:
        if (last / name).is_file():
            shutil.copy(last / name, out / name)
    # The folder stands for its last stage: the same settings, its whole stack.
    last_config = json.loads((last / "bivec_config.json").read_text(encoding="utf-8"))
    settings = EncoderSettings(last_config["pooling"], last_config["max_length"], config.bidirectional,
                               last_config.get("prompts"), last_config.get("echo"))
    write_bivec_config(out, settings, base=_base_path(last_config["base"]),
                       adapters=[Path(s.output_dir) for _, s in stages])
    results["max_length"] = settings.max_length
    if config.eval_files:
        results["scores"] = evaluate_folder(out, config.eval_files)
    elif not trained and (out / RESULTS).is_file():
        # A rerun of a finished folder without --eval keeps the scores measured on the same weights.
        previous = json_object((out / RESULTS).read_text(encoding="utf-8"), str(out / RESULTS))
        results["scores"] = previous.get("scores", {})
    atomic_write(out / RESULTS, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8"))
    atomic_write(out / "README.md", lambda tmp: Path(tmp).write_text(model_card(config, results), encoding="utf-8"))
    return results


def _base_path(name: str) -> Path:
    from bivec.models.loading import resolve_model_path

    return resolve_model_path(name)


def evaluate_folder(folder: str | Path, files: list[str | Path]) -> dict[str, Any]:
    """Spearman x100 of the encoder in ``folder`` (loaded as any command loads it, in float32) on
    each STS file, and their average."""
    from bivec.encoder import Encoder
    from bivec.evaluation.sts import evaluate_sts

    start = time.perf_counter()
    encoder = Encoder.from_pretrained(folder, dtype="float32")
    scores = {Path(f).stem: round(evaluate_sts(encoder, f).spearman, 2) for f in files}
    return {"spearman": scores, "average": round(sum(scores.values()) / len(scores), 2),
            "eval_s": round(time.perf_counter() - start, 1)}


def sts_table(scores: dict[str, Any]) -> list[str]:
    """The Markdown lines of :func:`evaluate_folder`'s scores: a column per file, then the average."""
    spearman = scores["spearman"]
    return ["| " + " | ".join(spearman) + " | average |", "|" + "---|" * (len(spearman) + 1),
            "| " + " | ".join(f"{v:.2f}" for v in spearman.values()) + f" | {scores['average']:.2f} |"]


def model_card(config: LLM2VecConfig, results: dict[str, Any]) -> str:
    """The folder's README.md: base, data, stages, scores and the command that reproduces it."""
    last = config.stages()[-1][1]
    echo = "; echo (each text read twice, the second copy pooled)" if getattr(last, "echo", False) else ""
    lines = ["# bivec LLM2Vec encoder", "",
             f"- base model: {config.model or 'bivec/default-base (SmolLM2-135M-Instruct)'}",
             f"- attention: {'bidirectional' if config.bidirectional else 'causal'}; pooling "
             f"{getattr(last, 'pooling')}{echo}; up to {results['max_length']} tokens per text",
             f"- data: {', '.join(str(d) for d in config.data) or 'none'}"
             + (f"; triplets: {', '.join(map(str, config.triplets))}" if config.triplets else
                f"; SimCSE sentences: {', '.join(map(str, config.sentences))}"), "",
             "| stage | steps | batch | max len | lr | LoRA r | precision | wall s | tokens/s | final loss |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, log in results["stages"].items():
        lines.append(f"| {name} | {log['steps']} | {log['batch_size']} | {log['max_length']} | {log['lr']:g} | "
                     f"{log['lora_r']} | {log['mixed_precision']} | {log['wall_s']:.0f} | {log['tokens_per_s']:.0f} | "
                     f"{log['final_loss']:.4f} |")
    if results["scores"]:
        lines += ["", "STS Spearman x100 (cosine, float32):", "", *sts_table(results["scores"])]
    if config.command:
        lines += ["", "Reproduce:", "", "```bash", config.command, "```"]
    lines += ["", "Load: `bivec encode --model THIS_FOLDER \"a text\"` or "
              "`bivec.Encoder.from_pretrained(\"THIS_FOLDER\")`.", ""]
    return "\n".join(lines)


# Set for every stage by LLM2VecConfig itself, so not a per-stage setting.
_SHARED = {"data", "output_dir", "model", "adapters", "resume", "progress", "seed", "precision", "allow_pickle",
           "trust_remote_code", "bidirectional"}


def _stage_fields(cls: type) -> list:
    """The fields of ``cls`` that a stage's ``KEY=VALUE`` settings may set."""
    return [f for f in fields(cls) if f.name not in _SHARED]


def stage_settings(cls: type, items: list[str], option: str) -> TrainConfig:
    """A stage config of class ``cls`` with the paper's defaults and ``items`` (``key=value``,
    as given to ``option``) applied, each value converted to its field's type; an unknown key or
    a bad value is a ValueError naming the option. A LoRA rank without an alpha gets alpha = 2 x
    rank, the paper's ratio.

    Example:
        >>> stage_settings(MNTPConfig, ["steps=250", "batch_size=8"], "--mntp").steps
        250
    """
    import types
    import typing

    hints = typing.get_type_hints(cls)
    names = [f.name for f in _stage_fields(cls)]
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE with KEY one of {', '.join(names)}")
        hint = hints[key]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = [t for t in (typing.get_args(hint) if union else (hint,)) if t is not type(None)]
        try:
            if raw.strip().lower() == "none" and union and len(kinds) < len(typing.get_args(hint)):
                values[key] = None
            elif bool in kinds:
                if raw.lower() not in ("true", "false"):
                    raise ValueError("expected true or false")
                values[key] = raw.lower() == "true"
            elif typing.get_origin(kinds[0]) is tuple:
                values[key] = tuple(part.strip() for part in raw.split(",") if part.strip())
            else:
                values[key] = next(t for t in (int, float, str) if t in kinds)(raw)
        except (ValueError, StopIteration) as exc:
            raise ValueError(f"{option} {item!r}: bad value for {key} ({exc})") from None
    if "lora_r" in values and "lora_alpha" not in values:
        values["lora_alpha"] = paired_lora_alpha(values["lora_r"])
    return cls(**values)


def stage_defaults(cls: type) -> str:
    """The settings ``stage_settings`` takes for ``cls``, each with its default as ``KEY=VALUE``.

    Example:
        >>> stage_defaults(SimCSEConfig).split()[:3]
        ['steps=1000', 'batch_size=128', 'learning_rate=3e-05']
    """
    def word(value: Any) -> str:
        if isinstance(value, bool) or value is None:
            return str(value).lower()
        return ",".join(value) if isinstance(value, tuple) else str(value)

    return " ".join(f"{f.name}={word(f.default)}" for f in _stage_fields(cls))
