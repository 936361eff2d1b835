# MAZero (ICLR 2024): speed of ctree_numpy.search; README section "ctree_numpy.py".
"""Time one sampled-MCTS search (N simulations, K samples) per batch size with a free fake model.

Protocol (the one used for the authors' C++ tree in shared/notes/mazero-official-code-facts.md): the model returns
pre-generated random rewards, values and logits from a small pool, so model time is ~0 and the tree is what is timed.
Reports wall time and process CPU time over --repeats runs, median and minimum (the machine is shared: CPU time is the
steadier number, and its minimum the closest to an idle machine), and the load average before and after.

    python benchmarks/bench_ctree.py                          # full grid
    python benchmarks/bench_ctree.py --agents 8 --actions 9 --batch 4 256 1536
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ctree_numpy import SearchConfig, search  # noqa: E402

# authors' C++ tree through their Python wrapper, same protocol, n = 8, A = 9, this machine class (ms per search)
CPP_MS = {(8, 9, 4): 15, (8, 9, 64): 80, (8, 9, 256): 350, (8, 9, 1536): 2600}


class PoolModel:
    """recurrent_fn returning entry node % pool of pre-generated outputs, as float32 like a network would."""

    def __init__(self, B, n, A, pool, seed):
        rng = np.random.default_rng(seed)
        self.reward = rng.normal(size=(pool, B)).astype(np.float32)
        self.value = rng.normal(size=(pool, B)).astype(np.float32)
        self.logits = rng.normal(size=(pool, B, n, A)).astype(np.float32)

    def __call__(self, parent, action, node):
        i = node % len(self.reward)
        return self.reward[i], self.value[i], self.logits[i]


def time_search(B, n, A, args):
    model = PoolModel(B, n, A, args.pool, seed=0)
    cfg = SearchConfig(num_simulations=args.num_simulations, num_sampled=args.num_sampled, os_lambda=args.os_lambda)
    legal = np.ones((B, n, A), bool)
    walls, cpus = [], []
    for r in range(args.repeats + 1):  # the first run warms up and is dropped
        rng = np.random.default_rng(r)
        w0, c0 = time.perf_counter(), time.process_time()
        search(model, model.value[0], model.logits[0], legal, rng, cfg, add_noise=True)
        w1, c1 = time.perf_counter(), time.process_time()
        if r:
            walls.append(w1 - w0)
            cpus.append(c1 - c0)
    return statistics.median(walls) * 1e3, min(walls) * 1e3, statistics.median(cpus) * 1e3, min(cpus) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, nargs="+", default=[3, 8], help="n values")
    p.add_argument("--actions", type=int, nargs="+", default=[9, 70], help="A values")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1536], help="B values")
    p.add_argument("--num-simulations", type=int, default=100)
    p.add_argument("--num-sampled", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per cell (plus one warm-up)")
    p.add_argument("--pool", type=int, default=4, help="distinct fake model outputs")
    p.add_argument("--no-os-lambda", dest="os_lambda", action="store_false", help="plain mean values")
    args = p.parse_args()

    print(f"N={args.num_simulations} K={args.num_sampled} os_lambda={args.os_lambda} repeats={args.repeats}; "
          f"{os.cpu_count()} CPUs; loadavg before {os.getloadavg()[0]:.2f}")
    print("| n | A | B | ms / search (median wall) | min wall | CPU ms (median) | CPU ms (min) | us / sim / root (min CPU) "
          "| C++ + wrapper (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.agents:
        for A in args.actions:
            for B in args.batch:
                med, best, cpu, cpu_min = time_search(B, n, A, args)
                cpp = CPP_MS.get((n, A, B))
                print(f"| {n} | {A} | {B} | {med:.1f} | {best:.1f} | {cpu:.1f} | {cpu_min:.1f} | "
                      f"{cpu_min * 1e3 / (args.num_simulations * B):.1f} | {f'~{cpp}' if cpp else ''} |", flush=True)
    print(f"loadavg after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
