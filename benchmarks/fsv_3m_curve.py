"""FSV's SMAX 3m learning curve from a run's TensorBoard events (benchmarks/fsv_results.md).

    python fsv.py --map 3m --seed 1 --total-timesteps 500000 --eval-interval 10000
    python benchmarks/fsv_3m_curve.py runs/3m__fsv__1__<time>

Writes benchmarks/fsv_3m_curve.csv (eval win rate and return vs env steps, plus the training
win rate) and benchmarks/fsv_3m_curve.png."""
import csv
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

HERE = Path(__file__).resolve().parent


def main(run_dir):
    ea = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    ea.Reload()
    win = {e.step: e.value for e in ea.Scalars("eval/win_rate")}
    ret = {e.step: e.value for e in ea.Scalars("eval/episodic_return")}
    train = [(e.step, e.value) for e in ea.Scalars("charts/win_rate")]
    with open(HERE / "fsv_3m_curve.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_steps", "eval_win_rate", "eval_episodic_return"])
        for step in sorted(win):
            w.writerow([step, round(win[step], 4), round(ret[step], 3)])

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot([s for s, _ in train], [v for _, v in train], color="0.7", lw=0.8,
            label="training win rate (last 32 episodes, Boltzmann)")
    ax.plot(sorted(win), [win[s] for s in sorted(win)], "o-", ms=3, label="eval win rate (32 greedy episodes)")
    ax.axhline(0.9, color="k", ls=":", lw=0.8)
    ax.set_xlabel("env steps")
    ax.set_ylabel("win rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("FSV on SMAX 3m (seed 1, 2-core shared CPU)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "fsv_3m_curve.png", dpi=120)
    print(f"{len(win)} evaluations, last: step {max(win)} win rate {win[max(win)]:.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
