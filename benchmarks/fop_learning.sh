#!/bin/bash
# The runs behind benchmarks/fop_results.md, in the order they were made (2-core shared CPU, no GPU).
# Run from the repository root; each run writes runs/<run_name>/ (TensorBoard + checkpoint) under its own directory.
set -e
ROOT=$(pwd)

# SMAX 3m, the authors' code choices (liyheng/FOP), 500k env steps, 8 envs, one update per episode (C's ratio).
mkdir -p bench_fop/authors && (cd bench_fop/authors && python "$ROOT/fop.py" --map 3m --total-timesteps 500000 \
    --checkpoint-interval 100000 --single-alpha --entropy-mean --no-critic-history --epsilon-floor)

# SMAX 3m, the paper's forms (the script's defaults); stopped by hand at 160k env steps on this machine.
mkdir -p bench_fop/paper && (cd bench_fop/paper && python "$ROOT/fop.py" --map 3m --total-timesteps 500000 \
    --checkpoint-interval 100000)

# Curves: greedy eval win rate and return against env steps (CSV + PNG).
python benchmarks/fop_curves.py --out benchmarks/fop_3m \
    "authors' code choices=$(ls -d bench_fop/authors/runs/3m__fop__1__*)" \
    "paper defaults (stopped at 160k)=$(ls -d bench_fop/paper/runs/3m__fop__1__*)"

# Toy games over many seeds (success counts against the paper's "always converges").
# MTQ with the policy's own samples (--explore 0, the default before uniform exploration became the mtq default)
python benchmarks/fop_toys.py --env mtq --seeds 20 --set explore=0.0 --tag no_explore
python benchmarks/fop_toys.py --env mtq --seeds 20 --set paper_gradient=True explore=0.0 --tag paper_gradient_no_explore
python benchmarks/fop_toys.py --env matrix --seeds 10
# MTQ with the current defaults (uniform exploration, --explore 1)
python benchmarks/fop_toys.py --env mtq --seeds 20
