"""Win rate of a hand-written policy on SMAX maps, the yardstick for the learned ones: each live ally attacks the
enemy with the least health in its range, else walks towards the closest live enemy
(`games.SMAXStarCraft.scripted_actions`). One seed = one env seed (the enemy heuristic and start positions); the
episodes of a seed are the first `--episodes` to end over `--num-envs` parallel games.

    python benchmarks/scripted_baseline.py --maps 3m --seeds 0 1 2 3 --episodes 128 \
        --out benchmarks/results/scripted_3m

Writes <out>.csv (the long CSV of benchmarks/sweep.py: script `scripted`, variant `attack_weakest`, step 0, metrics
eval/win_rate, eval/episodic_return, eval/episode_length, eval/timeout) and <out>_summary.csv (mean and 95%
bootstrap interval over the seeds, as `sweep.py final`).
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]
import games  # noqa: E402
import sweep  # noqa: E402

METRICS = ("eval/win_rate", "eval/episodic_return", "eval/episode_length", "eval/timeout")


def play(map_name, seed, episodes, num_envs):
    """The first `episodes` episodes to end: their mean win, return, length and time-out rate."""
    try:
        env = games.make_starcraft(map_name, num_envs=num_envs, seed=seed, backend="smax")
    except (ValueError, RuntimeError) as e:
        sweep.fail(str(e).splitlines()[0])
    obs, state, avail = env.reset()
    ended = []
    while len(ended) < episodes:
        obs, state, avail, reward, done, info = env.step(env.scripted_actions(state, avail))
        ended += [(info["won"][e], info["episode_return"][e], info["episode_length"][e], info["timeout"][e])
                  for e in np.flatnonzero(done)]
    env.close()
    return dict(zip(METRICS, np.mean(np.array(ended[:episodes], float), axis=0)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--maps", nargs="+", default=["3m"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    p.add_argument("--episodes", type=int, default=128, help="episodes per seed")
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--out", required=True, help="output prefix: <out>.csv and <out>_summary.csv")
    a = p.parse_args(argv)
    if a.episodes < 1 or a.num_envs < 1:
        sweep.fail("--episodes and --num-envs must be >= 1")
    out = sweep.output_path(a.out)
    rows, entries = [], []
    for map_name in a.maps:
        per_seed = []
        for seed in a.seeds:
            m = play(map_name, seed, a.episodes, a.num_envs)
            per_seed.append(m)
            rows += [("scripted", map_name, "attack_weakest", seed, 0, k, v) for k, v in m.items()]
            print(f"[scripted] {map_name} seed {seed}: win rate {m['eval/win_rate']:.3f}, return "
                  f"{m['eval/episodic_return']:.2f}, length {m['eval/episode_length']:.1f}, time-outs "
                  f"{m['eval/timeout']:.3f} ({a.episodes} episodes)", flush=True)
        for k in METRICS:
            x = [m[k] for m in per_seed]
            entries.append(("scripted", map_name, "attack_weakest", 0, k, x, float(np.mean(x)),
                            *sweep.bootstrap_ci(x, ("scripted", map_name, "attack_weakest", 0, k))))
        *_, mean, lo, hi = entries[-len(METRICS)]
        print(f"[scripted] {map_name}, {len(a.seeds)} seeds: win rate {mean:.3f} [{lo:.3f}, {hi:.3f}]", flush=True)
    sweep.write_long_csv(f"{out}.csv", rows)
    sweep.write_seed_summary(f"{out}_summary.csv", entries)
    print(f"[scripted] wrote {out}.csv and {out}_summary.csv")


if __name__ == "__main__":
    main()
