"""Learning curves of the mag.py runs in a directory (benchmarks/mag_learning_curve.sh): greedy eval win rate
and the authors' running training win rate (last 20 stochastic episodes) against real env steps.

    python benchmarks/mag_curves.py /tmp/magbench/runs --out benchmarks/mag_learning_curve

wall_seconds is the time since the run's first evaluation; for a resumed run it includes the pause.
"""
import argparse
import glob
import os

import matplotlib
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs")
    p.add_argument("--out", default="benchmarks/mag_learning_curve")
    a = p.parse_args()
    curves = {}
    for run in sorted(glob.glob(os.path.join(a.runs, "*"))):
        ea = EventAccumulator(run, size_guidance={"scalars": 0})
        ea.Reload()
        tags = ea.Tags()["scalars"]
        if "eval/win_rate" not in tags:
            continue
        label = "MAG" if "mag/chosen_rm" in tags else "MAMBA (--no-mag)"
        # a resumed run restarts at its checkpoint and logs some steps again (a second event file in the
        # same directory): keep the last value logged at each step, i.e. the resumed run's
        curves[label] = {t: sorted({e.step: (e.step, e.value, e.wall_time) for e in ea.Scalars(t)}.values())
                         for t in ("eval/win_rate", "eval/episodic_return", "charts/win_rate")}
    with open(a.out + ".csv", "w") as f:
        f.write("variant,env_steps,eval_win_rate,eval_episodic_return,wall_seconds\n")
        for label, c in curves.items():
            t0 = c["eval/win_rate"][0][2]
            for (s, w, wt), (_, r, _) in zip(c["eval/win_rate"], c["eval/episodic_return"]):
                f.write(f"{label},{s},{w:.4f},{r:.4f},{wt - t0:.0f}\n")
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for label, c in curves.items():
        line, = ax[0].plot(*zip(*[(s, w) for s, w, _ in c["eval/win_rate"]]), "o-", label=f"{label}, greedy eval")
        ax[0].plot(*zip(*[(s, w) for s, w, _ in c["charts/win_rate"]]), color=line.get_color(), alpha=0.4,
                   label=f"{label}, running train (last 20)")
        ax[1].plot(*zip(*[(s, r) for s, r, _ in c["eval/episodic_return"]]), "o-", label=label)
    ax[0].set(xlabel="real env steps", ylabel="win rate", title="SMAX 3m, CPU preset, seed 1")
    ax[1].set(xlabel="real env steps", ylabel="greedy episodic return (max 20)", title="eval return")
    ax[0].legend(fontsize=7)
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=120)
    print(open(a.out + ".csv").read())


if __name__ == "__main__":
    main()
