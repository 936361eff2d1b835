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

# SMAX 3m, the authors' code choices with the bounded attention weight network (the matrix game's), 500k env steps.
mkdir -p bench_fop/c_att && (cd bench_fop/c_att && python "$ROOT/fop.py" --map 3m --total-timesteps 500000 \
    --single-alpha --entropy-mean --no-critic-history --epsilon-floor --lambda-attention-bound 1 --exp-name c_att)
(cd bench_fop/c_att && python "$ROOT/fop.py" --map 3m --total-timesteps 500000 --seed 2 \
    --single-alpha --entropy-mean --no-critic-history --epsilon-floor --lambda-attention-bound 1 --exp-name c_att)

# Curves: greedy eval win rate and return against env steps (CSV + PNG).
python benchmarks/fop_curves.py --out benchmarks/fop_3m \
    "authors' code choices=$(ls -d bench_fop/authors/runs/3m__fop__1__*)" \
    "paper defaults (stopped at 160k)=$(ls -d bench_fop/paper/runs/3m__fop__1__*)" \
    "authors' choices + attention weights, seed 1=$(ls -d bench_fop/c_att/runs/3m__c_att__1__*)" \
    "authors' choices + attention weights, seed 2=$(ls -d bench_fop/c_att/runs/3m__c_att__2__*)"

# Toy games over many seeds (success counts against the paper's "always converges").
# MTQ with the policy's own samples (--explore 0, the default before uniform exploration became the mtq default)
python benchmarks/fop_toys.py --env mtq --seeds 20 --set explore=0.0 --tag no_explore
python benchmarks/fop_toys.py --env mtq --seeds 20 --set paper_gradient=True explore=0.0 --tag paper_gradient_no_explore
# Matrix game: C's weights with alpha_i (the defaults when this CSV was made, as fop_matrix_seeds.csv), then the
# current defaults (attention weights, team alpha) and the two single ablations
python benchmarks/fop_toys.py --env matrix --seeds 10 --set lambda_attention_bound=0.0 single_alpha=False --tag c_weights_alpha_i
python benchmarks/fop_toys.py --env matrix --seeds 10
python benchmarks/fop_toys.py --env matrix --seeds 10 --set single_alpha=False --tag alpha_i
python benchmarks/fop_toys.py --env matrix --seeds 10 --set lambda_attention_bound=0.0 --tag c_weights
python benchmarks/fop_matrix_tabular.py --weights c; python benchmarks/fop_matrix_tabular.py --weights attention
# MTQ with the current defaults (uniform exploration, --explore 1)
python benchmarks/fop_toys.py --env mtq --seeds 20
