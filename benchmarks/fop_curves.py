"""Greedy evaluation win rate (and return) against env steps, from fop.py TensorBoard runs, as a CSV and a PNG.

    python benchmarks/fop_curves.py --out benchmarks/fop_3m \
        "authors' flags=runs/3m__fop__1__<time>" "paper defaults=runs/3m__fop__1__<time>"

Writes <out>.csv (label, step, eval_win_rate, eval_return) and <out>.png.
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="label=run_dir")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rows = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for spec in a.runs:
        label, path = spec.split("=", 1)
        acc = EventAccumulator(path, size_guidance={"scalars": 0})
        acc.Reload()
        win = {e.step: e.value for e in acc.Scalars("eval/win_rate")}
        ret = {e.step: e.value for e in acc.Scalars("eval/episodic_return")}
        steps = sorted(win)
        rows += [{"label": label, "step": s, "eval_win_rate": win[s], "eval_return": ret[s]} for s in steps]
        axes[0].plot(steps, [win[s] for s in steps], label=label)
        axes[1].plot(steps, [ret[s] for s in steps], label=label)
    axes[0].set(xlabel="env steps", ylabel="greedy eval win rate (32 episodes)", ylim=(-0.02, 1.02))
    axes[1].set(xlabel="env steps", ylabel="greedy eval return (max 20)")
    axes[0].axhline(0.9, color="grey", lw=0.8, ls="--")
    axes[0].legend(fontsize=8)
    fig.suptitle("FOP on SMAX 3m (fop.py, 2-core shared CPU)")
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=100)
    with open(a.out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["label", "step", "eval_win_rate", "eval_return"])
        w.writeheader()
        w.writerows(rows)
    print(f"{a.out}.csv, {a.out}.png")
