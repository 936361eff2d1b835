"""benchmarks/sweep.py: a real two-seed sweep of fop.py's matrix game through both launchers, resume and skip, a
failing run, the plot's CSVs and intervals on event files written here, and `final`'s paired evaluations."""
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SWEEP = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep.py"
TINY = "--total-timesteps 128 --eval-interval 64 --eval-episodes 4"


def sweep(*args, cwd):
    return subprocess.run([sys.executable, str(SWEEP), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def attempts(run_dir):
    return json.loads((run_dir / "status.json").read_text())["attempts"]


def read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """Two seeds of fop.py --env matrix through the local launcher, then the same command again."""
    cwd = tmp_path_factory.mktemp("local")
    args = ["run", "--sweep", "toy", "--scripts", "fop", "--env", "matrix", "--seeds", "1", "2", "--flags", TINY,
            "--variant", "base=", "--workers", "2"]
    first = sweep(*args, cwd=cwd)
    second = sweep(*args, cwd=cwd)
    return cwd, first, second


def test_local_launcher_runs_every_seed_in_its_own_directory(local_sweep):
    cwd, first, _ = local_sweep
    assert first.returncode == 0, first.stdout + first.stderr
    for seed in (1, 2):
        run = cwd / "runs" / "sweeps" / "toy" / f"fop__matrix__base__{seed}"
        (record,) = attempts(run)
        assert record["exit_code"] == 0 and record["how"] == "new"
        assert record["command"].endswith(f"--env matrix {TINY} --seed {seed}")
        assert list(run.glob("runs/matrix__fop__*/events.out.tfevents.*"))
        assert list(run.glob("runs/matrix__fop__*/checkpoint.pt"))
        assert "checkpoint: runs/matrix__fop__" in (run / "log.txt").read_text()  # the script's output is kept
    assert first.stdout.count("[sweep] start ") == 2 and "2/2 finished (0 failed)" in first.stdout


def test_rerunning_a_sweep_skips_finished_runs(local_sweep):
    cwd, _, second = local_sweep
    assert second.returncode == 0, second.stdout + second.stderr
    assert "2 finished before or running elsewhere, skipped" in second.stdout and "[sweep] start " not in second.stdout
    assert len(attempts(cwd / "runs" / "sweeps" / "toy" / "fop__matrix__base__1")) == 1


def test_final_evaluates_each_finished_checkpoint_per_mode_paired_by_seed(local_sweep, tmp_path):
    """`final` on a copy of the two-seed sweep: a long CSV row per seed and mode at the checkpoint's step, the paired
    difference in the summary equal to the per-seed differences, a cache on the second call, unfinished runs skipped."""
    cwd, _, _ = local_sweep
    toy = tmp_path / "toy"
    shutil.copytree(cwd / "runs" / "sweeps" / "toy", toy)
    modes = ["--mode", "four=", "--mode", "two=--eval-episodes 2"]
    out = sweep("final", str(toy), *modes, "--out", str(tmp_path / "fin"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "over 4 episodes" in out.stdout and "over 2 episodes" in out.stdout and "(cached)" not in out.stdout
    rows = read_csv(tmp_path / "fin.csv")
    assert rows[0] == ["script", "map", "variant", "seed", "step", "metric", "value"]
    win = {(r[3], r[5]): float(r[6]) for r in rows[1:] if r[5].endswith("/win_rate")}
    assert set(win) == {(s, f"final/{m}/win_rate") for s in ("1", "2") for m in ("four", "two")}
    assert {r[4] for r in rows[1:]} == {"128"}  # the checkpoint's step, from the script's eval line
    summ = {(r[3], r[5]): float(r[6]) for r in read_csv(tmp_path / "fin_summary.csv")[1:]}
    diffs = [win[(s, "final/two/win_rate")] - win[(s, "final/four/win_rate")] for s in ("1", "2")]
    assert summ[("seeds", "final/two-four/win_rate")] == 2
    assert summ[("mean", "final/two-four/win_rate")] == pytest.approx(np.mean(diffs), abs=1e-5)
    assert summ[("mean", "final/four/win_rate")] == pytest.approx(np.mean([win[(s, "final/four/win_rate")]
                                                                           for s in ("1", "2")]), abs=1e-5)
    cache = json.loads((toy / "fop__matrix__base__1" / "final.json").read_text())
    assert set(cache) == {"four", "two"} and cache["two"]["key"]["flags"] == ["--eval-episodes", "2"]

    status = json.loads((toy / "fop__matrix__base__2" / "status.json").read_text())
    status["attempts"][-1]["exit_code"] = None  # seed 2 unfinished
    (toy / "fop__matrix__base__2" / "status.json").write_text(json.dumps(status))
    again = sweep("final", str(toy), *modes, "--out", str(tmp_path / "fin2"), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("(cached)") == 2 and "fop__matrix__base__2: not finished" in again.stderr
    assert {r[3] for r in read_csv(tmp_path / "fin2.csv")[1:]} == {"1"}

    bad = sweep("final", str(toy), "--mode", "x=--no-such-flag", "--out", str(tmp_path / "fin3"), cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 2  # the skip line and one error line
    assert "mode x" in bad.stderr and "no-such-flag" in bad.stderr
    clash = sweep("final", str(toy), "--mode", "y=--checkpoint z", "--out", str(tmp_path / "f4"), cwd=tmp_path)
    assert clash.returncode == 2 and "set by `final` itself" in clash.stderr

    # seed 2's checkpoint gone: its rows in the first call's CSV stand in for it, paired with seed 1's evaluation
    shutil.rmtree(toy / "fop__matrix__base__2")
    kept = sweep("final", str(tmp_path / "fin.csv"), str(toy), *modes, "--out", str(tmp_path / "f5"), cwd=tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert kept.stdout.count("(from a CSV)") == 2 and kept.stdout.count("(cached)") == 2
    assert {(r[3], r[5]): float(r[6]) for r in read_csv(tmp_path / "f5.csv")[1:] if r[5].endswith("/win_rate")} == win
    summ5 = {(r[3], r[5]): float(r[6]) for r in read_csv(tmp_path / "f5_summary.csv")[1:]}
    assert summ5[("seeds", "final/two-four/win_rate")] == 2
    assert summ5[("mean", "final/two-four/win_rate")] == pytest.approx(np.mean(diffs), abs=1e-5)
    other = sweep("final", str(tmp_path / "fin.csv"), str(toy), "--mode", "four=", "--mode", "three=--eval-episodes 3",
                  "--out", str(tmp_path / "f6"), cwd=tmp_path)  # a mode the CSV lacks: that run is skipped
    assert other.returncode == 0, other.stdout + other.stderr
    assert "fop matrix base 2: its CSV has no final/three/ rows, skipped" in other.stderr
    assert {r[3] for r in read_csv(tmp_path / "f6.csv")[1:]} == {"1"}


def test_an_interrupted_run_resumes_from_its_checkpoint(local_sweep, tmp_path):
    cwd, _, _ = local_sweep
    run = cwd / "runs" / "sweeps" / "toy" / "fop__matrix__base__1"
    status = json.loads((run / "status.json").read_text())
    status["attempts"][-1]["exit_code"] = None  # as if the process had been killed
    (run / "status.json").write_text(json.dumps(status))
    out = sweep("run", "--sweep", "toy", "--scripts", "fop", "--env", "matrix", "--seeds", "1", "--flags", TINY,
                "--variant", "base=", cwd=cwd)
    assert out.returncode == 0, out.stdout + out.stderr
    last = attempts(run)[-1]
    assert last["how"].startswith("resuming from runs/matrix__fop__1__") and last["exit_code"] == 0
    assert "--checkpoint " in last["command"] and "checkpoint.pt" in last["command"]
    assert len(list(run.glob("runs/*"))) == 1  # the resumed run wrote into the same run directory


def test_a_larger_total_timesteps_extends_finished_runs_and_other_changes_are_skipped(local_sweep, tmp_path):
    cwd, _, _ = local_sweep
    shutil.copytree(cwd / "runs" / "sweeps" / "toy", tmp_path / "runs" / "sweeps" / "toy")
    run = tmp_path / "runs" / "sweeps" / "toy" / "fop__matrix__base__1"
    longer = TINY.replace("--total-timesteps 128", "--total-timesteps 256")
    args = ["run", "--sweep", "toy", "--scripts", "fop", "--env", "matrix", "--seeds", "1", "--variant", "base="]
    before = len(attempts(run))  # 1, or 2 after the resume test above
    out = sweep(*args, "--flags", longer, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "finished at a smaller --total-timesteps: extended" in out.stdout and "(extending)" in out.stdout
    assert len(attempts(run)) == before + 1
    last = attempts(run)[-1]
    assert last["how"].startswith("extending from runs/matrix__fop__1__") and last["exit_code"] == 0
    assert last["command"].endswith(last["how"].split("from ", 1)[1]) and "--total-timesteps 256" in last["command"]
    assert len(list(run.glob("runs/*"))) == 1  # the same run directory, one longer curve
    plot = sweep("plot", str(run), "--out", str(tmp_path / "ext"), cwd=tmp_path)
    assert plot.returncode == 0, plot.stdout + plot.stderr
    assert max(int(r[4]) for r in read_csv(tmp_path / "ext.csv")[1:]) == 256
    again = sweep(*args, "--flags", longer, cwd=tmp_path)  # now finished at 256: skipped
    assert "1 finished before" in again.stdout and len(attempts(run)) == before + 1
    other = sweep(*args, "--flags", longer.replace("--eval-episodes 4", "--eval-episodes 2"), cwd=tmp_path)
    assert other.returncode == 0 and "finished with other flags" in other.stdout and len(attempts(run)) == before + 1
    dry = sweep(*args, "--flags", longer.replace("256", "512"), "--dry-run", cwd=tmp_path)
    assert "[extend]" in dry.stdout and len(attempts(run)) == before + 1


def test_a_stopped_sweep_records_its_runs_attempts(tmp_path):
    """SIGTERM to the sweep stops its run and writes the attempt's end (exit code, wall time, the signal), so the
    plot's wall column counts the stopped attempt and the next call sees it ended (resuming: the test above)."""
    import signal
    import time

    args = ["run", "--sweep", "stop", "--scripts", "fop", "--env", "matrix", "--seeds", "1",
            "--flags", "--total-timesteps 1000000 --eval-interval 100000", "--variant", "base=", "--workers", "1"]
    proc = subprocess.Popen([sys.executable, str(SWEEP), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    run = tmp_path / "runs" / "sweeps" / "stop" / "fop__matrix__base__1"
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "status.json").exists() and attempts(run)[-1].get("pid")):
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "stopped by signal" in err
    (record,) = attempts(run)
    assert record["exit_code"] not in (None, 0) and record["stopped_by_signal"] == signal.SIGTERM
    assert record["wall_seconds"] >= 3 and record["ended"]
    with pytest.raises(ProcessLookupError):
        os.kill(record["pid"], 0)  # the run itself is gone, not left behind


def test_a_run_that_another_sweep_is_running_is_left_to_it(local_sweep):
    cwd, _, _ = local_sweep
    run = cwd / "runs" / "sweeps" / "toy" / "fop__matrix__base__2"
    status = json.loads((run / "status.json").read_text())
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        status["attempts"].append(dict(status["attempts"][-1], exit_code=None, pid=live.pid))  # "still running"
        (run / "status.json").write_text(json.dumps(status))
        out = sweep("run", "--sweep", "toy", "--scripts", "fop", "--env", "matrix", "--seeds", "2", "--flags", TINY,
                    "--variant", "base=", cwd=cwd)
    finally:
        live.kill()
        live.wait()
    assert out.returncode == 0 and f"being run by process {live.pid}" in out.stdout
    assert "[sweep] start " not in out.stdout and len(attempts(run)) == 2  # nothing started, nothing written


def test_slurm_launcher_through_submitit_local_executor(tmp_path):
    out = sweep("run", "--sweep", "slurm", "--scripts", "fop", "--env", "matrix", "--seeds", "1", "2",
                "--flags", TINY, "--launcher", "slurm", "--submitit-cluster", "local", "--partition", "any",
                "--cpus-per-run", "1", "--time", "5", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "submitted 2 runs as array job" in out.stdout
    for seed in (1, 2):
        run = tmp_path / "runs" / "sweeps" / "slurm" / f"fop__matrix__default__{seed}"
        assert attempts(run)[-1]["exit_code"] == 0
        assert list(run.glob("runs/matrix__fop__*/events.out.tfevents.*"))
    assert list((tmp_path / "runs" / "sweeps" / "slurm" / "submitit").glob("*_log.out"))


def test_a_failing_run_fails_the_sweep_and_is_named(tmp_path):
    out = sweep("run", "--sweep", "bad", "--scripts", "fop", "--env", "matrix", "--seeds", "1", "--flags", TINY,
                "--variant", "broken=--no-such-flag 3", cwd=tmp_path)
    assert out.returncode == 1
    assert "FAILED fop__matrix__broken__1" in out.stdout and "no-such-flag" in out.stdout  # with the log's last lines
    assert attempts(tmp_path / "runs" / "sweeps" / "bad" / "fop__matrix__broken__1")[-1]["exit_code"] == 2


@pytest.mark.parametrize("args, message", [
    (["--scripts", "nope", "--maps", "3m"], "unknown script"),
    (["--scripts", "mazero", "--env", "matrix"], "has no toy game"),
    (["--scripts", "fop", "--maps", "3m", "--variant", "a__b=--x"], "--variant"),
    (["--scripts", "fop", "--maps", "3m", "--flags", "--seed 3"], "set by the sweep itself"),
])
def test_bad_sweeps_get_one_line(tmp_path, args, message):
    out = sweep("run", "--sweep", "x", *args, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def write_run(run_dir, sessions):
    """A sweep run directory with one event file per process: sessions = [(purge_step or None, {step: value})]."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = run_dir / "runs" / "3m__fop__1__1"
    for purge, values in sessions:
        w = SummaryWriter(str(logdir), purge_step=purge)
        for step, v in sorted(values.items()):
            w.add_scalar("eval/win_rate", v, step)
        w.close()


def test_plot_writes_the_columns_and_intervals(tmp_path):
    root = tmp_path / "sw"
    same = {0: 0.0, 100: 0.5, 200: 0.75}
    for seed in (1, 2):  # two seeds with identical curves: a zero-width interval
        write_run(root / f"fop__3m__same__{seed}", [(None, same)])
    rng = np.random.default_rng(0)
    spread = {seed: {0: 0.0, 100: float(rng.uniform()), 200: float(rng.uniform())} for seed in (1, 2, 3, 4)}
    for seed, values in spread.items():  # evaluation steps a few env steps apart between seeds are one point
        write_run(root / f"fop__3m__spread__{seed}", [(None, {s + (seed * 8 if s else 0): v for s, v in values.items()})])
    # an interrupted run: the first process logged up to 300, the second resumed at 200 (purge_step) with new values
    write_run(root / "fop__3m__resumed__1", [(None, {0: 0.1, 100: 0.2, 200: 0.3, 300: 0.4}),
                                             (200, {200: 0.9, 300: 1.0, 400: 0.95})])
    out = sweep("plot", str(root), "--out", str(tmp_path / "res"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = read_csv(tmp_path / "res.csv")
    assert rows[0] == ["script", "map", "variant", "seed", "step", "metric", "value"]
    resumed = [(int(r[4]), float(r[6])) for r in rows[1:] if r[2] == "resumed"]
    assert resumed == [(0, 0.1), (100, 0.2), (200, 0.9), (300, 1.0), (400, 0.95)]  # the final trajectory, once each
    summ = read_csv(tmp_path / "res_summary.csv")
    assert summ[0] == ["script", "map", "variant", "seed", "step", "metric", "value"]  # seed: the statistic's name
    wide = {}
    for script, mp, variant, stat, step, metric, value in summ[1:]:
        wide.setdefault((variant, int(step), metric), {"variant": variant, "step": step})[stat] = value
    rec = sorted(wide.values(), key=lambda r: (r["variant"], int(r["step"])))
    assert all("iqm" not in r for r in rec if r["seeds"] != "4")  # the IQM only where there are >= 4 seeds
    for r in (r for r in rec if r["variant"] == "same"):
        assert r["seeds"] == "2" and float(r["ci95_low"]) == float(r["ci95_high"]) == float(r["mean"])
    spread_rows = [r for r in rec if r["variant"] == "spread"]
    assert [int(r["step"]) for r in spread_rows] == [0, 108, 208] and all(r["seeds"] == "4" for r in spread_rows)
    last = [spread[s][200] for s in (1, 2, 3, 4)]
    r = spread_rows[-1]
    assert float(r["mean"]) == pytest.approx(np.mean(last), abs=1e-5)
    assert min(last) <= float(r["ci95_low"]) < float(r["mean"]) < float(r["ci95_high"]) <= max(last)
    assert float(r["iqm"]) == pytest.approx(np.mean(sorted(last)[1:3]), abs=1e-5)
    assert (tmp_path / "res.png").stat().st_size > 10_000
    out = sweep("plot", str(root), "--out", str(tmp_path / "held"), "--last", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    held = {(row[2], row[3]): (int(row[4]), float(row[6])) for row in read_csv(tmp_path / "held_summary.csv")[1:]
            if row[5] == "eval/win_rate@last2"}
    per_seed = [(spread[s][100] + spread[s][200]) / 2 for s in (1, 2, 3, 4)]  # each seed's last two evaluations
    assert held[("spread", "seeds")] == (208, 4) and held[("spread", "mean")][1] == pytest.approx(np.mean(per_seed))
    assert min(per_seed) <= held[("spread", "ci95_low")][1] <= held[("spread", "ci95_high")][1] <= max(per_seed)
    assert held[("same", "mean")] == (200, 0.625) and held[("resumed", "mean")][1] == pytest.approx(0.975)
    assert "eval/win_rate@last2" in out.stdout


def test_a_plot_of_up_to_thirty_variants_draws_each_one_differently():
    """The default colour cycle has ten colours: an 11th variant drawn in the 1st one's colour and style would be
    indistinguishable from it (sweep B's plot has 12 variants)."""
    spec = importlib.util.spec_from_file_location("sweep_module", SWEEP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    styles = [module.line_style(i) for i in range(30)]
    assert len(set(styles)) == 30 and styles[0] == ("C0", "-")


def test_plot_diff_gives_the_difference_of_two_variants_with_an_interval(tmp_path):
    root = tmp_path / "sw"
    a = {1: {0: 0.0, 100: 0.2, 200: 0.9, 300: 1.0}, 2: {0: 0.0, 100: 0.5, 200: 0.9}, 3: {0: 0.0, 100: 0.6, 200: 0.9}}
    b = {1: {0: 0.0, 100: 0.4, 200: 0.1}, 2: {0: 0.0, 104: 0.1, 200: 0.1}}  # 104: the same evaluation as 100
    for variant, runs in (("a", a), ("b", b)):
        for seed, values in runs.items():
            write_run(root / f"fop__3m__{variant}__{seed}", [(None, values)])
    out = sweep("plot", str(root), "--out", str(tmp_path / "res"), "--diff", "a", "b", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    wide = {}
    for row in read_csv(tmp_path / "res_summary.csv")[1:]:
        if row[2] == "a-b":
            wide.setdefault(int(row[4]), {})[row[3]] = float(row[6])
    assert sorted(wide) == [0, 100, 200]  # 300: only one of a's seeds and none of b's
    assert wide[200]["seeds_a"] == 3 and wide[200]["seeds_b"] == 2
    assert wide[200]["mean"] == wide[200]["ci95_low"] == wide[200]["ci95_high"] == pytest.approx(0.8)
    d100 = np.mean([0.2, 0.5, 0.6]) - np.mean([0.4, 0.1])
    assert wide[100]["mean"] == pytest.approx(d100, abs=1e-5)
    assert 0.2 - 0.4 <= wide[100]["ci95_low"] < d100 < wide[100]["ci95_high"] <= 0.6 - 0.1
    line = next(l for l in out.stdout.splitlines() if "a-b" in l)
    assert "200: +0.800 [+0.800, +0.800]*" in line and "100: " in line
    # a's seed 1 went on to 300: the last point all seeds reached, then the variant's own last point
    assert "fop/3m/a: eval/win_rate at step 200 over 3 seeds: mean 0.900 [0.900, 0.900]" in out.stdout
    assert "fop/3m/a: eval/win_rate at its last step 300 over 1 of 3 seeds: mean 1.000\n" in out.stdout
    assert "fop/3m/b: eval/win_rate at its last step" not in out.stdout  # b's seeds end together
    write_run(root / "fop__3m__c__1", [(None, {0: 0.0, 100: 0.9, 200: 0.9})])  # one seed: no interval
    one = sweep("plot", str(root), "--out", str(tmp_path / "one"), "--diff", "c", "a", cwd=tmp_path)
    stats = {row[3] for row in read_csv(tmp_path / "one_summary.csv")[1:] if row[2] == "c-a"}
    assert one.returncode == 0 and stats == {"seeds_a", "seeds_b", "mean"}
    for pair in (["a", "x"], ["a", "a"]):  # an unknown variant, or a variant against itself: one line
        bad = sweep("plot", str(root), "--out", str(tmp_path / "bad"), "--diff", *pair, cwd=tmp_path)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--diff" in bad.stderr


def test_an_interval_depends_only_on_its_own_seeds_not_on_what_else_the_call_summarises(tmp_path):
    """Each bootstrap draws from a generator of its own summary row: variant a's intervals and the a-b difference's
    are the same whether or not another variant, computed before them, and another --diff stand beside them; the
    same for `final` (long CSVs of a plot and of a final as the input, no runs)."""
    rng = np.random.default_rng(5)
    seeds = {"a": (1, 2, 3, 4, 5), "b": (1, 2, 3, 4), "c": (1, 2, 3, 4)}  # >= 4 seeds: with 2 or 3 the bounds are
    # the lowest and highest seed whatever the draws (a draw of one seed only: 1/4, 1/27 of them, above 2.5%)
    with open(tmp_path / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["script", "map", "variant", "seed", "step", "metric", "value"])
        for v, ss in seeds.items():
            w.writerows(("fop", "3m", v, s, step, m, f"{rng.uniform():.4f}") for s in ss for step in (0, 100, 200)
                        for m in ("eval/win_rate", "final/greedy/win_rate", "final/greedy/episodic_return",
                                  "final/search/win_rate", "final/search/episodic_return"))

    def summary(command, name, *args):
        out = sweep(command, str(tmp_path / "runs.csv"), "--out", str(tmp_path / name), *args, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        return {tuple(r[2:6]): r[6] for r in read_csv(tmp_path / f"{name}_summary.csv")[1:]}

    alone = summary("plot", "alone", "--variants", "a", "b", "--diff", "a", "b")
    beside = summary("plot", "beside", "--variants", "c", "b", "a", "--diff", "c", "a", "--diff", "a", "b")
    mine = {k: v for k, v in alone.items() if k[0] in ("a", "b", "a-b")}
    assert {k[1] for k in mine} >= {"ci95_low", "ci95_high"} and {k[0] for k in mine} == {"a", "b", "a-b"}
    assert {k: beside[k] for k in mine} == mine
    modes = ["--mode", "greedy=", "--mode", "search=--eval-mcts"]
    alone = summary("final", "final_alone", "--variants", "a", *modes)
    beside = summary("final", "final_beside", "--variants", "c", "a", *modes)
    assert {k[1] for k in alone} >= {"ci95_low", "ci95_high"} and {k: beside[k] for k in alone} == alone


def test_plot_reads_the_long_csv_of_an_earlier_plot_beside_new_runs(tmp_path):
    """Runs whose event files are gone (another machine) come back from the plot's own long CSV: alone it gives the
    same summary; beside sweep directories a run present in both is read from its event files."""
    a = {1: {0: 0.0, 100: 0.2, 200: 0.4}, 2: {0: 0.0, 100: 0.6, 200: 0.8}}
    for seed, values in a.items():
        write_run(tmp_path / "old" / f"fop__3m__a__{seed}", [(None, values)])
    assert sweep("plot", str(tmp_path / "old"), "--out", str(tmp_path / "first"), cwd=tmp_path).returncode == 0
    again = sweep("plot", str(tmp_path / "first.csv"), "--out", str(tmp_path / "again"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert read_csv(tmp_path / "again.csv") == read_csv(tmp_path / "first.csv")
    assert read_csv(tmp_path / "again_summary.csv") == read_csv(tmp_path / "first_summary.csv")
    write_run(tmp_path / "new" / "fop__3m__a__2", [(None, {0: 0.0, 100: 1.0, 200: 1.0})])  # seed 2 run again
    write_run(tmp_path / "new" / "fop__3m__a__3", [(None, {0: 0.0, 100: 0.5, 200: 0.6})])
    both = sweep("plot", str(tmp_path / "first.csv"), str(tmp_path / "new"), "--out", str(tmp_path / "both"),
                 cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    final = {int(r[3]): float(r[6]) for r in read_csv(tmp_path / "both.csv")[1:] if r[4] == "200"}
    assert final == pytest.approx({1: 0.4, 2: 1.0, 3: 0.6})  # seed 1 from the CSV, 2 and 3 from the new events
    assert "fop 3m a 2: from" in both.stderr and "first.csv" in both.stderr
    mean = next(float(r[6]) for r in read_csv(tmp_path / "both_summary.csv")[1:] if r[3] == "mean" and r[4] == "200")
    assert mean == pytest.approx(2.0 / 3.0)
    (tmp_path / "wrong.csv").write_text("a,b\n1,2\n")
    for bad in ("wrong.csv", "first_summary.csv"):  # not a long CSV; a summary CSV (statistics, not seeds)
        out = sweep("plot", str(tmp_path / bad), "--out", str(tmp_path / "bad"), cwd=tmp_path)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and bad in out.stderr


def test_plot_keeps_a_final_evaluation_half_a_spacing_after_the_last_periodic_one(tmp_path):
    """Evaluations every 100 and a final one at 250 (fsv.py's 2.05M after 2.0M): 250 is within half the spacing of
    200, but both are one run's steps, so they stay two points and the last two are 200 and 250."""
    runs = {1: {0: 0.0, 100: 0.2, 200: 0.5, 250: 0.7}, 2: {0: 0.0, 100: 0.4, 200: 0.6, 250: 0.9},
            3: {0: 0.0, 108: 0.3, 208: 0.4, 250: 0.8}}  # seed 3's periodic evaluations a few steps late: one point
    for seed, values in runs.items():
        write_run(tmp_path / "sw" / f"fsv__3m__a__{seed}", [(None, values)])
    out = sweep("plot", str(tmp_path / "sw"), "--out", str(tmp_path / "res"), "--last", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    summ = {(r[3], int(r[4]), r[5]): float(r[6]) for r in read_csv(tmp_path / "res_summary.csv")[1:]}
    assert summ[("mean", 200, "eval/win_rate")] == pytest.approx(0.5, abs=1e-5)
    assert summ[("mean", 250, "eval/win_rate")] == pytest.approx(0.8, abs=1e-5)
    assert summ[("seeds", 250, "eval/win_rate")] == 3
    held = np.mean([(0.5 + 0.7) / 2, (0.6 + 0.9) / 2, (0.4 + 0.8) / 2])
    assert summ[("mean", 250, "eval/win_rate@last2")] == pytest.approx(held, abs=1e-5)


def test_plot_bin_averages_a_per_episode_metric_over_windows_of_env_steps(tmp_path):
    """charts/win_rate logged once per episode at each run's own steps: --bin gives one point per window of 100 env
    steps, the same windows for both seeds, under the tag charts/win_rate@bin100; the long CSV reads back the same."""
    from torch.utils.tensorboard import SummaryWriter

    episodes = {1: [(30, 0.0), (70, 1.0), (90, 1.0), (150, 0.0), (210, 1.0)], 2: [(40, 0.0), (130, 1.0), (200, 1.0)]}
    for seed, eps in episodes.items():
        w = SummaryWriter(str(tmp_path / "sw" / f"fop__3m__a__{seed}" / "runs" / "3m__fop__1__1"))
        for step, won in eps:
            w.add_scalar("charts/win_rate", won, step)
        w.add_scalar("eval/win_rate", 0.5, 200)
        w.close()
    args = ["--metric", "charts/win_rate", "--metric", "eval/win_rate", "--bin", "charts/win_rate", "100", "--last", "0"]
    out = sweep("plot", str(tmp_path / "sw"), "--out", str(tmp_path / "res"), *args, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {(int(r[3]), int(r[4]), r[5]): float(r[6]) for r in read_csv(tmp_path / "res.csv")[1:]}
    binned = {k[:2]: v for k, v in rows.items() if k[2] == "charts/win_rate@bin100"}
    assert binned == pytest.approx({(1, 100): 2 / 3, (1, 200): 0.0, (1, 300): 1.0, (2, 100): 0.0, (2, 200): 1.0})
    assert rows[(1, 200, "eval/win_rate")] == 0.5 and not any(k[2] == "charts/win_rate" for k in rows)
    summ = {(r[3], int(r[4]), r[5]): float(r[6]) for r in read_csv(tmp_path / "res_summary.csv")[1:]}
    assert summ[("mean", 100, "charts/win_rate@bin100")] == pytest.approx(1 / 3, abs=1e-5)
    assert summ[("seeds", 300, "charts/win_rate@bin100")] == 1
    again = sweep("plot", str(tmp_path / "res.csv"), "--out", str(tmp_path / "again"), *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    first, second = read_csv(tmp_path / "res_summary.csv")[1:], read_csv(tmp_path / "again_summary.csv")[1:]
    assert [r[:6] for r in second] == [r[:6] for r in first]  # the long CSV keeps 6 digits: values agree to 1e-5
    assert [float(r[6]) for r in second] == pytest.approx([float(r[6]) for r in first], abs=1e-5)
    for bad in (["eval/return", "100"], ["charts/win_rate", "0"], ["charts/win_rate", "1e3"]):
        out = sweep("plot", str(tmp_path / "sw"), "--out", str(tmp_path / "bad"), "--metric", "charts/win_rate",
                    "--bin", *bad, cwd=tmp_path)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "--bin" in out.stderr


def test_plot_of_nothing_is_one_line(tmp_path):
    out = sweep("plot", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_plot_keeps_the_final_trajectory_of_a_run_resumed_without_purge_step(tmp_path):
    """A plain run directory written before the scripts used purge_step (mazero.py's old runs), interrupted twice:
    A logs up to step 100, B resumes from A's checkpoint at 60, C from B's at 120. A's evaluation at 100 belongs to
    a thrown-away trajectory: TensorBoard's out-of-order purge and the last-value-wins rule must drop it."""
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "3m__cpu_3m__7__1795483928"
    sessions = [(1000, 0, 100, {0: 0.0, 50: 0.1, 100: 0.2}), (2000, 60, 120, {60: 0.3, 100: 0.4}),
                (3000, 120, 200, {150: 0.5, 200: 0.6})]  # (wall time, first step, last step, evaluations)
    for i, (t0, first, last, evals) in enumerate(sessions):
        w = SummaryWriter(str(run), filename_suffix=f".{i}")
        for step in range(first, last + 1, 10):
            if step > first:
                w.add_scalar("charts/SPS", 1.0, step, walltime=t0 + step - first)
            if step in evals:
                w.add_scalar("eval/win_rate", evals[step], step, walltime=t0 + step - first + 0.5)
        w.close()
    out = sweep("plot", str(run), "--script", "mazero", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = read_csv(tmp_path / "r.csv")[1:]
    assert {tuple(r[:4]) for r in rows} == {("mazero", "3m", "cpu_3m", "7")}
    assert [(int(r[4]), round(float(r[6]), 6)) for r in rows] == [(0, 0.0), (50, 0.1), (60, 0.3), (100, 0.4),
                                                                   (150, 0.5), (200, 0.6)]
