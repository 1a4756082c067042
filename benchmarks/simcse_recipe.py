"""SimCSE recipe variants for Bi+MNTP+SimCSE, each trained on top of one MNTP adapter (the ablation's
Bi+MNTP stage unless --mntp names another; so a variant costs one SimCSE run, not a whole pipeline),
then scored on the shared STS files.
Each run appends its scores and settings to benchmarks/results/simcse_recipe.jsonl.

Data variants: ``wiki`` (the recipe's WikiText-2 sentences), ``nounk`` (without the sentences
holding WikiText's ``<unk>``), ``clauses`` (the sentences plus their clauses of 5+ words).

Usage: python benchmarks/simcse_recipe.py NAME [--steps 100] [--len 64] [--lr 3e-4] [--batch 64]
       [--chunk 32] [--data wiki|nounk|clauses] [--out results/simcse-recipe] [--mntp FOLDER]
"""
import argparse
import json
import re
import time
from pathlib import Path

from _common import SHARED_DATA, cpu_description

from bivec.training.config import SimCSEConfig
from bivec.training.data import read_documents, split_sentences
from bivec.training.recipe import evaluate_folder
from bivec.training.stages import train_simcse

ABLATION_MNTP = Path(__file__).resolve().parents[1] / "results/ablation/bi+mntp+simcse/mntp"

p = argparse.ArgumentParser()
p.add_argument("name"); p.add_argument("--steps", type=int, default=100); p.add_argument("--len", type=int, default=64)
p.add_argument("--lr", type=float, default=3e-4); p.add_argument("--batch", type=int, default=64)
p.add_argument("--chunk", type=int, default=None); p.add_argument("--dropout", type=float, default=0.3)
p.add_argument("--lora-dropout", type=float, default=0.0); p.add_argument("--r", type=int, default=8)
p.add_argument("--mntp", type=Path, default=ABLATION_MNTP, help="the MNTP adapter folder to train on")
p.add_argument("--data", default="wiki", choices=["wiki", "nounk", "clauses"]); p.add_argument("--out", default="results/simcse-recipe"); p.add_argument("--eval", default="all"); p.add_argument("--warmup", type=int, default=0)
a = p.parse_args()
if not (a.mntp / "adapter_config.json").is_file():
    p.error(f"--mntp: no MNTP adapter in {a.mntp}; "
            "python benchmarks/llm2vec_ablation.py --rows bi+mntp --redo trains one there")
D = SHARED_DATA
out = Path(a.out) / a.name
out.mkdir(parents=True, exist_ok=True)
docs = read_documents([D / "text/wikitext2_valid.txt"])
if a.data == "wiki":
    sents = split_sentences(docs)
elif a.data == "nounk":
    sents = [s for s in split_sentences(docs) if "<unk>" not in s]
elif a.data == "clauses":
    sents = split_sentences(docs)
    extra = []
    for s in sents:
        for part in re.split(r"[,;:] ", s):
            if 5 <= len(part.split()) < len(s.split()):
                extra.append(part.strip())
    sents = list(dict.fromkeys(sents + extra))
sf = out / "sentences.txt"; sf.write_text("\n".join(sents) + "\n")
print("sentences", len(sents), flush=True)
t = time.perf_counter()
log = train_simcse(SimCSEConfig(data=[sf], model="bivec/default-base", adapters=[a.mntp], output_dir=out / "simcse",
    steps=a.steps, batch_size=a.batch, chunk_size=a.chunk, max_length=a.len, learning_rate=a.lr, dropout=a.dropout,
    lora_dropout=a.lora_dropout, lora_r=a.r, lora_alpha=2 * a.r, save_steps=0, warmup_steps=a.warmup, progress=False))
train_s = time.perf_counter() - t
files = [D / f"sts/{n}.tsv" for n in (["sts12", "sts13", "sts14", "sick_trial"] if a.eval == "all" else a.eval.split(","))]
res = evaluate_folder(out / "simcse", files)
res.update(vars(a)); res["cpu"] = cpu_description(); res["train_s"] = round(train_s); res["final_loss"] = log.get("final_loss"); res["tokens_per_s"] = log.get("tokens_per_s")
line = json.dumps(res, default=str)  # default: --mntp's Path
print(line, flush=True)
with open(Path(__file__).resolve().parent / "results/simcse_recipe.jsonl", "a") as f:
    f.write(line + "\n")
