"""benchmarks/mappo_reference.py without a JaxMARL checkout: a stand-in repository whose mappo_rnn_smax.py reports
through wandb.log from a jax io_callback inside its jitted scan, as the real one does; the long CSV's rows, the
merge of seeds, the overrides, and the one-line errors."""
import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import mappo_reference  # noqa: E402
import sweep  # noqa: E402

CONFIG = """\
"LR": 0.002
"NUM_ENVS": 2
"NUM_STEPS": 4
"TOTAL_TIMESTEPS": 1e7
"MAP_NAME": "2s3z"
"SEED": 0
"ENV_KWARGS":
  "attack_mode": "closest"
"WANDB_MODE": "online"
"""

SCRIPT = """\
import jax
import jax.numpy as jnp
from jax.experimental import io_callback

import wandb
{extra_import}


def make_train(config):
    assert config["WANDB_MODE"] == "disabled" and config["MAP_NAME"] == "smacv2_5_units"
    config["NUM_UPDATES"] = config["TOTAL_TIMESTEPS"] // config["NUM_STEPS"] // config["NUM_ENVS"]

    def train(rng):
        def _update_step(update_steps, unused):
            def callback(metric):
                wandb.log({{"returns": metric["seed"] + metric["update_steps"],
                           "win_rate": config["LR"] * (metric["update_steps"] + 1),
                           "env_step": metric["update_steps"] * config["NUM_ENVS"] * config["NUM_STEPS"],
                           "actor_loss": -metric["update_steps"], "approx_kl": float("nan")}})

            io_callback(callback, None, {{"update_steps": update_steps, "seed": jnp.float32(config["SEED"])}})
            return update_steps + 1, None

        jax.lax.scan(_update_step, 0, None, config["NUM_UPDATES"])
        return {{"runner_state": rng}}

    return train
"""


def make_repo(root, extra_import=""):
    mappo = root / "baselines" / "MAPPO"
    (mappo / "config").mkdir(parents=True)
    (mappo / "config" / "mappo_homogenous_rnn_smax.yaml").write_text(CONFIG)
    (mappo / "mappo_rnn_smax.py").write_text(SCRIPT.format(extra_import=extra_import))
    return root


@pytest.fixture(autouse=True)
def restore_wandb(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # the wrapper's stand-in is gone after each test


def read(path):
    with open(path) as f:
        return list(csv.reader(f))


def one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and all(w in err for w in words), err


def test_rows_seeds_merge_and_overrides(tmp_path, capfd):
    pytest.importorskip("hydra")
    pytest.importorskip("omegaconf")
    repo, out = make_repo(tmp_path / "JaxMARL"), tmp_path / "ref.csv"
    sweep.write_long_csv(out, [("fop", "3m", "defaults", 1, 100, "eval/win_rate", 0.5)])  # another script's row
    base = ["--jaxmarl-repo", str(repo), "--out", str(out)]
    mappo_reference.main([*base, "--seed", "1", "--total-timesteps", "24"])  # 3 updates of 2 envs x 4 steps
    assert "env steps/s" in capfd.readouterr().out
    mappo_reference.main([*base, "--seed", "2", "--total-timesteps", "16"])
    mappo_reference.main([*base, "--seed", "1", "--total-timesteps", "16"])  # replaces seed 1's rows
    mappo_reference.main([*base, "--seed", "1", "--total-timesteps", "16", "--variant", "lr0.25", "LR=0.25"])
    rows = read(out)
    assert rows[0] == sweep.LONG_COLUMNS and rows[1] == ["fop", "3m", "defaults", "1", "100", "eval/win_rate", "0.5"]
    got = {(r[2], int(r[3]), int(r[4]), r[5]): float(r[6]) for r in rows[2:]}
    assert len(got) == len(rows) - 2 and {r[0] for r in rows[2:]} == {"mappo_jaxmarl"}
    assert {r[1] for r in rows[2:]} == {"smacv2_5_units"}
    for variant, lr in (("jaxmarl_defaults", 0.002), ("lr0.25", 0.25)):
        for seed in (1, 2) if variant == "jaxmarl_defaults" else (1,):
            run = {(step, m): v for (var, s, step, m), v in got.items() if (var, s) == (variant, seed)}
            # step = JaxMARL's env_step (the rollout's start) + NUM_ENVS x NUM_STEPS; NaN (approx_kl) left out
            assert set(run) == {(step, m) for step in (8, 16) for m in
                                ("charts/win_rate", "charts/episodic_return_native", "losses/actor_loss")} | {
                                    (16, "charts/SPS")}
            assert (run[8, "charts/win_rate"], run[16, "charts/win_rate"]) == pytest.approx((lr, 2 * lr))
            assert run[16, "charts/episodic_return_native"] == seed + 1 and run[16, "losses/actor_loss"] == -1
            assert run[16, "charts/SPS"] > 0


def test_missing_checkout(tmp_path, capsys):
    with pytest.raises(SystemExit):
        mappo_reference.main(["--jaxmarl-repo", str(tmp_path / "nowhere")])
    one_line_error(capsys, "not a JaxMARL checkout", "baselines/MAPPO/mappo_rnn_smax.py")


def test_overrides_need_a_variant(tmp_path, capsys):
    with pytest.raises(SystemExit):
        mappo_reference.main(["--jaxmarl-repo", str(make_repo(tmp_path)), "LR=0.001"])
    one_line_error(capsys, "--variant")


@pytest.mark.parametrize("module, package", [("hydra", "hydra-core"), ("distrax", "distrax")])
def test_missing_package(tmp_path, capsys, monkeypatch, module, package):
    if module != "hydra":  # the wrapper's own hydra and omegaconf come first
        pytest.importorskip("hydra")
        pytest.importorskip("omegaconf")
    repo = make_repo(tmp_path, extra_import=f"import {module}")
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(SystemExit):
        mappo_reference.main(["--jaxmarl-repo", str(repo), "--out", str(tmp_path / "x.csv")])
    one_line_error(capsys, f"needs {package}", "pip install")
    assert not (tmp_path / "x.csv").exists()
