#!/usr/bin/env bash
# Causal vs bidirectional (untrained, mean pooling, fp32) default model: STS and CoNLL-2003 probes.
# Usage: bash benchmarks/eval_default_model.sh OUT_DIR [TRAIN_SENTENCES] [TEST_SENTENCES] [STEPS]
# One job at a time. The word probes train on the first TRAIN_SENTENCES sentences of train.txt and
# are scored on the first TEST_SENTENCES of valid.txt (empty: the whole file). STEPS picks and
# orders the runs (default: "sts-small word sts-large"). The training data can miss rare tags
# (the first 1,000 sentences have no POS tag WP$; the whole train.txt has no chunk tag I-PRT,
# which valid.txt has), so such test words are kept and scored as errors (--allow-unseen-tags).
set -euo pipefail
export HF_HUB_OFFLINE=1 PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)/src${PYTHONPATH:+:$PYTHONPATH}"
out=${1:-eval-results}
train_n=${2:-}
test_n=${3:-}
steps=${4:-sts-small word sts-large}
data=$(cd "$(dirname "$0")/../../shared/data" && pwd)
bivec() { echo "+ bivec $*"; /usr/bin/time -f "wall %e s" python -c "from bivec.cli import main; main()" "$@"; }
word=(--task pos,chunking,ner --train "$data/conll2003/train.txt" --test "$data/conll2003/valid.txt"
      --allow-unseen-tags ${train_n:+--train-sentences "$train_n"} ${test_n:+--test-sentences "$test_n"})
for step in $steps; do
  for mode in bidirectional causal; do
    flag=(); [ "$mode" = causal ] && flag=(--causal)
    case $step in
      sts-small) bivec eval sts "$data/sts/sick_trial.tsv" "$data/sts/sts13.tsv" "${flag[@]}" --dtype float32 --name "$mode" -o "$out/sts-small-$mode.json" ;;
      sts-large) bivec eval sts "$data/sts/sts12.tsv" "$data/sts/sts14.tsv" "${flag[@]}" --dtype float32 --name "$mode" -o "$out/sts-large-$mode.json" ;;
      word) bivec eval word "${word[@]}" "${flag[@]}" --dtype float32 --name "$mode" -o "$out/word-$mode.json" ;;
    esac
  done
done
