#!/usr/bin/env bash
# Causal vs bidirectional (untrained, mean pooling, fp32) default model: STS and CoNLL-2003 probes.
# Usage: bash benchmarks/eval_default_model.sh [OUT_DIR] [TRAIN_SENTENCES]
# Runs one job at a time; the word probes train on the first TRAIN_SENTENCES sentences of
# train.txt (empty: all 14,041) and are scored on all of valid.txt.
set -euo pipefail
export HF_HUB_OFFLINE=1 PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)/src${PYTHONPATH:+:$PYTHONPATH}"
out=${1:-eval-results}
subset=${2:-}
data=$(cd "$(dirname "$0")/../../shared/data" && pwd)
bivec() { /usr/bin/time -f "wall %e s" python -c "from bivec.cli import main; main()" "$@"; }
sts=("$data/sts/sick_trial.tsv" "$data/sts/sts13.tsv" "$data/sts/sts12.tsv" "$data/sts/sts14.tsv")
word=(--task pos,chunking,ner --train "$data/conll2003/train.txt" --test "$data/conll2003/valid.txt"
      ${subset:+--train-sentences "$subset"})
for mode in bidirectional causal; do
  flag=(); [ "$mode" = causal ] && flag=(--causal)
  bivec eval sts "${sts[@]:0:2}" "${flag[@]}" --dtype float32 --name "$mode" -o "$out/sts-small-$mode.json"
done
for mode in bidirectional causal; do
  flag=(); [ "$mode" = causal ] && flag=(--causal)
  bivec eval word "${word[@]}" "${flag[@]}" --dtype float32 --name "$mode" -o "$out/word-$mode.json"
done
for mode in bidirectional causal; do
  flag=(); [ "$mode" = causal ] && flag=(--causal)
  bivec eval sts "${sts[@]:2:2}" "${flag[@]}" --dtype float32 --name "$mode" -o "$out/sts-large-$mode.json"
done
