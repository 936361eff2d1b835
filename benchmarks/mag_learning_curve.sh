#!/usr/bin/env bash
# MAG and its MAMBA baseline (--no-mag) on SMAX 3m with the CPU preset, one run after the other, the same
# seed and env-step budget. Copies mag.py and games.py first so both runs use the same code.
#   nohup bash benchmarks/mag_learning_curve.sh /tmp/magbench > /tmp/magbench.log 2>&1 &
#   python benchmarks/mag_curves.py /tmp/magbench/runs     # CSV + PNG into benchmarks/
set -euo pipefail
DIR=${1:-/tmp/magbench}
STEPS=${STEPS:-16000}
SEED=${SEED:-1}
VARIANTS=${VARIANTS:-"mag no-mag"}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$DIR"
[ -f "$DIR/mag.py" ] || cp "$ROOT/mag.py" "$ROOT/games.py" "$DIR/"
cd "$DIR"
for variant in $VARIANTS; do
  start=$(date +%s)
  python mag.py --preset cpu --map 3m --total-timesteps "$STEPS" --seed "$SEED" --exp-name "cpu_$variant" \
    --"$variant" > "train_$variant.log" 2>&1
  echo "$variant: $(( $(date +%s) - start )) s wall" | tee -a walltime.txt
done
