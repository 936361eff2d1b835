# MAZero (ICLR 2024): learning curves of mazero.py runs; README section "mazero.py".
"""Read the TensorBoard runs of mazero.py and write the greedy evaluation win rate against env steps as a CSV and a PNG.

    python benchmarks/mazero_curves.py --runs runs/3m__cpu_3m__1__* runs/3m__cpu_3m__2__* \
        --csv benchmarks/mazero_3m.csv --png benchmarks/mazero_3m.png --title "MAZero, SMAX 3m, --preset cpu"

CSV columns: run, seed, env_steps, eval_win_rate, eval_episodic_return, updates, wall_seconds (since the run's first
event). The PNG has one line per run and the mean over runs where they share evaluation steps.
"""

import argparse
import csv
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def load(run_dir):
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    win = ea.Scalars("eval/win_rate")
    ret = {e.step: e.value for e in ea.Scalars("eval/episodic_return")}
    upd = ea.Scalars("charts/updates") if "charts/updates" in ea.Tags()["scalars"] else []
    t0 = min(e.wall_time for e in win)
    rows = []
    for e in win:
        done = [u.value for u in upd if u.step <= e.step]
        rows.append((e.step, e.value, ret.get(e.step, float("nan")), int(done[-1]) if done else 0, e.wall_time - t0))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="run directories (runs/<run_name>)")
    p.add_argument("--csv", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--title", default="MAZero")
    a = p.parse_args()
    curves = {}
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "seed", "env_steps", "eval_win_rate", "eval_episodic_return", "updates", "wall_seconds"])
        for run in a.runs:
            name = Path(run).name
            seed = name.split("__")[2]
            curves[name] = load(run)
            for row in curves[name]:
                w.writerow([name, seed, row[0], f"{row[1]:.4f}", f"{row[2]:.3f}", row[3], f"{row[4]:.0f}"])
    plt.figure(figsize=(6, 4))
    for name, rows in curves.items():
        plt.plot([r[0] for r in rows], [r[1] for r in rows], alpha=0.6, label=f"seed {name.split('__')[2]}")
    common = sorted(set.intersection(*(set(r[0] for r in rows) for rows in curves.values())))
    if len(curves) > 1 and common:
        mean = [np.mean([dict((r[0], r[1]) for r in rows)[s] for rows in curves.values()]) for s in common]
        plt.plot(common, mean, color="black", lw=2, label="mean")
    plt.axhline(0.9, color="grey", ls=":", lw=1)
    plt.xlabel("env steps")
    plt.ylabel("greedy eval win rate")
    plt.ylim(-0.02, 1.02)
    plt.title(a.title)
    plt.legend()
    plt.tight_layout()
    os.makedirs(os.path.dirname(a.png) or ".", exist_ok=True)
    plt.savefig(a.png, dpi=120)


if __name__ == "__main__":
    main()
