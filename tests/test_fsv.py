"""fsv.py: the soft value and Boltzmann policy of Sec. 3.3 and Eq. 33's stop-gradients in
isolation, the paper's toy-game claims (matrix game: greedy (A, A) and the payoff reproduced,
Table 4; MTQ: the global optimum (5, 5), Table 7), Eq. 34 on the discrete side, a SMAX smoke run
that proves an update, an evaluation, a checkpoint and a resume happened, seeding, and one-line
errors on bad input (unknown env/map, alpha <= 0, impossible sizes, foreign checkpoints).
The toy runs call `fsv.main` in-process (a subprocess per seed would spend most of its time
importing torch); the SMAX smoke test and one bad-input test go through the command line."""
import contextlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import fsv
import games

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "fsv.py")


def run_main(**kw):
    """fsv.main with the game's defaults (as the command line) and its prints swallowed; returns the result dict."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fsv.main(fsv.env_args(**kw))


def scalars(run_dir):
    ea = EventAccumulator(str(run_dir))
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


# ---------------------------------------------------------------- Sec. 3.3 and Eq. 33 in isolation
def test_soft_value_and_boltzmann_policy_over_legal_actions():
    """V_i = alpha log sum exp(Q_i / alpha) and pi_i = exp((Q_i - V_i) / alpha) over the legal
    actions only (Sec. 3.3); illegal actions get probability 0, not NaN."""
    q = torch.tensor([[1.0, 2.0, 3.0, 50.0]])
    avail = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    for alpha in (1.0, 0.1):
        v = fsv.soft_v(q, avail, alpha)
        assert torch.allclose(v, alpha * torch.logsumexp(q[:, :3] / alpha, -1))
        logp = fsv.log_pi(q, avail, alpha)
        p = logp.exp()
        assert torch.allclose(p[:, :3], ((q[:, :3] - v[:, None]) / alpha).exp(), atol=1e-6)
        assert p[0, 3] == 0 and torch.isclose(p.sum(), torch.tensor(1.0))
        assert torch.isfinite(p * logp).all()


def test_mixer_value_is_eq7_and_gradients_follow_eq33():
    """Q_tot's value is Eq. 7; its gradient reaches each Q_i only through the last term of Eq. 33
    (dQ_tot/dQ_i = 1, nothing through V_i), while lambda and the w, b hypernetwork do learn."""
    torch.manual_seed(0)
    args = fsv.Args(hyper_hidden=0)
    mixer = fsv.FSVMixer(state_dim=3, joint_action_dim=6, n_agents=2, args=args)
    q = torch.randn(5, 2, requires_grad=True)
    v = torch.randn(5, 2, requires_grad=True)
    s, u = torch.randn(5, 3), torch.randn(5, 6)
    q_tot, lam = mixer(q, v, s, u)
    eq7 = (lam * (q - v)).sum(-1) + mixer.v_tot(s, v)
    assert torch.allclose(q_tot, eq7, atol=1e-5)
    assert (lam > 0).all() and (lam <= 4 * np.e + 1e-4).all()  # 4 heads, logits bounded by c = 1
    q_tot.sum().backward()
    assert torch.allclose(q.grad, torch.ones_like(q)) and v.grad is None
    for name, p in mixer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- matrix game (Sec. 5.1, Table 4)
MATRIX = dict(env="matrix", alpha_final=0.01, total_timesteps=1000, save_model=False)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matrix_game_greedy_optimum_and_payoff(tmp_path, monkeypatch, seed):
    """Uniform exploration, alpha annealed 1 -> 0.01 (here over 1k steps instead of 20k): the
    greedy joint action is (A, A) and Q_tot reproduces every cell of the payoff within 1.0."""
    monkeypatch.chdir(tmp_path)
    out = run_main(seed=seed, **MATRIX)
    assert out["greedy"] == (0, 0)
    assert out["eval_win_rate"] == 1.0
    err = np.abs(out["q_tot"] - games.MatrixGame.PAYOFF)
    assert err.max() < 1.0, f"Q_tot\n{out['q_tot']}\nerror\n{err}"


def test_same_seed_same_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    short = {**MATRIX, "total_timesteps": 200, "learning_starts": 16}
    a, b, c = run_main(seed=7, **short), run_main(seed=7, **short), run_main(seed=8, **short)
    assert np.array_equal(a["q_tot"], b["q_tot"])
    assert not np.array_equal(a["q_tot"], c["q_tot"])


def test_matrix_tables_print_and_eval_only(tmp_path):
    """The CLI prints the Tables 4-6 layout; --eval-only reloads the checkpoint (whose settings,
    --env matrix included, become the defaults) and prints it again."""
    cmd = [sys.executable, SCRIPT, "--env", "matrix", "--total-timesteps", "300", "--learning-starts", "32"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Q_1 \\ Q_2" in p.stdout and p.stdout.count("\n  A ") == 1
    (run,) = (tmp_path / "runs").iterdir()
    p = subprocess.run([sys.executable, SCRIPT, "--eval-only", "--checkpoint", str(run / "checkpoint.pt")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "eval at step 304: win rate" in p.stdout and "Q_1 \\ Q_2" in p.stdout


def test_matrix_autotune_adjusts_alpha_by_eq34(tmp_path, monkeypatch):
    """--autotune replaces the linear decay by Eq. 34: alpha moves away from alpha_init and the
    alpha loss is logged."""
    monkeypatch.chdir(tmp_path)
    run_main(env="matrix", autotune=True, total_timesteps=300, learning_starts=16, save_model=False)
    (run,) = (tmp_path / "runs").iterdir()
    tags = scalars(run)
    assert "losses/alpha_loss" in tags
    alphas = [a for _, a in tags["losses/alpha"]]
    assert len(alphas) >= 2 and abs(alphas[-1] - 1.0) > 1e-3


# ---------------------------------------------------------------- MTQ (Sec. 5.2, Table 7)
def test_mtq_reaches_global_optimum(tmp_path, monkeypatch):
    """Table 7: FSV finds the optimum (5, 5) in 20/20 runs. Here: within 0.5 in >= 4 of 5 seeds,
    with the default settings on a shortened schedule (500 warm-up steps, 1000 updates)."""
    monkeypatch.chdir(tmp_path)
    finals = []
    for seed in range(1, 6):
        out = run_main(env="mtq", seed=seed, total_timesteps=1500, learning_starts=500,
                       save_model=seed == 1)
        finals.append(out["u"])
    dist = np.hypot(*(np.array(finals) - 5.0).T)
    assert (dist <= 0.5).sum() >= 4, f"final greedy joint actions {np.round(finals, 2)}"
    (run,) = [r for r in (tmp_path / "runs").iterdir() if (r / "checkpoint.pt").exists()]
    assert (run / "mtq_path.png").stat().st_size > 10_000
    tags = scalars(run)
    assert {"mtq/action_1", "mtq/action_2", "losses/policy_loss", "losses/v_loss", "eval/win_rate"} <= set(tags)


# ---------------------------------------------------------------- SMAX smoke run and resume
def test_smax_smoke_update_eval_checkpoint_resume_video(tmp_path):
    """Command line end to end with --capture-video --video-interval 2 (evaluations at steps 0, 200
    and the final 400: GIFs of the first and the third), then a resume with --no-capture-video (no
    new GIF)."""
    common = [sys.executable, SCRIPT, "--map", "3m", "--num-envs", "8", "--eval-episodes", "8",
              "--learning-starts", "8", "--batch-size", "8", "--eval-interval", "200",
              "--checkpoint-interval", "200"]
    p = subprocess.run(common + ["--total-timesteps", "400", "--capture-video", "--video-interval", "2"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "StarCraft backend: smax" in p.stdout and "eval at step 0: win rate" in p.stdout
    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(f.name for f in (run / "videos").iterdir()) == ["step_0.gif", "step_400.gif"]
    with Image.open(run / "videos" / "step_400.gif") as gif:
        assert gif.n_frames > 1 and (run / "videos" / "step_400.gif").stat().st_size > 1000
    tags = scalars(run)
    assert {"losses/q_tot_loss", "losses/lambda", "eval/win_rate", "eval/episodic_return",
            "charts/episodic_return"} <= set(tags)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["script"] == "fsv" and ckpt["env"] == "3m"
    step, updates, episodes, _ = ckpt["counters"]
    assert step >= 400 and updates > 0 and episodes > 8
    # the buffer is written as tensors: torch.save pickles an ndarray through copies of it (OOM on smacv2_5_units)
    assert all(isinstance(v, torch.Tensor) for v in ckpt["buffer"].values())
    assert 8 < len(ckpt["buffer"]["reward"]) <= episodes

    p = subprocess.run(common + ["--total-timesteps", "800", "--checkpoint", str(run / "checkpoint.pt"),
                                 "--no-capture-video"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "runs").iterdir())) == 1  # the same run directory continues
    assert len(list((run / "videos").iterdir())) == 2  # flag off: nothing recorded
    resumed = torch.load(run / "checkpoint.pt", weights_only=False)
    assert resumed["counters"][0] >= 800 and resumed["counters"][1] > updates
    evals = [s for s, _ in scalars(run)["eval/win_rate"]]
    assert max(evals) >= 800 and min(evals) < 800


def test_resume_purges_what_the_interrupted_run_logged_after_its_checkpoint(tmp_path, monkeypatch, capsys):
    """A run that went on past its checkpoint at step 160, resumed from it: TensorBoard shows every
    evaluation step once (SummaryWriter's purge_step), and a finished run has nothing to do."""
    monkeypatch.chdir(tmp_path)
    saved = fsv.save_checkpoint

    def keep_a_copy(path, ckpt):
        saved(path, ckpt)
        if ckpt["counters"][0] == 160:
            shutil.copy(path, tmp_path / "step160.pt")
    monkeypatch.setattr(fsv, "save_checkpoint", keep_a_copy)
    short = dict(env="matrix", total_timesteps=320, learning_starts=16, eval_interval=80, checkpoint_interval=160)
    first = run_main(**short)
    assert (tmp_path / "step160.pt").exists()
    second = fsv.main(fsv.parse_args(["--checkpoint", str(tmp_path / "step160.pt")]))
    assert f"resuming {first['run_name']} at step 160 (" in capsys.readouterr().out
    assert second["run_name"] == first["run_name"] and second["global_step"] == 320
    evals = [s for s, _ in scalars(tmp_path / "runs" / first["run_name"])["eval/win_rate"]]
    assert evals == [0, 80, 160, 240, 320], evals
    ckpt = tmp_path / "runs" / first["run_name"] / "checkpoint.pt"
    assert fsv.main(fsv.parse_args(["--checkpoint", str(ckpt)]))["global_step"] == 320
    assert "nothing to do" in capsys.readouterr().out


def test_console_step_0_eval_progress_and_saved_paths(tmp_path, monkeypatch, capsys):
    """The shared console: an evaluation line at step 0 and at the end, a progress line at the end,
    where the learning path and the checkpoint went; two runs in the same second get two
    directories; --autotune is a plain flag."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fsv.time, "time", lambda: 1_700_000_000.0)
    args = fsv.parse_args(["--env", "mtq", "--total-timesteps", "64", "--learning-starts", "32", "--num-envs", "32"])
    assert args.autotune  # mtq's default
    assert not fsv.parse_args(["--env", "mtq", "--no-autotune"]).autotune
    assert fsv.parse_args(["--env", "matrix", "--autotune"]).autotune
    fsv.main(args)
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("eval at step 0: win rate ")
    assert "step 64/64 (100%) | " in out and "eval at step 64: win rate " in out
    assert "learning path: runs/mtq__fsv__1__1700000000/mtq_path.png" in out
    assert "checkpoint: runs/mtq__fsv__1__1700000000/checkpoint.pt" in out
    fsv.main(args)
    assert "run directory: runs/mtq__fsv__1__1700000000_2" in capsys.readouterr().out


def test_unwritable_runs_or_truncated_checkpoint_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_main(env="matrix", total_timesteps=64, learning_starts=16)
    real = next((tmp_path / "runs").iterdir()) / "checkpoint.pt"
    data = real.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("hello")
    capsys.readouterr()
    for name in ("cut.pt", "text.pt"):
        with pytest.raises(SystemExit) as exc:
            fsv.parse_args(["--checkpoint", name])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err == f"error: checkpoint {name} is truncated or not a torch file\n", err
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    (other / "runs").write_text("not a directory")
    with pytest.raises(SystemExit) as exc:
        run_main(map="3m", backend="smax")  # fails before building SMAX
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: cannot write run directory runs/3m__fsv__1__"), err
    assert err.count("\n") == 1


def test_help_names_the_maps(capsys):
    with pytest.raises(SystemExit) as exc:
        fsv.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0 and all(m in text for m in ("games.SMAC_MAPS", "games.SMAX_MAPS", "3m,", "MMM2,"))
    assert "--no-autotune" in text


# ---------------------------------------------------------------- bad input: one line, exit 2
@pytest.mark.parametrize("kw, message", [
    (dict(env="chess"), "unknown env"),
    (dict(map="no_such_map"), "unknown map"),
    (dict(map="MMM2", backend="smax"), "needs StarCraft II"),
    (dict(env="matrix", alpha_final=0.0), "alpha must be > 0"),
    (dict(env="matrix", alpha_init=-1.0), "alpha must be > 0"),
    (dict(env="matrix", batch_size=64, buffer_size=32), "exceeds --buffer-size"),
    (dict(env="matrix", n_heads=0), "--n-heads must be >= 1"),
    (dict(env="matrix", num_envs=0), "--num-envs must be >= 1"),
    (dict(env="mtq", total_timesteps=0), "--total-timesteps must be >= 1"),
    (dict(rnn_hidden_dim=0), "--rnn-hidden-dim must be >= 1"),
    (dict(env="matrix", eval_episodes=0), "--eval-episodes must be >= 1"),
    (dict(env="mtq", lambda_logit_bound=0.0), "--lambda-logit-bound must be > 0"),
    (dict(env="matrix", epsilon=1.5), "must lie in [0, 1]"),
    (dict(env="mtq", eval_only=True), "--eval-only needs --checkpoint"),
    (dict(env="mtq", checkpoint="missing.pt"), "no checkpoint file"),
    (dict(env="matrix", alpha_init=float("nan")), "--alpha-init must be a finite number, got nan"),
    (dict(env="mtq", target_entropy=float("-inf")), "--target-entropy must be a finite number, got -inf"),
    (dict(env="matrix", capture_video=True), "--capture-video needs a StarCraft map"),
    (dict(video_interval=0), "--video-interval must be >= 1"),
])
def test_bad_input_one_line_exit_2(tmp_path, monkeypatch, capsys, kw, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        run_main(**kw)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # nothing written


def test_checkpoint_from_another_game_or_script(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_main(env="matrix", total_timesteps=200, learning_starts=16)
    (run,) = (tmp_path / "runs").iterdir()
    with pytest.raises(SystemExit) as exc:
        run_main(env="mtq", checkpoint=str(run / "checkpoint.pt"))
    assert exc.value.code == 2 and "trained on matrix, not mtq" in capsys.readouterr().err
    torch.save({"script": "fop", "env": "matrix"}, tmp_path / "other.pt")
    with pytest.raises(SystemExit) as exc:
        run_main(env="matrix", checkpoint=str(tmp_path / "other.pt"))
    assert exc.value.code == 2 and "not an fsv.py checkpoint" in capsys.readouterr().err


def test_checkpoint_from_another_map(tmp_path, monkeypatch, capsys):
    """A 3m run cannot resume from an 8m checkpoint (checked before any env is built)."""
    monkeypatch.chdir(tmp_path)
    torch.save({"script": "fsv", "env": "8m", "args": {"env": "smac", "map": "8m"}}, tmp_path / "8m.pt")
    with pytest.raises(SystemExit) as exc:
        run_main(map="3m", checkpoint=str(tmp_path / "8m.pt"))
    assert exc.value.code == 2 and "trained on 8m, not 3m" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags, message", [
    (["--env", "matrix", "--alpha-final", "-0.1"], "error: alpha must be > 0"),
    (["--map", "no_such_map"], "error: unknown map"),
])
def test_cli_bad_input_exit_2(tmp_path, flags, message):
    p = subprocess.run([sys.executable, SCRIPT, *flags], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().startswith(message) and p.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_progress_line_eta_is_never_negative():
    """The last vectorised step can overshoot --total-timesteps: the ETA is then 0:00:00, not -1:59:59."""
    assert fsv.progress_line(1_000_016, 1_000_000, 250.0, 100, [], [], -0.1).endswith("| ETA 0:00:00")
    assert fsv.progress_line(500_000, 1_000_000, 250.0, 100, [], [], 2000.0).endswith("| ETA 0:33:20")
