"""The paper's ablation on the default model: which of bidirectional attention, MNTP and
SimCSE / supervised training makes the encoder, on the shared STS files and CoNLL-2003 probes.

Rows: causal; Bi; Bi+MNTP; Bi+SimCSE (no MNTP); causal+SimCSE; Bi+MNTP+SimCSE;
Bi+MNTP+supervised (SICK triplets: non-commercial, so a benchmark row, never shipped); Bi+MNTP,
Bi+MNTP+SimCSE and Bi+MNTP+supervised again with twice the MNTP steps (500: is 250 too little
adaptation?), and Bi+MNTP and Bi+MNTP+SimCSE with the paper's 1000; the two causal rows again with weighted mean pooling (SGPT's pooling for causal
models: token k weighs k, since under causal attention a later token has read more of the text),
which causal+SimCSE also trains with; and those read with echo embeddings (each text twice, the
second copy pooled, so that every pooled token has read the whole text): the untrained base, the
shipped encoder as packaged (trained without echo), and causal+SimCSE trained with echo; and two
variants of the supervised stage on the 1,299 SICK triplets: one pass over them instead of five, as
many steps as SimCSE (300, fifteen passes; also on the 500-step MNTP stage), and the stage trained after SimCSE
(Bi+MNTP+SimCSE+supervised), as one would use a small labelled set; and, for the word probes, Bi+MNTP
read in place (word i at its own token, not at the token before it that MNTP trains to predict it)
and MNTP alone with mask ratio 0.1 and 0.4 instead of the recipe's 0.2 (0.4 also with 500 steps, and
with SimCSE after it). Each row:
Spearman x100 per STS file and their average, word-probe token accuracy (the paper's metric for all
three tasks) and span F1 for chunking and NER, training wall time and tokens/s. The probes read the
model's token states of a single copy, so echo leaves them as they are.

Trained rows use the shipped recipe's stage settings (scripts/default_encoder.py), each in its own
folder under ``--work``: Bi+MNTP+SimCSE is the whole recipe with bidirectional attention, its MNTP
stage is Bi+MNTP, and Bi+MNTP+supervised trains its supervised stage on that MNTP stage;
Bi+SimCSE and the causal+SimCSE rows skip MNTP (bivec ships causal+SimCSE with weighted mean). A
row is recorded, with the command that made it and the CPU, in ``benchmarks/results/ablation.json``
as soon as it is done, and a later run skips recorded rows, so the table can be completed over
several runs on 2 cores (the supervised row took 17 minutes of training on a 2-core EPYC; a SimCSE
row trains 300 steps, 51 minutes on that EPYC).

Usage: python benchmarks/llm2vec_ablation.py [--rows causal,bi,...] [--redo] [--probe-sentences 1000,500]
       [--seed N]
``--seed`` other than the recipe's 42 trains the SimCSE rows again with that seed (Bi+MNTP+SimCSE as a
whole recipe) and records them as ``ROW@seedN``, to see how far one row's runs spread.
A test tag the probe did not see in training counts as an error (allow_unseen_tags).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from _common import SHARED_DATA, cpu_description, print_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ablation.json"
sys.path.insert(0, str(ROOT / "scripts"))
from default_encoder import MNTP, RECIPE, SHIPPED, SIMCSE  # the recipe's stage settings

STS = ["sts12", "sts13", "sts14", "sick_trial"]
TASKS = ["pos", "chunking", "ner"]
ROWS = {
    "causal": "causal",
    "causal-wmean": "causal, weighted mean",
    "bi": "Bi",
    "bi+mntp": "Bi+MNTP",
    "bi+simcse": "Bi+SimCSE",
    "causal+simcse": "causal+SimCSE",
    "causal+simcse-wmean": "causal+SimCSE, weighted mean",
    "bi+mntp+simcse": "Bi+MNTP+SimCSE",
    "bi+mntp+supervised": "Bi+MNTP+supervised",
    "bi+mntp500": "Bi+MNTP, 500 MNTP steps",
    "bi+mntp-inplace": "Bi+MNTP, probes read word i at its own token",
    "bi+mntp-mask0.1": "Bi+MNTP, mask ratio 0.1",
    "bi+mntp-mask0.4": "Bi+MNTP, mask ratio 0.4",
    "bi+mntp500-mask0.4": "Bi+MNTP, 500 MNTP steps, mask ratio 0.4",
    "bi+mntp-mask0.4+simcse": "Bi+MNTP+SimCSE, mask ratio 0.4",
    "bi+mntp500+simcse": "Bi+MNTP+SimCSE, 500 MNTP steps",
    "bi+mntp500+supervised": "Bi+MNTP+supervised, 500 MNTP steps",
    "bi+mntp1000": "Bi+MNTP, 1000 MNTP steps (the paper's)",
    "bi+mntp1000+simcse": "Bi+MNTP+SimCSE, 1000 MNTP steps (the paper's)",
    "bi+mntp+supervised-1pass": "Bi+MNTP+supervised, one pass over the triplets",
    "bi+mntp+supervised-300": "Bi+MNTP+supervised, 300 steps (as SimCSE)",
    "bi+mntp500+supervised-300": "Bi+MNTP+supervised, 500 MNTP steps, 300 steps",
    "bi+mntp+simcse+supervised": "Bi+MNTP+SimCSE+supervised",
    "causal-wmean-echo": "causal, weighted mean, echo",
    "shipped": "causal+SimCSE, weighted mean, read with echo (shipped)",
    "causal+simcse-wmean-echo": "causal+SimCSE, weighted mean, trained and read with echo",
    "causal+simcse-wmean-echo128": "causal+SimCSE, weighted mean, trained (128 tokens) and read with echo",
}
# The untrained rows: the base model with these Encoder.from_pretrained options.
BASE_ROWS = {"causal": {"bidirectional": False}, "causal-wmean": {"bidirectional": False, "pooling": "weighted_mean"},
             "causal-wmean-echo": {"bidirectional": False, "pooling": "weighted_mean", "echo": True},
             "bi": {"bidirectional": True}}
# The packaged default with its own settings (the causal+simcse-wmean row's training, float16 adapter,
# read with echo as scripts/default_encoder.py ships it).
PACKAGED = {"shipped": "bivec/default"}
RECIPE_SEED = 42
# The recipe flags of each SimCSE row, the rows --seed trains again; the MNTP and supervised rows
# reuse the MNTP stage of a Bi+MNTP+SimCSE row (MNTP_OF, SUPERVISED_ON).
SEEDED = {"bi+simcse": ["--no-mntp", *SIMCSE], "causal+simcse": ["--no-mntp", "--causal", *SIMCSE],
          "causal+simcse-wmean": SHIPPED, "causal+simcse-wmean-echo": [*SHIPPED, "--simcse", "echo=true"],
          # Echo cuts each text to half of max_length: 64 tokens cut 37% of the WikiText sentences in
          # two copies, 128 keeps them as whole as the single-copy rows.
          "causal+simcse-wmean-echo128": [*SHIPPED, "--simcse", "echo=true", "--simcse", "max_length=128"],
          "bi+mntp+simcse": RECIPE,
          "bi+mntp500+simcse": [*MNTP, "--mntp", "steps=500", *SIMCSE],
          "bi+mntp1000+simcse": [*MNTP, "--mntp", "steps=1000", *SIMCSE],
          "bi+mntp-mask0.4+simcse": [*MNTP, "--mntp", "mask_ratio=0.4", *SIMCSE]}
MNTP_OF = {"bi+mntp": "bi+mntp+simcse", "bi+mntp500": "bi+mntp500+simcse", "bi+mntp1000": "bi+mntp1000+simcse",
           "bi+mntp-inplace": "bi+mntp+simcse"}
# MNTP rows whose probes read word i at its own token rather than at the one before it, which
# MNTP trains to predict it (the paper's retroactive reading).
IN_PLACE = {"bi+mntp-inplace"}
# MNTP alone with one of the recipe's MNTP settings changed (the word probes' question: is the
# mask ratio what keeps Bi+MNTP below causal on POS?).
MNTP_VARIANTS = {"bi+mntp-mask0.1": ["mask_ratio=0.1"], "bi+mntp-mask0.4": ["mask_ratio=0.4"],
                 "bi+mntp500-mask0.4": ["mask_ratio=0.4", "steps=500"]}
# A supervised row: (the SimCSE row whose recipe folder it trains on, the stages of that folder it
# stacks, its flags beyond SUPERVISED).
SUPERVISED_ON = {"bi+mntp+supervised": ("bi+mntp+simcse", ["mntp"], []),
                 "bi+mntp500+supervised": ("bi+mntp500+simcse", ["mntp"], []),
                 "bi+mntp+supervised-1pass": ("bi+mntp+simcse", ["mntp"], ["steps=20", "warmup_steps=2", "save_steps=5"]),
                 "bi+mntp+supervised-300": ("bi+mntp+simcse", ["mntp"], ["steps=300", "warmup_steps=30"]),
                 "bi+mntp500+supervised-300": ("bi+mntp500+simcse", ["mntp"], ["steps=300", "warmup_steps=30"]),
                 "bi+mntp+simcse+supervised": ("bi+mntp+simcse", ["mntp", "simcse"], [])}
WIKITEXT = SHARED_DATA / "text" / "wikitext2_valid.txt"
TRIPLETS = SHARED_DATA / "nli" / "sick_train_triplets.jsonl"
# Supervised on the 1,299 SICK triplets: the paper's 1000 steps of 512 rows see its data about a
# third of a time; here 100 steps of 64 rows see these five times (about 20 minutes on 2 cores).
SUPERVISED = ["steps=100", "batch_size=64", "chunk_size=32", "max_length=64", "learning_rate=2e-4",
              "warmup_steps=10", "lora_r=8", "save_steps=25"]


def _trained(row: str, work: Path, seed: int = RECIPE_SEED) -> Path:
    """The recipe folder of a SimCSE row, trained with its flags and seed (skipped when already there)."""
    from bivec.cli import run

    out = work / row_key(row, seed)
    argv = ["train", "llm2vec", str(WIKITEXT), "--model", "bivec/default-base",
            "-o", str(out), "--seed", str(seed), *SEEDED[row]]
    run(argv)
    return out


def _cost(log: dict) -> dict:
    """What a row records of a stage's training log."""
    return {k: log[k] for k in ("wall_s", "tokens_per_s", "steps")}


def _stages(folder: Path) -> dict:
    """The cost of each training stage under a recipe folder, from its results."""
    return {name: _cost(log) for name, log in json.loads((folder / "results.json").read_text())["stages"].items()}


def _stage(out: Path, stage: str, settings: list[str], **fields) -> dict:
    """One training stage (``mntp`` or ``supervised``) in ``out`` from its ``KEY=VALUE`` settings and
    config ``fields``, with the base model: kept when finished with these settings, refused when
    finished with others, resumed when killed. Returns its cost."""
    from dataclasses import replace

    from bivec.training import MNTPConfig, SupervisedConfig, train_mntp, train_supervised
    from bivec.training.recipe import finished_stage, stage_settings

    cls, train = {"mntp": (MNTPConfig, train_mntp), "supervised": (SupervisedConfig, train_supervised)}[stage]
    config = replace(stage_settings(cls, settings, f"--{stage}"), output_dir=out, model="bivec/default-base",
                     resume=True, **fields)
    return _cost(finished_stage(config) or train(config))


def _mntp_variant(out: Path, flags: list[str]) -> tuple[Path, dict]:
    """An MNTP stage with the recipe's MNTP settings and ``flags`` on top."""
    return out, {"mntp": _stage(out, "mntp", [*MNTP[1::2], *flags], data=[WIKITEXT], seed=RECIPE_SEED)}


def _supervised(out: Path, recipe: Path, stages: list[str], flags: list[str]) -> tuple[Path, dict]:
    """A supervised stage on the ``stages`` of the recipe folder ``recipe``, with ``flags`` beyond SUPERVISED."""
    cost = _stage(out, "supervised", [*SUPERVISED, *flags], data=[TRIPLETS],
                  adapters=[recipe / stage for stage in stages])
    done = _stages(recipe)
    return out, {**{stage: done[stage] for stage in stages}, "supervised": cost}


def model_for(row: str, work: Path, seed: int = RECIPE_SEED) -> tuple[str, dict, dict]:
    """(model folder or name, Encoder.from_pretrained options, training logs) of a row, training it if needed."""
    if row in BASE_ROWS:
        return "bivec/default-base", BASE_ROWS[row], {}
    if row in PACKAGED:
        from bivec.models.default import shipped_encoder_dir

        return PACKAGED[row], {}, _stages(shipped_encoder_dir())
    if row in SEEDED:
        folder = _trained(row, work, seed)
        return str(folder), {}, _stages(folder)
    if row in MNTP_OF:
        recipe = _trained(MNTP_OF[row], work)
        return str(recipe / "mntp"), {}, {"mntp": _stages(recipe)["mntp"]}
    if row in MNTP_VARIANTS:
        folder, costs = _mntp_variant(work / row, MNTP_VARIANTS[row])
        return str(folder), {}, costs
    on, stages, flags = SUPERVISED_ON[row]
    folder, costs = _supervised(work / row, _trained(on, work), stages, flags)
    return str(folder), {}, costs


def evaluate(model: str, options: dict, probe_sentences: tuple[int, int], retroactive: str) -> dict:
    """STS and probe scores of one row; MNTP rows read word i at the token before it, as the paper does."""
    from bivec import Encoder
    from bivec.evaluation.probes import ProbeConfig, evaluate_word_task
    from bivec.evaluation.sts import evaluate_sts

    encoder = Encoder.from_pretrained(model, dtype="float32", **options)
    start = time.perf_counter()
    sts = {name: round(evaluate_sts(encoder, SHARED_DATA / "sts" / f"{name}.tsv").spearman, 2) for name in STS}
    sts_s = time.perf_counter() - start
    probes = {}
    for task in TASKS:
        config = ProbeConfig(task=task, retroactive=retroactive, allow_unseen_tags=True,
                             train_sentences=probe_sentences[0], test_sentences=probe_sentences[1])
        result = evaluate_word_task(encoder, SHARED_DATA / "conll2003" / "train.txt",
                                    SHARED_DATA / "conll2003" / "valid.txt", config)
        probes[task] = {"accuracy": round(result.accuracy, 2), "f1": None if result.f1 is None else round(result.f1, 2),
                        "retroactive": config.retroactive}
    return {"sts": sts, "average": round(sum(sts.values()) / len(sts), 2), "probes": probes,
            "eval_s": round(time.perf_counter() - start, 1), "sts_eval_s": round(sts_s, 1)}


def row_key(row: str, seed: int) -> str:
    """Where a row is recorded: its name, with ``@seedN`` for another seed than the recipe's."""
    return row if seed == RECIPE_SEED else f"{row}@seed{seed}"


def table(results: dict) -> None:
    columns = ["row", *STS, "average", *[f"{t} acc" for t in TASKS], "chunking F1", "ner F1", "training s", "tokens/s"]
    rows = []
    for key, label in ROWS.items():
        if key not in results["rows"]:
            rows.append([label, *["(not run)"] + [""] * (len(columns) - 2)])
        seeded = sorted((r for k, r in results["rows"].items() if k.startswith(key + "@seed")), key=lambda r: r["seed"])
        for r in ([results["rows"][key]] if key in results["rows"] else []) + seeded:
            seed = r.get("seed", RECIPE_SEED)
            rows.append(_table_row(r, label if seed == RECIPE_SEED else f"{label} (seed {seed})"))
    print_table(columns, rows)


def _table_row(r: dict, label: str) -> list[str]:
    stages = r["training"]
    return [label, *[f"{r['sts'][s]:.2f}" for s in STS], f"{r['average']:.2f}",
            *[f"{r['probes'][t]['accuracy']:.2f}" for t in TASKS],
            f"{r['probes']['chunking']['f1']:.2f}", f"{r['probes']['ner']['f1']:.2f}",
            " + ".join(f"{s['wall_s']:.0f}" for s in stages.values()) or "-",
            " / ".join(f"{s['tokens_per_s']:.0f}" for s in stages.values()) or "-"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run: " + ", ".join(ROWS))
    parser.add_argument("--redo", action="store_true", help="run rows that are already recorded again")
    parser.add_argument("--probe-sentences", default="1000,500",
                        help="CoNLL-2003 sentences the probes train and test on (train,valid)")
    parser.add_argument("--work", type=Path, default=ROOT / "results" / "ablation", help="folder for the trained rows")
    parser.add_argument("--seed", type=int, default=RECIPE_SEED,
                        help=f"training seed; another than {RECIPE_SEED} trains the SimCSE rows again "
                             f"({', '.join(SEEDED)})")
    args = parser.parse_args()
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    if args.seed != RECIPE_SEED:
        if args.rows == parser.get_default("rows"):
            wanted = list(SEEDED)
        unseeded = [r for r in wanted if r not in SEEDED]
        if unseeded:
            parser.error(f"--seed {args.seed}: only the SimCSE rows are trained again with a seed, "
                         f"not {', '.join(unseeded)}")
    probe = tuple(int(n) for n in args.probe_sentences.split(","))
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"rows": {}}
    print(f"CPU: {cpu_description()}", flush=True)
    for row in wanted:
        key = row_key(row, args.seed)
        if key in results["rows"] and not args.redo:
            print(f"{key}: recorded, kept", flush=True)
            continue
        print(f"{key}: running", flush=True)
        model, options, training = model_for(row, args.work, args.seed)
        retroactive = "next_token" if "mntp" in row and row not in IN_PLACE else "none"
        result = evaluate(model, options, probe, retroactive) | {"training": training, "cpu": cpu_description(),
                                                     "probe_sentences": list(probe), "seed": args.seed,
                                                     "command": " ".join(shlex.quote(a) for a in sys.argv)}
        results["rows"][key] = result
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        print(f"{key}: average {result['average']:.2f}, recorded in {RESULTS}", flush=True)
    table(results)


if __name__ == "__main__":
    main()
