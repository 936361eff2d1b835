"""FOP on the paper's toy games over many seeds: how often it reaches the global optimum (paper Sec. 5.1: always).

    python benchmarks/fop_toys.py --env mtq --seeds 20                       # -> benchmarks/fop_mtq_seeds.csv
    python benchmarks/fop_toys.py --env matrix --seeds 10                    # -> benchmarks/fop_matrix_seeds.csv
    python benchmarks/fop_toys.py --env mtq --seeds 20 --set paper_gradient=True --tag paper_gradient

Each seed is one `fop.py --env <game>` run with its default settings (plus --set overrides), called in-process.
MTQ: success = greedy joint action within 0.5 of (5, 5); the first seed's learning-path PNG is copied next to the CSV.
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


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", choices=["matrix", "mtq"], required=True)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--set", nargs="*", default=[], help="Args overrides, e.g. paper_gradient=True lr=1e-3")
    p.add_argument("--tag", default="", help="suffix of the output files")
    a = p.parse_args()
    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in a.set)}
    stem = os.path.join(HERE, f"fop_{a.env}_seeds{'_' + a.tag if a.tag else ''}")
    rows, start, cwd = [], time.time(), os.getcwd()
    scratch = tempfile.mkdtemp(prefix="fop_toys_")
    os.chdir(scratch)  # runs/ of every seed goes to a scratch directory
    try:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            args = fop.Args(**{**fop.ENV_DEFAULTS[a.env], "env": a.env, "seed": seed, "save_model": False,
                               **overrides})
            t = time.time()
            with contextlib.redirect_stdout(io.StringIO()):
                r = (fop.train_mtq if a.env == "mtq" else fop.train)(args)
            if a.env == "mtq":
                u = r["final_action"]
                ok = bool(np.hypot(u[0] - 5, u[1] - 5) <= 0.5)
                rows.append({"seed": seed, "u1": round(float(u[0]), 3), "u2": round(float(u[1]), 3),
                             "reward": round(r["reward"], 3), "success": int(ok), "seconds": round(time.time() - t)})
                if seed == a.first_seed:
                    shutil.copy(f"runs/{r['run_name']}/mtq_path.png", stem.replace("_seeds", "_path") + ".png")
            else:
                ok = r["greedy"] == (0, 0) and abs(r["q_jt"][0, 0] - 8) < 1
                err = float(np.abs(r["q_jt"] - games.MatrixGame.PAYOFF).max())
                rows.append({"seed": seed, "greedy": "ABC"[r["greedy"][0]] + "ABC"[r["greedy"][1]],
                             "q_jt_AA": round(float(r["q_jt"][0, 0]), 2), "q_1": rounded(r["q_i"][0]),
                             "q_2": rounded(r["q_i"][1]), "success": int(ok),
                             "max_cell_error": round(err, 2), "q_jt": rounded(r["q_jt"].flatten(), 2),
                             "seconds": round(time.time() - t)})
            print(rows[-1], flush=True)
            with open(stem + ".csv", "w", newline="") as f:  # after every seed, so a stopped sweep keeps its rows
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{a.env}: {sum(r['success'] for r in rows)}/{len(rows)} seeds reach the global optimum "
          f"({time.time() - start:.0f} s); {stem}.csv")
    if a.env == "matrix":
        print(f"max cell error |Q_jt - payoff| over the seeds: {max(r['max_cell_error'] for r in rows):.2f} "
              f"(per seed: {[r['max_cell_error'] for r in rows]})")
