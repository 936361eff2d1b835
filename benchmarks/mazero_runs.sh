#!/usr/bin/env bash
# MAZero (ICLR 2024): the learning runs behind benchmarks/mazero_results.md; README section "mazero.py".
# Runs one job at a time (the machine is a shared 2-core CPU): SMAX 3m seeds 1 and 2, then 2s3z seed 1, all with
# --preset cpu, then writes the CSV and PNG curves. Usage: bash benchmarks/mazero_runs.sh [workdir] (default /tmp/mazero_bench)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-/tmp/mazero_bench}"
mkdir -p "$WORK" && cd "$WORK"
for seed in 1 2; do
  python "$REPO/mazero.py" --preset cpu --map 3m --seed "$seed" --exp-name cpu_3m > "3m_seed$seed.log" 2>&1
done
python "$REPO/mazero.py" --preset cpu --map 2s3z --seed 1 --exp-name cpu_2s3z > "2s3z_seed1.log" 2>&1
python "$REPO/benchmarks/mazero_curves.py" --runs runs/3m__cpu_3m__* --csv "$REPO/benchmarks/mazero_3m.csv" \
  --png "$REPO/benchmarks/mazero_3m.png" --title "MAZero on SMAX 3m, --preset cpu"
python "$REPO/benchmarks/mazero_curves.py" --runs runs/2s3z__cpu_2s3z__* --csv "$REPO/benchmarks/mazero_2s3z.csv" \
  --png "$REPO/benchmarks/mazero_2s3z.png" --title "MAZero on SMAX 2s3z, --preset cpu"
