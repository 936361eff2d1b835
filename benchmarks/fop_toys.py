"""FOP on the paper's toy games over many seeds: how often it reaches the global optimum (paper Sec. 5.1: always).

    python benchmarks/fop_toys.py --env mtq --seeds 20 --budgets 1 4     # -> benchmarks/fop_mtq_seeds.csv, _x1/_x4.png
    python benchmarks/fop_toys.py --env matrix --seeds 10                # -> benchmarks/fop_matrix_seeds.csv
    python benchmarks/fop_toys.py --env mtq --seeds 5 --budgets 1 4 --set explore_steps=None --tag uniform

Each seed is one `fop.py --env <game>` run with its default settings (plus --set overrides of fop.Args), called
in-process; runs/ goes to a scratch directory. The CSV is rewritten after every seed, so a stopped study keeps its rows.

MTQ (issue #14: do the *individual* Q_i and pi_i find (5, 5)?): each seed runs at the default updates per episode and
at k times it (--budgets). At the end of training a row records the greedy joint action (tanh of the policy means),
the argmax over u_i in [-10, 10] of each agent's critic Q_i(u_i) = min_j Q_i^j (what Eq. 11 trains pi_i on) and the
mode of each pi_i; success = greedy joint action within 0.5 of (5, 5). Per budget a PNG (`_x<k>.png`) draws, per
seed, the reward surface with the greedy joint action (star) and the critics' argmax (cross), Q_1(u_1) and pi_1 along
the top, Q_2(u_2) and pi_2 along the right (each curve scaled to its panel); the first seed's learning path at the
first budget is copied to fop_mtq_path<_tag>.png.
Matrix: success = greedy joint action (A, A) and Q_jt(A, A) within 1 of 8; max_cell_error = max over the nine cells of
|Q_jt - payoff| (Table 1b reproduces the payoff in every cell); q_jt: the nine cells, rows u_1 = A, B, C.
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


def rounded(values, digits=1):
    return [round(float(v), digits) for v in values]


def dist55(u1, u2):
    return round(float(np.hypot(u1 - 5, u2 - 5)), 3)


def mtq_row(r, seed, budget, overrides, seconds):
    """One MTQ seed: the greedy joint action, each critic's argmax and each policy's mode, and their distances."""
    c, u = r["individual"], r["final_action"]
    q_arg = [float(c["grid"][np.argmax(q)]) for q in c["q"]]
    pi_mode = [float(c["grid"][np.argmax(pi)]) for pi in c["pi"]]
    joint = dist55(*u)
    return {"set": " ".join(overrides), "budget": budget, "seed": seed, "updates": r["updates"],
            "u1": round(float(u[0]), 3), "u2": round(float(u[1]), 3), "joint_dist": joint,
            "q1_argmax": q_arg[0], "q2_argmax": q_arg[1], "critic_dist": dist55(*q_arg),
            "pi1_mode": pi_mode[0], "pi2_mode": pi_mode[1], "reward": round(r["reward"], 3),
            "success": int(joint <= 0.5), "seconds": round(seconds, 1)}


def mtq_summary(rows, budget):
    sel = [r for r in rows if r["budget"] == budget]
    n = len(sel)
    count = lambda key: sum(r[key] <= 0.5 for r in sel)  # noqa: E731
    median = lambda key: np.median([r[key] for r in sel])  # noqa: E731
    return (f"x{budget}: {n} seeds; greedy joint action within 0.5 of (5, 5): {count('joint_dist')}/{n} (median "
            f"distance {median('joint_dist'):.2f}); argmax (Q_1, Q_2) within 0.5: {count('critic_dist')}/{n} (median "
            f"{median('critic_dist'):.2f})")


def mtq_plot(curves, rows, budget, filename, title):
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
            xy_q, xy_p = ((c["grid"], qn), (c["grid"], pn)) if i == 0 else ((qn, c["grid"]), (pn, c["grid"]))
            axis.plot(*xy_q, "C0", lw=1, label="Q_i")
            axis.plot(*xy_p, "C3", lw=1, label="pi_i")
            axis.axis("off")
        top.set_title(f"seed {row['seed']}: ({row['u1']:.2f}, {row['u2']:.2f})", fontsize=7)
        if k == 0:
            top.legend(fontsize=5, loc="upper left", frameon=False)
    fig.suptitle(title, fontsize=9, y=0.999)
    fig.savefig(filename, dpi=90)
    plt.close(fig)


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", choices=["matrix", "mtq"], required=True)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--budgets", type=int, nargs="+", default=[1],
                   help="MTQ: multiples of the default updates per episode, each run on every seed")
    p.add_argument("--set", nargs="*", default=[], help="fop.Args overrides, e.g. paper_gradient=True lr=1e-3")
    p.add_argument("--tag", default="", help="suffix of the output files")
    a = p.parse_args()
    if a.env == "matrix" and a.budgets != [1]:
        p.error("--budgets is for --env mtq")
    if min(a.budgets) < 1:
        p.error("--budgets must be >= 1")
    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in a.set)}
    suffix = "_" + a.tag if a.tag else ""
    stem = os.path.join(HERE, f"fop_{a.env}_seeds{suffix}")
    rows, curves, start, cwd = [], [], time.time(), os.getcwd()
    scratch = tempfile.mkdtemp(prefix="fop_toys_")
    os.chdir(scratch)  # runs/ of every seed goes to a scratch directory
    try:
        for budget in a.budgets:
            for seed in range(a.first_seed, a.first_seed + a.seeds):
                args = fop.Args(**{**fop.ENV_DEFAULTS[a.env], "env": a.env, "seed": seed, "save_model": False,
                                   **overrides})
                args.updates_per_episode *= budget
                t = time.time()
                with contextlib.redirect_stdout(io.StringIO()):
                    r = (fop.train_mtq if a.env == "mtq" else fop.train)(args)
                if a.env == "mtq":
                    rows.append(mtq_row(r, seed, budget, a.set, time.time() - t))
                    curves.append(r["individual"])
                    if seed == a.first_seed and budget == a.budgets[0]:
                        shutil.copy(f"runs/{r['run_name']}/mtq_path.png",
                                    os.path.join(HERE, f"fop_mtq_path{suffix}.png"))
                else:
                    ok = r["greedy"] == (0, 0) and abs(r["q_jt"][0, 0] - 8) < 1
                    err = float(np.abs(r["q_jt"] - games.MatrixGame.PAYOFF).max())
                    rows.append({"seed": seed, "greedy": "ABC"[r["greedy"][0]] + "ABC"[r["greedy"][1]],
                                 "q_jt_AA": round(float(r["q_jt"][0, 0]), 2), "q_1": rounded(r["q_i"][0]),
                                 "q_2": rounded(r["q_i"][1]), "success": int(ok),
                                 "max_cell_error": round(err, 2), "q_jt": rounded(r["q_jt"].flatten(), 2),
                                 "seconds": round(time.time() - t)})
                print(rows[-1], flush=True)
                write_csv(stem + ".csv", rows)
            if a.env == "mtq":
                print(mtq_summary(rows, budget), flush=True)
                mtq_plot(curves, rows, budget, f"{stem}_x{budget}.png",
                         f"FOP on MTQ{': ' + ' '.join(a.set) if a.set else ''}, {budget}x the default updates per "
                         f"episode. Star: greedy joint action; cross: argmax of (Q_1, Q_2); curves: Q_i (blue), "
                         f"pi_i (red)")
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    if a.env == "mtq":
        for budget in a.budgets:
            print(mtq_summary(rows, budget))
    else:
        print(f"matrix: {sum(r['success'] for r in rows)}/{len(rows)} seeds reach the global optimum; max cell error "
              f"|Q_jt - payoff| over the seeds: {max(r['max_cell_error'] for r in rows):.2f} (per seed: "
              f"{[r['max_cell_error'] for r in rows]})")
    print(f"{time.time() - start:.0f} s; {stem}.csv")
