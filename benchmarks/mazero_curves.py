# MAZero (ICLR 2024): learning curves of mazero.py runs; README section "mazero.py".
"""Read the TensorBoard runs of mazero.py and write the greedy evaluation win rate against env steps as a CSV and a PNG.

    python benchmarks/mazero_curves.py --runs runs/3m__cpu_3m__1__* runs/3m__cpu_3m__2__* \
        --csv benchmarks/mazero_3m.csv --png benchmarks/mazero_3m.png --title "MAZero, SMAX 3m, --preset cpu"

CSV columns: run, seed, env_steps, eval_win_rate, eval_episodic_return, updates, wall_seconds (seconds spent in the
training loop up to that step, read off charts/SPS). The PNG has one line per run and the mean over runs where they
share evaluation steps.

A resumed run (mazero.py --checkpoint) writes one more event file into the same run directory, starting from the
checkpoint's step. What the interrupted process logged after its checkpoint belongs to a trajectory that was thrown
away, so it is dropped (as TensorBoard does for a restarted run), and the time between the interruption and the resume
is not counted in wall_seconds.
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
    sessions = [EventAccumulator(str(f), size_guidance={"scalars": 0}).Reload()  # one event file per process
                for f in Path(run_dir).glob("events.out.tfevents.*")]
    sessions.sort(key=lambda ea: ea.FirstEventTimestamp())

    def scalars(ea, tag):
        return ea.Scalars(tag) if tag in ea.Tags()["scalars"] else []

    # charts/SPS is logged after every vectorised env step (num_envs env steps), so a resumed session's first SPS step
    # is its checkpoint's step + num_envs
    sps = [scalars(ea, "charts/SPS") for ea in sessions]
    E = min([int(np.diff([e.step for e in s]).min()) for s in sps if len(s) > 1] or [sps[0][0].step])
    resumed_at = [s[0].step - E if s else min(e.step for t in ea.Tags()["scalars"] for e in ea.Scalars(t))
                  for ea, s in zip(sessions, sps)]

    def trajectory(tag):
        """The events of the final trajectory: a session keeps the earlier sessions' events up to its checkpoint's
        step, and its own event wins where both logged the same step (the evaluation due at the checkpoint's step)."""
        kept = {}
        for ea, f in zip(sessions, resumed_at):
            kept = {step: e for step, e in kept.items() if step <= f}
            kept.update((e.step, e) for e in scalars(ea, tag))
        return [kept[step] for step in sorted(kept)]

    # training time: charts/SPS = (step - the session's first step) / (seconds since the session's loop started)
    steps, times = [0], [0.0]
    for s, f in zip(sps, resumed_at):
        while steps[-1] > f:
            steps.pop(), times.pop()
        steps += [e.step for e in s]
        times += [times[-1] + (e.step - f) / e.value for e in s]
    ret = {e.step: e.value for e in trajectory("eval/episodic_return")}
    upd = trajectory("charts/updates")
    rows = []
    for e in trajectory("eval/win_rate"):
        done = [u.value for u in upd if u.step <= e.step]
        rows.append((e.step, e.value, ret.get(e.step, float("nan")), int(done[-1]) if done else 0,
                     float(np.interp(e.step, steps, times))))
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
