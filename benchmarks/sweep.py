# Sweeps of the four scripts (seeds x maps x variants) on one machine or a SLURM cluster, and curves with 95% intervals.
"""Run the unmodified scripts over seeds x maps x named variants, then plot what they logged.

    # 3 seeds of two variants of fop.py on SMAX 3m, two runs side by side (re-running the same command resumes it)
    python benchmarks/sweep.py run --sweep fop_3m --scripts fop --maps 3m --seeds 1 2 3 \\
        --flags "--total-timesteps 1000000" --variant defaults="" --variant authors="--single-alpha --entropy-mean" \\
        --workers 2
    # the same runs as a SLURM array job (submitit), one GPU and 4 CPUs per run
    python benchmarks/sweep.py run ... --launcher slurm --partition gpu --gpus-per-run 1 --cpus-per-run 4 --time 720
    # long CSV, summary CSV (mean, 95% bootstrap CI, IQM) and PNG of the greedy evaluation win rate
    python benchmarks/sweep.py plot runs/sweeps/fop_3m --out benchmarks/results/fop_3m
    # each finished run's last checkpoint evaluated greedily and with search, on the same episodes, paired by seed
    python benchmarks/sweep.py final runs/sweeps/mazero_3m --mode greedy="" --mode search="--eval-mcts" \\
        --out benchmarks/results/mazero_3m_final

Each run is the command `python <script>.py --map <map> <--flags> <variant flags> --seed <seed>` (toy games:
`--env <env>` instead of `--map`), started in its own deterministic directory
`<root>/<sweep>/<script>__<map>__<variant>__<seed>/`, which holds
  * `status.json`: the command of each attempt, its exit code, wall seconds, host and times;
  * `log.txt`: everything the script printed (appended across attempts);
  * `runs/<run_name>/`: what the script itself writes (TensorBoard events, checkpoint.pt), as it would anywhere.
A run whose last attempt exited 0 is skipped, so re-running the same sweep command resumes the sweep; a run that was
interrupted restarts with `--checkpoint runs/<run_name>/checkpoint.pt` (the scripts resume from it), or from scratch,
deleting its partial run directory, if it had not written a checkpoint yet. The same command with a larger
`--total-timesteps` extends finished runs from their final checkpoints (a longer curve without re-running the start);
a finished run whose flags differ otherwise is skipped with a warning (a changed configuration is a new variant).

`plot` reads the event files with TensorBoard's EventAccumulator (purge_orphaned_data: what an interrupted process
logged after its checkpoint is dropped, as TensorBoard shows it) and keeps the last value written at each step, so a
resumed run contributes its final trajectory. Runs of one variant are aligned on env steps (evaluation steps closer
than half the evaluation spacing are one point), and per step it reports the number of seeds, the mean, a 95%
percentile-bootstrap interval of the mean over seeds (10,000 resamples; with 2-3 seeds it is narrower than a t
interval would be: read it as a description of the seeds, not a guarantee) and, with >= 4 seeds, the interquartile mean,
in a summary CSV with the long CSV's columns whose `seed` column names the statistic (seeds, mean, ci95_low, ci95_high,
iqm). Every interval here and below resamples with a generator seeded by its own row (script, map, variant, step,
metric): it is the same in any call that has the same values there, whatever other variants, metrics or --diff pairs
the call adds. Whether a level is held rather than touched once: the same statistics of each seed's mean over its last K
evaluations (`--last`, default 5), as metric `<tag>@last<K>` at the variant's last step, over the seeds that reached it.
Whether one variant is ahead of another: `--diff A B` adds, at each step both reached, mean(A) - mean(B) and a 95%
bootstrap interval that resamples each variant's seeds on its own (variant `A-B`, statistics seeds_a, seeds_b, mean,
ci95_low, ci95_high). A long CSV an earlier `plot` wrote may stand among the paths: its runs join those of the event
files (a sweep continued on a machine where the first runs' directories are gone); a run in both is read from events.

`final` runs `<script>.py --checkpoint <newest checkpoint> --eval-only <mode flags>` for every finished run and every
named mode (results cached in `<run_dir>/final.json`, keyed by the flags and the checkpoint's size and mtime) and
writes the same two CSVs for the final point, with the per-seed difference of each later mode from the first.
"""

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("mazero", "mag", "fop", "fsv")
TOY_ENVS = {"fop": ("matrix", "mtq"), "fsv": ("matrix", "mtq")}  # the scripts that play toy games, via --env
SUMMARY_STATS = ("mean", "ci95_low", "ci95_high", "iqm")  # the summary CSV's statistics over seeds, after "seeds"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+=-]*(_[A-Za-z0-9.+=-]+)*$")  # no "__", the run directory's separator


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def hms(seconds):
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ---------------------------------------------------------------------------------------------------------------------
# run: expand the grid, then start every unfinished run, resuming from its checkpoint where it has one
# ---------------------------------------------------------------------------------------------------------------------
def named_flag_sets(items, option):
    """{name: [flags]} from repeated `option` values NAME="--flag value ..." (--variant, --mode)."""
    out = {}
    for v in items:
        name, sep, flags = v.partition("=")
        if not sep or not NAME.match(name):
            fail(f"{option} {v!r}: write NAME=\"--flag value ...\" with a NAME of letters, digits, '.', '-', single '_'")
        if name in out:
            fail(f"{option} {name} is given twice")
        out[name] = shlex.split(flags)
    return out


def expand(a):
    """The runs of a sweep, in the order they start: seed-major, so that an interrupted sweep has whole seeds."""
    if not NAME.match(a.sweep):
        fail(f"--sweep {a.sweep!r}: use letters, digits, '.', '-', '+', '=' and single '_'")
    variants = named_flag_sets(a.variant or ["default="], "--variant")
    for s in a.scripts:
        if s not in SCRIPTS:
            fail(f"unknown script {s!r}: one of {', '.join(SCRIPTS)}")
    if bool(a.maps) == bool(a.envs):
        fail("give --maps (StarCraft maps) or --env (toy games), not both and not neither")
    places = [("map", m) for m in a.maps or []] + [("env", e) for e in a.envs or []]
    for kind, p in places:
        if not NAME.match(p):
            fail(f"--{kind} {p!r} is not a valid name")
        for s in a.scripts:
            if kind == "env" and p not in TOY_ENVS.get(s, ()):
                fail(f"{s}.py has no toy game {p!r} (toy games: "
                     + "; ".join(f"{k}: {', '.join(v)}" for k, v in TOY_ENVS.items()) + ")")
    common = shlex.split(a.flags)
    for flag in common + [f for fl in variants.values() for f in fl]:
        if flag in ("--seed", "--map", "--env", "--checkpoint") or flag.startswith(("--seed=", "--map=", "--env=")):
            fail(f"{flag} is set by the sweep itself; do not pass it in --flags or a variant")
    if len(set(a.seeds)) != len(a.seeds):
        fail("--seeds has repeated values")
    sweep_dir = Path(a.root) / a.sweep
    runs = []
    for seed in a.seeds:
        for s in a.scripts:
            for kind, p in places:
                for name, flags in variants.items():
                    runs.append(dict(
                        name=f"{s}__{p}__{name}__{seed}", script=s, place=p, variant=name, seed=seed,
                        run_dir=str((sweep_dir / f"{s}__{p}__{name}__{seed}").resolve()),
                        argv=[a.python, str(ROOT / f"{s}.py"), f"--{kind}", p, *common, *flags, "--seed", str(seed)]))
    return sweep_dir, runs


def read_status(run_dir):
    try:
        with open(Path(run_dir) / "status.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"attempts": []}


def finished(run):
    attempts = read_status(run["run_dir"])["attempts"]
    return bool(attempts) and attempts[-1].get("exit_code") == 0


def script_flags(command, script):
    """The flags after `<script>.py` in a recorded command, without --checkpoint and its value."""
    words = shlex.split(command or "")
    at = next((i for i, w in enumerate(words) if w.endswith(f"{script}.py")), None)
    if at is None:
        return None
    flags, rest = [], iter(words[at + 1:])
    for w in rest:
        if w == "--checkpoint":
            next(rest, None)
        elif not w.startswith("--checkpoint="):
            flags.append(w)
    return flags


def without_total(flags):
    """(the flags without --total-timesteps, its value as an int or None)."""
    rest, total, words = [], None, iter(flags)
    for w in words:
        if w == "--total-timesteps" or w.startswith("--total-timesteps="):
            value = next(words, "") if w == "--total-timesteps" else w.split("=", 1)[1]
            total = int(value.replace("_", "")) if value.replace("_", "").isdigit() else None
        else:
            rest.append(w)
    return rest, total


def run_state(run):
    """What the sweep's command means for this run now: "new" (nothing to resume), "resume" (interrupted after a
    checkpoint), "extend" (finished, and the only difference from its last command is a larger --total-timesteps: it
    goes on from its final checkpoint), "finished" (the same command) or "other" (finished with other flags:
    skipped)."""
    if not finished(run):
        return "resume" if checkpoints(run["run_dir"]) else "new"
    before = script_flags(read_status(run["run_dir"])["attempts"][-1].get("command"), run["script"])
    if before is None or before == run["argv"][2:]:
        return "finished"
    (rest_before, old), (rest_now, new) = without_total(before), without_total(run["argv"][2:])
    return "extend" if rest_before == rest_now and None not in (old, new) and new > old else "other"


STARTING = {"new": "new", "resume": "resuming", "extend": "extending"}  # the start line's word for each state


def running_elsewhere(run):
    """The pid of a live process of another sweep invocation on this host that is running this run now, else None
    (two invocations must never run one run directory at the same time)."""
    attempts = read_status(run["run_dir"])["attempts"]
    last = attempts[-1] if attempts else {}
    if last.get("exit_code") is not None or last.get("host") != socket.gethostname() or not last.get("pid"):
        return None
    try:
        os.kill(last["pid"], 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return last["pid"]


def checkpoints(run_dir):
    return sorted(Path(run_dir).glob("runs/*/checkpoint.pt"), key=lambda p: p.stat().st_mtime)


def attempt_argv(run):
    """The command of the next attempt: resume from the run's checkpoint if it wrote one; else start afresh."""
    ckpts = checkpoints(run["run_dir"])
    if ckpts:
        how = STARTING[run_state(run)]
        return run["argv"] + ["--checkpoint", str(ckpts[-1])], f"{how} from {ckpts[-1].relative_to(run['run_dir'])}"
    stale = Path(run["run_dir"]) / "runs"
    if stale.exists():  # an attempt that stopped before its first checkpoint: its partial logs would mix with the new
        shutil.rmtree(stale)
    return run["argv"], "new"


_children = {}  # process -> (run_dir, status, attempt record, start time): killed and recorded if the sweep is stopped
_lock = threading.Lock()


def run_one(run, gpu=None):
    """Run (or resume) one run in its directory; write status.json and log.txt. Returns the attempt's record."""
    run_dir = Path(run["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "spec.json", "w") as f:  # what `sweep.py exec <run_dir>` runs (a SLURM array task)
        json.dump(run, f, indent=1)
    argv, how = attempt_argv(run)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    status = read_status(run_dir)
    record = dict(command=shlex.join(argv), how=how, host=socket.gethostname(), gpu=gpu,
                  started=time.strftime("%Y-%m-%d %H:%M:%S"), exit_code=None, wall_seconds=None)
    status["attempts"].append(record)
    write_status(run_dir, status)
    start = time.time()
    with open(run_dir / "log.txt", "a") as log:
        log.write(f"\n=== sweep attempt {len(status['attempts'])} at {record['started']} on {record['host']} ({how}):"
                  f" {record['command']}\n")
        log.flush()
        proc = subprocess.Popen(argv, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: the sweep kills it cleanly
        record["pid"] = proc.pid
        write_status(run_dir, status)
        with _lock:
            _children[proc] = (run_dir, status, record, start)
        code = proc.wait()
        with _lock:
            _children.pop(proc, None)
    end_attempt(run_dir, status, record, start, code)
    return record


def end_attempt(run_dir, status, record, start, code, **extra):
    """Write an attempt's end into its run's status.json: exit code, wall seconds, end time (and `extra`)."""
    record.update(exit_code=code, wall_seconds=round(time.time() - start, 1), ended=time.strftime("%Y-%m-%d %H:%M:%S"),
                  **extra)
    write_status(run_dir, status)


def write_status(run_dir, status):
    tmp = Path(run_dir) / "status.json.tmp"
    with open(tmp, "w") as f:
        json.dump(status, f, indent=1)
    os.replace(tmp, Path(run_dir) / "status.json")


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)\n"


def count_gpus():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


class Progress:
    """Console lines for the sweep: one per started / finished run, and done/total with an ETA from finished runs."""

    def __init__(self, total, skipped, workers):
        self.total, self.done, self.failed, self.running, self.workers = total, skipped, 0, {}, workers
        self.walls = []

    def started(self, run, how):
        with _lock:
            self.running[run["name"]] = time.time()
            print(f"[sweep] start {run['name']} ({how})", flush=True)

    def ended(self, run, record):
        with _lock:
            self.running.pop(run["name"], None)
            self.done += 1
            ok = record.get("exit_code") == 0
            self.failed += not ok
            if ok:
                self.walls.append(record["wall_seconds"])
            print(f"[sweep] {'done' if ok else 'FAILED'} {run['name']}: exit {record.get('exit_code')} after "
                  f"{hms(record.get('wall_seconds') or 0)}", flush=True)
            pending = self.total - self.done - len(self.running)
            eta = "ETA unknown (no run finished yet)"
            if self.walls:
                mean = sum(self.walls) / len(self.walls)
                now = time.time()
                left = pending * mean + sum(max(0.0, mean - (now - t)) for t in self.running.values())
                eta = f"ETA {hms(left / self.workers)} (mean run {hms(mean)})"
            print(f"[sweep] {self.done}/{self.total} finished ({self.failed} failed), {len(self.running)} running, "
                  f"{pending} waiting | {eta}", flush=True)


def launch_local(todo, progress, workers, gpus):
    slots = list(range(workers))

    def work(run):
        with _lock:
            slot = slots.pop(0)
        try:
            gpu = slot % gpus if gpus else None
            progress.started(run, STARTING[run_state(run)])
            record = run_one(run, gpu)
            progress.ended(run, record)
            return record
        finally:
            with _lock:
                slots.append(slot)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, todo))


def launch_slurm(todo, progress, a, sweep_dir):
    import submitit

    executor = submitit.AutoExecutor(folder=str(sweep_dir / "submitit"), cluster=a.submitit_cluster)
    params = dict(name=f"sweep_{a.sweep}", timeout_min=a.time, cpus_per_task=a.cpus_per_run,
                  slurm_array_parallelism=a.array_parallelism)
    if a.gpus_per_run:
        params["gpus_per_node"] = a.gpus_per_run
    if a.partition:
        params["slurm_partition"] = a.partition
    executor.update_parameters(**params)
    for run in todo:  # each array task runs `python sweep.py exec <run_dir>`, which reads this spec
        Path(run["run_dir"]).mkdir(parents=True, exist_ok=True)
        with open(Path(run["run_dir"]) / "spec.json", "w") as f:
            json.dump(run, f, indent=1)
    # the task decides between a fresh start and a resume when it starts, not at submission (a requeued task
    # resumes); CUDA_VISIBLE_DEVICES comes from SLURM's own allocation
    task = submitit.helpers.CommandFunction([a.python, str(Path(__file__).resolve()), "exec"])
    jobs = executor.map_array(task, [r["run_dir"] for r in todo])
    print(f"[sweep] submitted {len(jobs)} runs as array job {jobs[0].job_id.split('_')[0]} "
          f"({executor.cluster} executor; logs in {sweep_dir / 'submitit'})", flush=True)
    for run in todo:
        progress.started(run, "submitted")
    records, pending = [None] * len(jobs), set(range(len(jobs)))
    while pending:
        for i in sorted(pending):
            if jobs[i].done():
                pending.discard(i)
                try:
                    jobs[i].result()
                    records[i] = read_status(todo[i]["run_dir"])["attempts"][-1]
                except Exception as e:  # the task itself died (time limit, node failure): its stderr says why
                    records[i] = dict(exit_code=f"job failed: {type(e).__name__}", wall_seconds=None)
                    with open(Path(todo[i]["run_dir"]) / "log.txt", "a") as log:
                        log.write(f"\n=== submitit job {jobs[i].job_id} failed:\n{str(e)[-3000:]}\n")
                progress.ended(todo[i], records[i])
        time.sleep(1)
    return records


def cmd_run(a):
    if a.workers < 1 or a.cpus_per_run < 1 or a.time < 1 or a.gpus_per_run < 0:
        fail("--workers, --cpus-per-run and --time must be >= 1, --gpus-per-run >= 0")
    sweep_dir, runs = expand(a)
    if a.dry_run:
        for r in runs:
            state = run_state(r)
            label = "finished, other flags" if state == "other" else state
            print(f"{r['name']} [{label}]: (cd {r['run_dir']} && {shlex.join(r['argv'])})")
        return 0
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        probe = sweep_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        fail(f"cannot write sweep directory {sweep_dir}: {e.strerror or e}")
    with open(sweep_dir / "sweep_commands.txt", "a") as f:  # how the sweep was asked for, for the record
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join([sys.executable] + sys.argv)}\n")
    states = {r["name"]: run_state(r) for r in runs}
    for r in runs:
        if states[r["name"]] == "other":
            last = read_status(r["run_dir"])["attempts"][-1]["command"]
            print(f"[sweep] {r['name']} finished with other flags ({last}): skipped; give a changed run another "
                  "variant or sweep name", flush=True)
        elif states[r["name"]] == "extend":
            print(f"[sweep] {r['name']} finished at a smaller --total-timesteps: extended from its checkpoint",
                  flush=True)
    busy = [(r, running_elsewhere(r)) for r in runs if states[r["name"]] in STARTING]
    for r, pid in busy:
        if pid:
            print(f"[sweep] {r['name']} is being run by process {pid} (another sweep invocation): left to it")
    todo = [r for r, pid in busy if not pid]
    skipped = len(runs) - len(todo)
    print(f"[sweep] {a.sweep}: {len(runs)} runs ({skipped} finished before or running elsewhere, skipped), launcher {a.launcher}, "
          f"directory {sweep_dir}", flush=True)
    progress = Progress(len(runs), skipped, a.workers if a.launcher == "local" else max(1, len(todo)))
    if a.launcher == "local":
        gpus = count_gpus() if a.gpus is None else a.gpus
        records = launch_local(todo, progress, a.workers, gpus)
    else:
        records = launch_slurm(todo, progress, a, sweep_dir)
    failed = [(r, rec) for r, rec in zip(todo, records) if rec.get("exit_code") != 0]
    for r, rec in failed:
        print(f"\n[sweep] FAILED {r['name']} (exit {rec.get('exit_code')}); last lines of {r['run_dir']}/log.txt:\n"
              + tail(Path(r["run_dir"]) / "log.txt"), end="", flush=True)
    print(f"[sweep] {a.sweep}: {len(runs) - len(failed)}/{len(runs)} runs finished, {len(failed)} failed", flush=True)
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------------------------------
# plot: event files -> long CSV, summary CSV (mean, bootstrap CI, IQM) and one PNG
# ---------------------------------------------------------------------------------------------------------------------
LONG_COLUMNS = ["script", "map", "variant", "seed", "step", "metric", "value"]  # the summary CSV's too (seed: statistic)


def output_path(out):
    """Path(out), its directory created (else one line, exit 2)."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"cannot write {out.parent}: {e.strerror or e}")
    return out


def write_long_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(LONG_COLUMNS)
        w.writerows((*row[:6], f"{row[6]:.6g}") for row in rows)


def write_seed_summary(path, entries):
    """A summary CSV of one value per seed (the long CSV's columns; `seed` names the statistic): entries are
    (script, map, variant, step, metric, values, mean, ci95 low, ci95 high); `seeds` is how many values."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(LONG_COLUMNS)
        for *key, step, metric, x, mean, lo, hi in entries:
            w.writerow((*key, "seeds", step, metric, len(x)))
            w.writerows((*key, name, step, metric, f"{v:.6g}") for name, v in
                        (("mean", mean), ("ci95_low", lo), ("ci95_high", hi)) if not np.isnan(v))


def seed_summary(rows):
    """write_seed_summary's entries for long rows (script, map, variant, seed, step, metric, value) that hold one value
    per seed and metric: per (script, map, variant, metric), in first-seen order, the values over seeds, their mean and
    95% bootstrap interval, at the largest step among them."""
    groups = {}
    for script, map_name, variant, _, step, metric, v in rows:
        groups.setdefault((script, map_name, variant, metric), []).append((step, v))
    entries = []
    for (*key, metric), vals in groups.items():
        x, step = [v for _, v in vals], max(s for s, _ in vals)
        entries.append((*key, step, metric, x, np.mean(x), *bootstrap_ci(x, (*key, step, metric))))
    return entries


def read_long_csv(path):
    """The runs of a long CSV this tool wrote (`plot`'s <out>.csv): {(script, map, variant, seed): ((metric,
    ((step, value), ...)), ...)}, hashable, to stand in for a run's event directory (results kept from a
    machine whose sweep directories are gone, or from another cluster)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read {path}: {getattr(e, 'strerror', None) or e}")
    if not rows or [c.strip() for c in rows[0]] != LONG_COLUMNS:
        fail(f"{path} is not a long CSV ({','.join(LONG_COLUMNS)})")
    runs = {}
    for i, row in enumerate(rows[1:], 2):
        try:
            script, mp, variant, seed, step, metric, value = row
            key, point = (script, mp, variant, int(seed)), (int(step), float(value))
        except ValueError:
            fail(f"{path} line {i}: not script,map,variant,<int seed>,<int step>,metric,<number> (a summary CSV?)")
        runs.setdefault(key, {}).setdefault(metric, {})[point[0]] = point[1]
    return {k: tuple((m, tuple(sorted(v.items()))) for m, v in ms.items()) for k, ms in runs.items()}


def find_runs(paths, script):
    """(script, map, variant, seed, event directory) for every run under `paths`: sweep directories, sweep run
    directories (<script>__<map>__<variant>__<seed>), plain run directories of a script ({map}__{exp}__{seed}__{t})
    or long CSVs of earlier plots (their series stand where the event directory would). A run found both in event
    files and in a CSV is read from the event files; of two CSVs, the first named holds."""
    found, from_csv = [], {}  # from_csv: (script, map, variant, seed) -> (the CSV, its series)
    for p in map(Path, paths):
        if p.is_file() and p.suffix == ".csv":
            for key, series in read_long_csv(p).items():
                if key in from_csv:
                    print(f"[plot] {' '.join(map(str, key))}: from {from_csv[key][0]}, not {p}", file=sys.stderr)
                else:
                    from_csv[key] = p, series
            continue
        if not p.is_dir():
            fail(f"{p} is not a directory or a long CSV")
        sweep_runs = [p] if (p / "status.json").exists() or (p / "runs").is_dir() else \
            sorted(d for d in p.iterdir() if d.is_dir() and ((d / "status.json").exists() or (d / "runs").is_dir()))
        if sweep_runs:
            for d in sweep_runs:
                parts = d.name.split("__")
                if len(parts) != 4 or parts[0] not in SCRIPTS:
                    fail(f"{d} is not named <script>__<map>__<variant>__<seed>")
                logdirs = sorted({e.parent for e in d.glob("runs/*/events.out.tfevents.*")},
                                 key=lambda x: x.stat().st_mtime)
                if not logdirs:
                    print(f"[plot] {d.name}: no event files yet, skipped", file=sys.stderr)
                    continue
                if len(logdirs) > 1:
                    print(f"[plot] {d.name}: {len(logdirs)} run directories, using the newest {logdirs[-1].name}",
                          file=sys.stderr)
                found.append((parts[0], parts[1], parts[2], int(parts[3]), logdirs[-1]))
        elif list(p.glob("events.out.tfevents.*")):
            parts = p.name.split("__")
            if len(parts) < 3 or not parts[2].isdigit():
                fail(f"{p} is not named <map>__<exp_name>__<seed>__<time> (a script's run directory)")
            if script is None:
                fail(f"{p} is a plain run directory: say which script wrote it with --script")
            found.append((script, parts[0], parts[1], int(parts[2]), p))
        else:
            fail(f"{p} holds no sweep runs and no event files")
    events = {r[:4]: r[4] for r in found}
    for key, (p, series) in from_csv.items():
        if key in events:
            print(f"[plot] {' '.join(map(str, key))}: from {events[key]}, not {p}", file=sys.stderr)
        else:
            found.append((*key, series))
    if not found:
        fail("no runs with event files under " + " ".join(map(str, paths)))
    return found


def read_scalars(logdir, metrics):
    """{metric: [(step, value)]} of the run's final trajectory: TensorBoard drops what a process logged after the
    step its successor resumed from (purge_step / out-of-order steps); of two values at one step the later wins."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0}, purge_orphaned_data=True)
    ea.Reload()
    tags = ea.Tags()["scalars"]
    out = {}
    for m in metrics:
        if m in tags:
            last = {}
            for e in sorted(ea.Scalars(m), key=lambda e: e.wall_time):
                last[e.step] = e.value
            out[m] = sorted(last.items())
    return out


def align(series):
    """Cluster the steps of several runs: steps closer than half the typical spacing are one point (e.g. evaluations
    due at 2,500 that happen at 2,528 in one run and 2,504 in another), but two steps of one run are always two
    points (a final evaluation at 2.05M after one at 2.0M, every 100k). Returns the sorted cluster steps (the
    smallest step of each cluster) and, per run, {cluster step: value}."""
    owners = {}
    for i, run in enumerate(series):
        for s, _ in run:
            owners.setdefault(s, set()).add(i)
    gaps = [np.diff([s for s, _ in run]) for run in series if len(run) > 1]
    spacing = float(np.median(np.concatenate(gaps))) if gaps else 0.0
    clusters, start, members = {}, None, set()
    for s in sorted(owners):
        if start is None or s - start > spacing / 2 or owners[s] & members:
            start, members = s, set()
        clusters[s] = start
        members |= owners[s]
    per_run = [{clusters[s]: v for s, v in run} for run in series]
    return sorted(set(clusters.values())), per_run


def bin_means(series, every):
    """[(step, value)] -> the mean value over each window (k*every - every, k*every] of env steps that holds any,
    labelled k*every: training-episode metrics logged per episode at each run's own steps become one point per
    window, the same windows for every seed."""
    windows = {}
    for s, v in series:
        windows.setdefault(-(-s // every) * every, []).append(v)
    return [(s, float(np.mean(v))) for s, v in sorted(windows.items())]


def row_rng(*row):
    """The generator of one summary row's bootstrap, seeded by the row itself (script, map, variant, step, metric):
    an interval depends on its own values only, not on which other rows the same call summarises or in what order.
    zlib.crc32, not hash(): Python salts the hash of a str per process."""
    return np.random.default_rng(zlib.crc32(repr(tuple(map(str, row))).encode()))


def bootstrap_ci(values, row, resamples=10_000):
    """95% percentile-bootstrap interval of the mean of `values` (nan, nan with < 2), resampled with the generator
    of its summary row `row` (a tuple: script, map, variant, step, metric; see row_rng)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = row_rng(*row)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def last_k_means(steps, per_run, k):
    """Per run, the mean of its values at the last k aligned steps, for the runs that reached the last step (a run
    still in progress is left out, not averaged over an earlier window); [] when k < 1 or no run has k values."""
    if k < 1 or len(steps) < k:
        return []
    window = steps[-k:]
    return [float(np.mean([pr[s] for s in window])) for pr in per_run if all(s in pr for s in window)]


def over_seeds(vals, row):
    """(seeds, mean, ci95 low, ci95 high, IQM) of one value per seed, the interval that of summary row `row`; the IQM
    only with >= 4 seeds (else nan)."""
    from scipy.stats import trim_mean

    iqm = float(trim_mean(vals, 0.25)) if len(vals) >= 4 else float("nan")
    return (len(vals), float(np.mean(vals)), *bootstrap_ci(vals, row), iqm)


def cmd_plot(a):
    metrics = a.metric or ["eval/win_rate"]
    bins = {}
    for tag, every in a.bin or []:
        if tag not in metrics:
            fail(f"--bin {tag} {every}: {tag} is not one of the --metric tags")
        if not every.isdigit() or int(every) < 1:
            fail(f"--bin {tag} {every}: the window must be a whole number >= 1 of env steps")
        bins[tag] = int(every)
    runs = find_runs(a.paths, a.script)
    if a.variants:
        runs = [r for r in runs if r[2] in a.variants]
        if not runs:
            fail(f"no runs of the variants {', '.join(a.variants)}")
    for va, vb in a.diff or []:
        missing = [v for v in (va, vb) if v not in {r[2] for r in runs}]
        if va == vb or missing:
            fail(f"--diff {va} {vb}: " + (f"no runs of {', '.join(missing)}" if missing else "two different variants"))
    scripts, maps = sorted({r[0] for r in runs}), sorted({r[1] for r in runs})
    out = output_path(a.out or f"benchmarks/results/{'+'.join(scripts)}_{'+'.join(maps)}")
    binned = {tag: f"{tag}@bin{every}" for tag, every in bins.items()}  # a long CSV holds the binned series
    data = {r: read_scalars(r[4], metrics) if isinstance(r[4], Path) else
            {m: list(v) for m, v in r[4] if m in metrics or m in binned.values()} for r in runs}
    for r in runs:  # a noisy per-episode tag becomes the mean over each window of `every` env steps
        for tag, every in bins.items():
            if tag in data[r]:
                data[r][binned[tag]] = bin_means(data[r].pop(tag), every)
    metrics = [binned.get(m, m) for m in metrics]
    if not any(data[r].get(metrics[0]) for r in runs):
        fail(f"no run logged {metrics[0]} (tags of the first run: {', '.join(metrics)} not among them)")

    long_rows, summary = [], []
    groups = {}
    for r in runs:
        groups.setdefault((r[0], r[1], r[2]), []).append(r)
    order = sorted(groups, key=lambda k: (k[0], k[1], a.variants.index(k[2]) if a.variants else k[2]))
    for key in order:
        group = sorted(groups[key], key=lambda r: r[3])
        for m in metrics:
            for r in group:
                long_rows += [(*key, r[3], s, m, v) for s, v in data[r].get(m, [])]
            steps, per_run = align([data[r].get(m, []) for r in group])
            for s in steps:
                summary.append((*key, m, s, *over_seeds([pr[s] for pr in per_run if s in pr], (*key, s, m))))
            held = last_k_means(steps, per_run, a.last)
            if held:  # whether a level is held, not touched once: each seed's mean over its last K evaluations
                held_m = f"{m}@last{a.last}"
                summary.append((*key, held_m, steps[-1], *over_seeds(held, (*key, steps[-1], held_m))))
    diffs = differences(a.diff or [], groups, data, metrics)
    write_long_csv(f"{out}.csv", long_rows)
    with open(f"{out}_summary.csv", "w", newline="") as f:  # the long CSV's columns; `seed` names the statistic
        w = csv.writer(f)
        w.writerow(LONG_COLUMNS)
        for sc, mp, var, m, step, n, *stats in summary:
            w.writerow((sc, mp, var, "seeds", step, m, n))
            w.writerows((sc, mp, var, name, step, m, f"{x:.6g}") for name, x in zip(SUMMARY_STATS, stats)
                        if not np.isnan(x))
        for sc, mp, var, m, step, n_a, n_b, *stats in diffs:
            w.writerows((sc, mp, var, name, step, m, n) for name, n in (("seeds_a", n_a), ("seeds_b", n_b)))
            w.writerows((sc, mp, var, name, step, m, f"{x:.6g}") for name, x in zip(SUMMARY_STATS, stats)
                        if not np.isnan(x))
    plot_png(f"{out}.png", summary, long_rows, metrics[0], order, groups, a)
    report(summary, metrics[0], order, groups)
    report_differences(diffs, metrics[0])
    print(f"[plot] wrote {out}.csv, {out}_summary.csv and {out}.png")
    return 0


def differences(pairs, groups, data, metrics, resamples=10_000):
    """--diff A B: at each step both variants reached (aligned together), mean(A) - mean(B) over their seeds and a
    95% percentile-bootstrap interval (with >= 2 seeds of each) that resamples each variant's seeds independently
    (runs of two variants are not paired: one seed number gives the same environment draws only until the policies
    differ). Rows (script, map, "A-B", metric, step, seeds of A, seeds of B, difference, low, high, nan), for every
    script and map with both."""
    rows = []
    for va, vb in pairs:
        for sc, mp in sorted({k[:2] for k in groups}):
            if (sc, mp, va) not in groups or (sc, mp, vb) not in groups:
                continue
            ga, gb = (sorted(groups[(sc, mp, v)], key=lambda r: r[3]) for v in (va, vb))
            for m in metrics:
                steps, per_run = align([data[r].get(m, []) for r in ga + gb])
                for s in steps:
                    xa = np.array([pr[s] for pr in per_run[:len(ga)] if s in pr])
                    xb = np.array([pr[s] for pr in per_run[len(ga):] if s in pr])
                    if not len(xa) or not len(xb):
                        continue
                    lo = hi = float("nan")
                    if min(len(xa), len(xb)) >= 2:  # one seed has no spread to resample: no interval
                        rng = row_rng(sc, mp, f"{va}-{vb}", s, m)
                        d = (xa[rng.integers(0, len(xa), size=(resamples, len(xa)))].mean(axis=1)
                             - xb[rng.integers(0, len(xb), size=(resamples, len(xb)))].mean(axis=1))
                        lo, hi = float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))
                    rows.append((sc, mp, f"{va}-{vb}", m, s, len(xa), len(xb), float(xa.mean() - xb.mean()), lo, hi,
                                 float("nan")))
    return rows


def report_differences(diffs, metric):
    """One line per --diff pair and map: the difference at each step, starred where its interval excludes 0."""
    for key in dict.fromkeys(r[:3] for r in diffs):
        pts = [r for r in diffs if r[:3] == key and r[3] == metric]
        text = ", ".join(f"{r[4]:,}: {r[7]:+.3f}" + (f" [{r[8]:+.3f}, {r[9]:+.3f}]{'*' if r[8] > 0 or r[9] < 0 else ''}"
                                                     if not np.isnan(r[8]) else "") for r in pts)
        print(f"[plot] {'/'.join(key)}: {metric} difference of the means (95% CI; * excludes 0): {text}")


def line_style(i):
    """Colour and line style of the i-th variant of a plot: the ten default colours, then again dashed, dash-dotted."""
    return f"C{i % 10}", ("-", "--", "-.")[i // 10 % 3]


def plot_png(path, summary, long_rows, metric, order, groups, a):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    several_keys = len({k[:2] for k in order}) > 1
    for i, key in enumerate(order):
        color, ls = line_style(i)
        rows = [r for r in summary if r[:3] == key and r[3] == metric]
        if not rows:
            continue
        n_seeds = len(groups[key])
        step = np.array([r[4] for r in rows], dtype=float)
        n = np.array([r[5] for r in rows])
        mean, lo, hi = (np.array([r[j] for r in rows], dtype=float) for j in (6, 7, 8))
        label = f"{'/'.join(key[:2]) + ' ' if several_keys else ''}{key[2]} ({n_seeds} seed{'s' * (n_seeds > 1)})"
        full = n == n_seeds
        ax.plot(np.where(full, step, np.nan), np.where(full, mean, np.nan), color=color, ls=ls, lw=2, label=label)
        if not full.all():  # steps that not every seed has reached yet (a sweep in progress)
            ax.plot(step, np.where(full, np.nan, mean), color=color, lw=1.2, ls=":")
        ax.fill_between(step, lo, hi, where=n >= 2, color=color, alpha=0.2, lw=0)
        if a.seed_lines:
            for r in groups[key]:
                pts = [(row[4], row[6]) for row in long_rows if row[:4] == (*key, r[3]) and row[5] == metric]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, lw=0.6, alpha=0.35)
    if a.target is not None:
        ax.axhline(a.target, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("env steps")
    ax.set_ylabel(metric)
    if metric.endswith("win_rate"):
        ax.set_ylim(-0.02, 1.02)
    ax.set_title(a.title or f"{', '.join(sorted({k[0] for k in order}))} on {', '.join(sorted({k[1] for k in order}))}"
                 ": mean and 95% bootstrap CI over seeds", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mean_ci(row):
    """A summary row's "mean m [low, high]" (no interval with one seed)."""
    return f"mean {row[6]:.3f}" + (f" [{row[7]:.3f}, {row[8]:.3f}]" if row[5] >= 2 else "")


def report(summary, metric, order, groups):
    """The last point every seed of a variant reached, with its interval, and wall time where the sweep recorded it;
    and the variant's last point, where some seeds went further (a seed stopped early ends the first)."""
    for key in order:
        points = [r for r in summary if r[:3] == key and r[3] == metric]
        rows = [r for r in points if r[5] == len(groups[key])]
        if not rows:
            continue
        r = rows[-1]
        walls = []  # runs that finished: the sum of their attempts' wall times (a resumed run had several)
        for g in (g for g in groups[key] if isinstance(g[4], Path)):  # a run from a CSV has no status
            attempts = read_status(g[4].parent.parent)["attempts"]
            if attempts and attempts[-1].get("exit_code") == 0:
                walls.append(sum(a.get("wall_seconds") or 0 for a in attempts))
        wall = f", wall per finished run {hms(np.mean(walls))} ({len(walls)} runs)" if walls else ""
        print(f"[plot] {'/'.join(key)}: {metric} at step {r[4]:,} over {r[5]} seeds: {mean_ci(r)}{wall}")
        last = points[-1]
        if last[4] > r[4]:
            print(f"[plot] {'/'.join(key)}: {metric} at its last step {last[4]:,} over {last[5]} of "
                  f"{len(groups[key])} seeds: {mean_ci(last)}")
        for h in (h for h in summary if h[:3] == key and h[3].startswith(f"{metric}@last")):
            print(f"[plot] {'/'.join(key)}: {h[3]} (each seed's mean over its last evaluations) over {h[5]} seeds: "
                  f"{mean_ci(h)}")


# ---------------------------------------------------------------------------------------------------------------------
# final: evaluate every finished run's last checkpoint in named modes (e.g. greedy and with search), paired by seed
# ---------------------------------------------------------------------------------------------------------------------
EVAL_LINE = re.compile(r"eval at step ([\d,]+): win rate ([-\d.]+), return ([-\d.naif]+) \((\d+) episodes")


def parse_modes(modes):
    """[(name, flags)] from --mode NAME="--flag ..." (default: one mode 'greedy' with no flags)."""
    out = named_flag_sets(modes or ["greedy="], "--mode")
    for name, flags in out.items():
        for flag in flags:
            if flag in ("--checkpoint", "--eval-only", "--seed", "--map") or flag.startswith(("--checkpoint=", "--seed=")):
                fail(f"--mode {name}: {flag} is set by `final` itself (or fixed by the checkpoint)")
    return list(out.items())


def final_eval(run_dir, script, checkpoint, mode, flags, python):
    """{step, win_rate, episodic_return, episodes} of `<script>.py --checkpoint C --eval-only <flags>`, cached in
    <run_dir>/final.json under the mode's name with its flags and the checkpoint's size and mtime (a changed checkpoint
    or changed flags evaluate again); on failure a one-line message instead of the dict."""
    cache_path = Path(run_dir) / "final.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    st = checkpoint.stat()
    key = {"flags": flags, "checkpoint": str(checkpoint.relative_to(run_dir)), "size": st.st_size,
           "mtime": st.st_mtime}
    hit = cache.get(mode)
    if hit and hit["key"] == key:
        return hit["result"], True
    argv = [python, str(ROOT / f"{script}.py"), "--checkpoint", str(checkpoint), "--eval-only", *flags]
    t0 = time.time()
    proc = subprocess.run(argv, cwd=run_dir, capture_output=True, text=True)
    found = EVAL_LINE.findall(proc.stdout)
    if proc.returncode != 0 or not found:
        return (f"{Path(run_dir).name}, mode {mode}: `{shlex.join(argv)}` exited {proc.returncode}"
                + ("" if found else " without an 'eval at step' line") + ": "
                + " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])), False
    step, win, ret, episodes = found[-1]
    result = {"step": int(step.replace(",", "")), "win_rate": float(win), "episodic_return": float(ret),
              "episodes": int(episodes), "wall_seconds": round(time.time() - t0, 1)}
    with _lock:  # the modes of one run may be evaluated at the same time: re-read and write its file under the lock
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cache = {}
        cache[mode] = {"key": key, "result": result}
        cache_path.write_text(json.dumps(cache, indent=1))
    return result, False


def cmd_final(a):
    """Each finished run's newest checkpoint evaluated in every --mode (a run read from the long CSV of an earlier
    `final`, its checkpoint gone, keeps that CSV's rows of the same mode names); long CSV (metric
    final/<mode>/win_rate and final/<mode>/episodic_return at the checkpoint's step), summary CSV (mean and 95%
    bootstrap CI over seeds per mode, and of each later mode's paired per-seed difference from the first mode, metric
    final/<mode>-<first>/...)."""
    modes = parse_modes(a.mode)
    runs = [r for r in find_runs(a.paths, None) if not a.variants or r[2] in a.variants]
    todo, kept = [], []  # kept: (run, mode, result) read back from the long CSV of an earlier `final`
    for r in runs:
        if not isinstance(r[4], Path):  # a run whose checkpoint is gone: its rows stand for the same mode names
            series, got = dict(r[4]), {}
            for name, _ in modes:
                points = [series.get(f"final/{name}/{m}") for m in ("win_rate", "episodic_return")]
                if not all(points):
                    print(f"[final] {' '.join(map(str, r[:4]))}: its CSV has no final/{name}/ rows, skipped",
                          file=sys.stderr)
                    break
                got[name] = dict(step=points[0][-1][0], win_rate=points[0][-1][1], episodic_return=points[1][-1][1])
            else:
                kept += [(r, name, got[name]) for name, _ in modes]
            continue
        run_dir = r[4].parent.parent.resolve()  # the script runs there: absolute paths
        ckpts = checkpoints(run_dir)
        if not finished({"run_dir": run_dir}) or not ckpts:
            print(f"[final] {run_dir.name}: not finished{'' if ckpts else ' (no checkpoint)'}, skipped", file=sys.stderr)
            continue
        todo += [(r, run_dir, ckpts[-1], name, flags) for name, flags in modes]
    if not todo and not kept:
        fail("no finished runs with a checkpoint (or final rows in a CSV) under " + " ".join(map(str, a.paths)))

    def one(item):
        r, run_dir, ckpt, name, flags = item
        res, cached = final_eval(run_dir, r[0], ckpt, name, flags, a.python)
        if isinstance(res, str):
            return res
        print(f"[final] {run_dir.name} {name}: step {res['step']:,}, win rate {res['win_rate']:.3f} over "
              f"{res['episodes']} episodes{' (cached)' if cached else ''}", flush=True)
        return res

    with ThreadPoolExecutor(max_workers=a.workers) as pool:
        results = list(pool.map(one, todo))
    errors = [res for res in results if isinstance(res, str)]
    if errors:
        fail(errors[0] + (f" (and {len(errors) - 1} more evaluations failed)" if len(errors) > 1 else ""))

    table = {}  # (script, map, variant) -> {seed: {mode: result}}
    for (r, _, _, name, _), res in zip(todo, results):
        table.setdefault(r[:3], {}).setdefault(r[3], {})[name] = res
    for r, name, res in kept:
        print(f"[final] {' '.join(map(str, r[:4]))} {name}: step {res['step']:,}, win rate {res['win_rate']:.3f} "
              "(from a CSV)", flush=True)
        table.setdefault(r[:3], {}).setdefault(r[3], {})[name] = res
    order = sorted(table, key=lambda k: (k[0], k[1], a.variants.index(k[2]) if a.variants else k[2]))
    out = output_path(a.out)
    first = modes[0][0]
    last_step = {key: max(table[key][s][first]["step"] for s in table[key]) for key in order}  # of the variant's seeds
    long_rows, stats = [], {}  # stats[(key, metric)] = (values per seed, mean, ci95 low, ci95 high)
    for key in order:
        seeds = sorted(table[key])
        for name, _ in modes:
            for m in ("win_rate", "episodic_return"):
                vals = [table[key][s][name][m] for s in seeds]
                long_rows += [(*key, s, table[key][s][name]["step"], f"final/{name}/{m}", v) for s, v in zip(seeds, vals)]
                series = [(f"final/{name}/{m}", vals)]
                if name != first:
                    series.append((f"final/{name}-{first}/{m}",
                                   [v - table[key][s][first][m] for s, v in zip(seeds, vals)]))
                for metric, x in series:
                    stats[key, metric] = (x, float(np.mean(x)), *bootstrap_ci(x, (*key, last_step[key], metric)))

        def show(metric, fmt):
            x, mean, lo, hi = stats[key, metric]
            return f"{mean:{fmt}}" + (f" [{lo:{fmt}}, {hi:{fmt}}]" if len(x) > 1 else "")

        line = []
        for name, _ in modes:
            x = stats[key, f"final/{name}/win_rate"][0]
            line.append(f"{name} {show(f'final/{name}/win_rate', '.3f')} ({' / '.join(f'{v:.2f}' for v in x)})")
            if name != first:
                line.append(f"{name} - {first} {show(f'final/{name}-{first}/win_rate', '+.3f')}")
        print(f"[final] {'/'.join(key)}, {len(seeds)} seed{'s' * (len(seeds) > 1)} ({', '.join(map(str, seeds))}): "
              + "; ".join(line))
    write_long_csv(f"{out}.csv", long_rows)
    write_seed_summary(f"{out}_summary.csv", [(*key, last_step[key], metric, *st) for (key, metric), st in stats.items()])
    print(f"[final] wrote {out}.csv and {out}_summary.csv")
    return 0


def cmd_exec(a):
    """One run from its spec.json, as a SLURM array task executes it."""
    with open(Path(a.run_dir) / "spec.json") as f:
        record = run_one(json.load(f))
    print(json.dumps(record))
    return 0


# ---------------------------------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="start (or resume) every unfinished run of a sweep",
                       description="Expand --scripts x (--maps or --env) x --seeds x --variant into runs of the "
                                   "unmodified scripts and start every run that has not finished; re-running the "
                                   "same command skips finished runs and resumes interrupted ones from their checkpoint.")
    r.add_argument("--sweep", required=True, help="name of the sweep: its runs go to <root>/<sweep>/")
    r.add_argument("--scripts", nargs="+", required=True, metavar="SCRIPT", help=f"scripts to run: {', '.join(SCRIPTS)}")
    r.add_argument("--maps", nargs="+", metavar="MAP", help="StarCraft maps (passed as --map), e.g. 3m 2s3z")
    r.add_argument("--env", dest="envs", nargs="+", metavar="ENV",
                   help="toy games instead of maps (passed as --env): matrix, mtq (fop.py, fsv.py)")
    r.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="seeds (default 1 2 3)")
    r.add_argument("--variant", action="append", metavar='NAME="--flag value ..."',
                   help="a named set of flags, repeatable; the variants are compared in `plot` (default: one "
                        "variant 'default' with no flags)")
    r.add_argument("--flags", default="", help='flags given to every run, e.g. "--total-timesteps 50000 --preset cpu"')
    r.add_argument("--root", default="runs/sweeps", help="directory of all sweeps (default runs/sweeps)")
    r.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local: a pool of --workers subprocesses here; slurm: a SLURM array job through submitit")
    r.add_argument("--workers", type=int, default=2, help="local: runs at the same time (default 2)")
    r.add_argument("--gpus", type=int, default=None,
                   help="local: GPUs to share round-robin via CUDA_VISIBLE_DEVICES (default: what nvidia-smi lists; "
                        "0 for none)")
    r.add_argument("--partition", default=None, help="slurm: partition")
    r.add_argument("--gpus-per-run", type=int, default=0, help="slurm: GPUs per run (default 0)")
    r.add_argument("--cpus-per-run", type=int, default=2, help="slurm: CPUs per run (default 2)")
    r.add_argument("--time", type=int, default=24 * 60, help="slurm: time limit per run in minutes (default 1440)")
    r.add_argument("--array-parallelism", type=int, default=64, help="slurm: runs of the array at the same time")
    r.add_argument("--submitit-cluster", default=None, choices=("slurm", "local", "debug"),
                   help="slurm: submitit executor (default: SLURM when sbatch exists; 'local' runs the same "
                        "submission path as local processes, which is how the tests check it)")
    r.add_argument("--python", default=sys.executable, help="python interpreter of the runs (default: this one)")
    r.add_argument("--dry-run", action="store_true", help="print each run's directory, state and command; run nothing")
    r.set_defaults(func=cmd_run)

    q = sub.add_parser("plot", help="long CSV, summary CSV and PNG of what the runs logged",
                       description="Read the TensorBoard events of sweeps or run directories and write <out>.csv "
                                   "(script,map,variant,seed,step,metric,value), <out>_summary.csv (the same columns, "
                                   "with the statistic over seeds in place of the seed: seeds, mean, ci95_low, "
                                   "ci95_high of a 95% bootstrap CI of the mean, its draws seeded by the row, iqm "
                                   "with >= 4 seeds) and <out>.png (mean and shaded CI per variant against env steps).")
    q.add_argument("paths", nargs="+", help="sweep directories, sweep run directories, a script's run directories "
                                            "or long CSVs an earlier plot wrote (to add runs whose events are gone)")
    q.add_argument("--metric", action="append", help="scalar tag, repeatable; the first is plotted "
                                                      "(default eval/win_rate)")
    q.add_argument("--out", default=None, help="output path without extension (default "
                                               "benchmarks/results/<script>_<map>)")
    q.add_argument("--variants", nargs="+", default=None, help="only these variants, in this order")
    q.add_argument("--script", default=None, help="the script that wrote plain run directories (their variant is "
                                                  "the run's exp_name)")
    q.add_argument("--title", default=None, help="PNG title")
    q.add_argument("--target", type=float, default=None, help="draw a horizontal line at this value (e.g. 0.9)")
    q.add_argument("--no-seed-lines", dest="seed_lines", action="store_false", help="do not draw each seed thinly")
    q.add_argument("--diff", nargs=2, action="append", metavar=("A", "B"),
                   help="also the difference of the means of variants A and B at each step, with a 95%% bootstrap "
                        "interval that resamples each variant's seeds (variant A-B, statistics seeds_a, seeds_b, "
                        "mean, ci95_low, ci95_high in the summary CSV); repeatable")
    q.add_argument("--bin", nargs=2, action="append", metavar=("TAG", "STEPS"),
                   help="replace the --metric TAG by its mean over windows of STEPS env steps (tag TAG@binSTEPS, "
                        "one point per window end), for per-episode training metrics such as charts/win_rate; "
                        "repeatable")
    q.add_argument("--last", type=int, default=5, help="also summarise each seed's mean over its last K evaluations "
                                                       "(metric <tag>@last<K> at the last step; default 5, 0: off)")
    q.set_defaults(func=cmd_plot)

    f = sub.add_parser("final", help="evaluate every finished run's last checkpoint in named modes, paired by seed",
                       description="Run `<script>.py --checkpoint <newest checkpoint> --eval-only <mode flags>` for every "
                                   "finished run and every --mode (cached in <run_dir>/final.json), then write <out>.csv "
                                   "(metric final/<mode>/win_rate, final/<mode>/episodic_return at the checkpoint's "
                                   "step) and <out>_summary.csv (seeds, mean, 95% bootstrap CI per mode, and of each "
                                   "later mode's per-seed difference from the first: final/<mode>-<first>/...).")
    f.add_argument("paths", nargs="+", help="sweep directories, sweep run directories, or long CSVs of an earlier "
                   "`final` (runs whose checkpoints are gone: their rows of the same --mode names are used as they are)")
    f.add_argument("--mode", action="append", metavar='NAME="--flag ..."',
                   help='a named set of --eval-only flags, repeatable, e.g. --mode greedy="" --mode search="--eval-mcts" '
                        "(default: greedy with no flags); later modes are compared with the first, seed by seed")
    f.add_argument("--out", required=True, help="output path without extension, e.g. benchmarks/results/mazero_3m_final")
    f.add_argument("--variants", nargs="+", default=None, help="only these variants, in this order")
    f.add_argument("--workers", type=int, default=2, help="evaluations at the same time (default 2)")
    f.add_argument("--python", default=sys.executable, help="python interpreter (default: this one)")
    f.set_defaults(func=cmd_final)

    x = sub.add_parser("exec", help="(internal) run one run from <run_dir>/spec.json: what a SLURM array task does")
    x.add_argument("run_dir")
    x.set_defaults(func=cmd_exec)

    a = p.parse_args(argv)
    if a.command == "run" and a.submitit_cluster is None and a.launcher == "slurm":
        a.submitit_cluster = "slurm" if shutil.which("sbatch") else None
        if a.submitit_cluster is None:
            fail("--launcher slurm: no sbatch here; on a machine without SLURM use --submitit-cluster local")

    def stop(signum, frame):  # a stopped sweep stops its runs; their checkpoints let the next call resume them
        with _lock:  # held to the exit: the runs' own threads do not write their status meanwhile
            for proc in _children:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except OSError:
                    pass
            for proc, (run_dir, status, record, start) in _children.items():  # the attempt's wall time is kept
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
                end_attempt(run_dir, status, record, start, proc.returncode, stopped_by_signal=signum)
        print(f"[sweep] stopped by signal {signum}; re-run the same command to resume", file=sys.stderr, flush=True)
        os._exit(130)

    if a.command == "run" and a.launcher == "local":
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
