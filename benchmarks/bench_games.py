"""Env steps per second of the SMAX backend, including what a PyTorch training loop pays per step:
obs/state/avail/reward/done to torch tensors, a masked random joint action sampled in torch, and
the actions back to NumPy. One "env step" is one step of one of the E parallel games.

    python benchmarks/bench_games.py                       # 3m, 2s3z, 27m_vs_30m at E = 1, 8, 64
    python benchmarks/bench_games.py --maps 3m --num-envs 8 --steps 2000
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import games  # noqa: E402


def run(map_name, num_envs, steps, repeats):
    env = games.make_starcraft(map_name, num_envs=num_envs, seed=0, backend="smax")
    obs, state, avail = env.reset()
    gen = torch.Generator().manual_seed(0)

    def loop(n):
        nonlocal obs, state, avail
        for _ in range(n):
            t_avail = torch.from_numpy(avail)
            torch.from_numpy(obs), torch.from_numpy(state)
            a = torch.multinomial(t_avail.reshape(-1, env.n_actions), 1, generator=gen)
            obs, state, avail, reward, done, info = env.step(a.reshape(num_envs, env.n_agents).numpy())
            torch.from_numpy(reward), torch.from_numpy(done)

    loop(20)  # compile and warm up
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        loop(steps)
        rates.append(steps * num_envs / (time.perf_counter() - t))
    env.close()
    return float(np.median(rates))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--maps", nargs="+", default=["3m", "2s3z", "27m_vs_30m"])
    p.add_argument("--num-envs", nargs="+", type=int, default=[1, 8, 64])
    p.add_argument("--steps", type=int, default=500, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"torch threads 1, cpu count {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    print("| map | " + " | ".join(f"E={e}" for e in args.num_envs) + " |")
    print("|---|" + "---:|" * len(args.num_envs))
    for m in args.maps:
        row = [run(m, e, args.steps if e < 64 else max(50, args.steps // 8), args.repeats) for e in args.num_envs]
        print(f"| {m} | " + " | ".join(f"{r:,.0f}" for r in row) + " |", flush=True)
    print(f"load after {os.getloadavg()[0]:.2f} (env steps/s, median of {args.repeats})")
