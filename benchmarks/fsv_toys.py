"""FSV on the two toy games, next to the paper (README section "fsv.py", benchmarks/fsv_results.md).

    python benchmarks/fsv_toys.py matrix   # Tables 4-6: alpha_final 1, 0.1, 0.01, 20k steps each
    python benchmarks/fsv_toys.py mtq      # Table 7: 20 seeds of MTQ with the default settings

Runs fsv.main in-process with the script's defaults (plus the flags shown in the output files) and
writes benchmarks/fsv_matrix_tables.txt, benchmarks/fsv_mtq.csv and benchmarks/fsv_mtq_paths.png
(the MTQ files are rewritten after every seed, so a stopped run keeps the seeds it finished).
TensorBoard runs go to ./runs as usual."""
import contextlib
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import fsv  # noqa: E402
import games  # noqa: E402


def matrix():
    out = []
    for alpha_final in (1.0, 0.1, 0.01):
        t = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            r = fsv.main(fsv.env_args("matrix", alpha_final=alpha_final, seed=1, save_model=False))
        err = np.abs(r["q_tot"] - games.MatrixGame.PAYOFF).max()
        table = fsv.format_tables(r["q1"], r["q2"], r["q_tot"], alpha_final)
        out.append(f"$ python fsv.py --env matrix --alpha-final {alpha_final:g}\n{table}\n"
                   f"greedy joint action {'ABC'[r['greedy'][0]]}{'ABC'[r['greedy'][1]]}, "
                   f"max |Q_tot - payoff| = {err:.2f}, {time.time() - t:.0f} s\n")
        print(out[-1], flush=True)
    (HERE / "fsv_matrix_tables.txt").write_text("\n".join(out))


def classify(u):
    """Table 7's columns: the optimum (5, 5), the sub-optimum (-5, -5), or neither (within 0.5 /
    1.0; the sub-optimum's basin is three times wider)."""
    if np.hypot(u[0] - 5, u[1] - 5) <= 0.5:
        return "opt"
    if np.hypot(u[0] + 5, u[1] + 5) <= 1.0:
        return "sub-opt"
    return "other"


def mtq(n_seeds=20):
    rows, paths = [], []
    for seed in range(1, n_seeds + 1):
        t = time.time()
        with contextlib.redirect_stdout(io.StringIO()):
            r = fsv.main(fsv.env_args("mtq", seed=seed, save_model=False))
        u = r["u"]
        rows.append(dict(seed=seed, u1=round(float(u[0]), 3), u2=round(float(u[1]), 3),
                         distance_to_opt=round(float(np.hypot(u[0] - 5, u[1] - 5)), 3),
                         reward=round(r["eval_return"], 3), result=classify(u),
                         wall_s=round(time.time() - t)))
        paths.append(np.array(r["path"]))
        print(rows[-1], flush=True)
        write_mtq(rows, paths)  # after every seed, so a stopped run keeps what it finished


def write_mtq(rows, paths):
    """fsv_mtq.csv (one row per seed) and fsv_mtq_paths.png (every seed's greedy-action path)."""
    with open(HERE / "fsv_mtq.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    n = len(rows)
    counts = {k: sum(r["result"] == k for r in rows) for k in ("opt", "sub-opt", "other")}
    print(f"FSV (ours): opt {counts['opt']}, sub-opt {counts['sub-opt']}, other {counts['other']} "
          f"of {n}; paper Table 7: 20 / 0 / 0 of 20", flush=True)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    grid = np.linspace(-10, 10, 201)
    a1, a2 = np.meshgrid(grid, grid, indexing="ij")
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    cs = ax.contourf(a1, a2, games.mtq_reward(a1, a2), levels=np.linspace(-60, 10, 29),
                     extend="min", cmap="viridis")
    fig.colorbar(cs, label="reward")
    for p in paths:
        ax.plot(p[:, 1], p[:, 2], "w-", lw=0.5, alpha=0.7)
        ax.plot(p[-1, 1], p[-1, 2], "r*", ms=6)
    ax.set_xlabel("u_1")
    ax.set_ylabel("u_2")
    ax.set_title(f"FSV on MTQ: greedy joint action, {n} seeds (opt {counts['opt']}/{n})")
    fig.tight_layout()
    fig.savefig(HERE / "fsv_mtq_paths.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    {"matrix": matrix, "mtq": mtq}[sys.argv[1]]()
