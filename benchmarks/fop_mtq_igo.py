"""FOP on Max of Two Quadratics: do the *individual* Q_i and pi_i concentrate at the joint optimum (5, 5)? (issue #14)

    OMP_NUM_THREADS=1 python benchmarks/fop_mtq_igo.py --seeds 20 --budgets 1 4 --tag defaults
    OMP_NUM_THREADS=1 python benchmarks/fop_mtq_igo.py --seeds 5 --tag uniform --set explore_steps=None buffer_size=20000

(the second: uniform actions throughout, the previous defaults; results in benchmarks/fop_results.md)

Each seed is one `fop.py --env mtq` run with its defaults (plus --set overrides), called in-process, at the default
update budget (--updates-per-episode of --env mtq) and at k times it (--budgets). At the end of training it records
the greedy joint action (tanh of the policy means), the argmax over u_i in [-10, 10] of each agent's individual critic
Q_i(u_i) = min_j Q_i^j (the Q-value Eq. 11 trains the policy on) and the mode of each pi_i. Writes

  benchmarks/fop_mtq_igo_<tag>.csv      one row per (budget, seed)
  benchmarks/fop_mtq_igo_<tag>_x<k>.png per budget: per seed, the reward surface with the greedy joint action (star)
                                        and the critics' argmax (cross), Q_1(u_1) and pi_1 along the top, Q_2(u_2) and
                                        pi_2 along the right (each curve scaled to its panel)

and prints the counts within 0.5 of (5, 5) and the median distances (the CSV is rewritten after every seed).
"""
import argparse
import ast
import contextlib
import csv
import io
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import fop  # noqa: E402
import games  # noqa: E402


def run_seed(seed, budget, overrides):
    defaults = fop.ENV_DEFAULTS["mtq"]
    args = fop.Args(**{**defaults, "env": "mtq", "seed": seed, "save_model": False, **overrides})
    args.updates_per_episode *= budget
    with contextlib.redirect_stdout(io.StringIO()):
        return fop.train_mtq(args)


def summary(rows, budget):
    sel = [r for r in rows if r["budget"] == budget]
    n = len(sel)
    joint = sum(r["joint_dist"] <= 0.5 for r in sel)
    critics = sum(r["critic_dist"] <= 0.5 for r in sel)
    return (f"x{budget}: {n} seeds; greedy joint action within 0.5 of (5, 5): {joint}/{n} (median distance "
            f"{np.median([r['joint_dist'] for r in sel]):.2f}); argmax (Q_1, Q_2) within 0.5: {critics}/{n} (median "
            f"{np.median([r['critic_dist'] for r in sel]):.2f})")


def plot(curves, rows, budget, filename, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [(r, c) for r, c in zip(rows, curves) if r["budget"] == budget]
    cols = min(5, len(sel))
    nrows = (len(sel) + cols - 1) // cols
    fig = plt.figure(figsize=(3.1 * cols, 3.1 * nrows))
    grid = np.linspace(-10, 10, 201)
    g1, g2 = np.meshgrid(grid, grid)
    surface = games.mtq_reward(g1, g2)
    for k, (row, c) in enumerate(sel):
        x0, y0 = (k % cols) / cols, 1 - (k // cols + 1) / nrows
        w, h = 1 / cols, 1 / nrows
        ax = fig.add_axes([x0 + 0.12 * w, y0 + 0.10 * h, 0.62 * w, 0.58 * h])
        ax.contourf(g1, g2, surface, levels=np.linspace(-60, 10, 15), extend="min", cmap="viridis")
        ax.plot(row["u1"], row["u2"], "r*", ms=9)
        ax.plot(row["q1_argmax"], row["q2_argmax"], "wx", ms=7, mew=1.5)
        ax.set(xlim=(-10, 10), ylim=(-10, 10), xticks=[-5, 0, 5], yticks=[-5, 0, 5])
        ax.tick_params(labelsize=6)
        top = fig.add_axes([x0 + 0.12 * w, y0 + 0.70 * h, 0.62 * w, 0.20 * h], sharex=ax)
        right = fig.add_axes([x0 + 0.76 * w, y0 + 0.10 * h, 0.20 * w, 0.58 * h], sharey=ax)
        for axis, i in ((top, 0), (right, 1)):
            q, pi = c["q"][i], c["pi"][i]
            qn = (q - q.min()) / max(q.max() - q.min(), 1e-9)
            pn = pi / max(pi.max(), 1e-9)
            args_q, args_p = (c["grid"], qn), (c["grid"], pn)
            if i == 1:
                args_q, args_p = (qn, c["grid"]), (pn, c["grid"])
            axis.plot(*args_q, "C0", lw=1, label="Q_i")
            axis.plot(*args_p, "C3", lw=1, label="pi_i")
            axis.axis("off")
        top.set_title(f"seed {row['seed']}: ({row['u1']:.2f}, {row['u2']:.2f})", fontsize=7)
        if k == 0:
            top.legend(fontsize=5, loc="upper left", frameon=False)
    fig.suptitle(title, fontsize=9, y=0.999)
    fig.savefig(filename, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--budgets", type=int, nargs="+", default=[1, 4], help="multiples of the default updates/episode")
    p.add_argument("--set", nargs="*", default=[], help="fop.Args overrides, e.g. explore_steps=None")
    p.add_argument("--tag", required=True, help="suffix of the output files")
    a = p.parse_args()
    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in a.set)}
    stem = os.path.join(HERE, f"fop_mtq_igo_{a.tag}")
    rows, curves, start, cwd = [], [], time.time(), os.getcwd()
    scratch = tempfile.mkdtemp(prefix="fop_mtq_igo_")
    os.chdir(scratch)  # runs/ of every seed goes to a scratch directory
    try:
        for budget in a.budgets:
            for seed in range(a.first_seed, a.first_seed + a.seeds):
                t = time.time()
                r = run_seed(seed, budget, overrides)
                c = r["individual"]
                u = r["final_action"]
                q_arg = [float(c["grid"][np.argmax(q)]) for q in c["q"]]
                pi_mode = [float(c["grid"][np.argmax(pi)]) for pi in c["pi"]]
                rows.append({"tag": a.tag, "set": " ".join(a.set), "budget": budget, "seed": seed,
                             "updates": r["updates"], "u1": round(float(u[0]), 3), "u2": round(float(u[1]), 3),
                             "joint_dist": round(float(np.hypot(u[0] - 5, u[1] - 5)), 3),
                             "q1_argmax": q_arg[0], "q2_argmax": q_arg[1],
                             "critic_dist": round(float(np.hypot(q_arg[0] - 5, q_arg[1] - 5)), 3),
                             "pi1_mode": pi_mode[0], "pi2_mode": pi_mode[1], "reward": round(r["reward"], 3),
                             "seconds": round(time.time() - t, 1)})
                curves.append(c)
                print(rows[-1], flush=True)
                with open(stem + ".csv", "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(rows[0]))
                    w.writeheader()
                    w.writerows(rows)
            print(summary(rows, budget), flush=True)
            plot(curves, rows, budget, f"{stem}_x{budget}.png",
                 f"FOP on MTQ ({a.tag}{': ' + ' '.join(a.set) if a.set else ''}), {budget}x the default updates per "
                 f"episode. Star: greedy joint action; cross: argmax of (Q_1, Q_2); curves: Q_i (blue), pi_i (red)")
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    for budget in a.budgets:
        print(summary(rows, budget))
    print(f"{time.time() - start:.0f} s; {stem}.csv")
