# MAPPO (Yu et al. 2022) as JaxMARL runs it on SMAX, unmodified from a JaxMARL checkout: the reference of issue 17.
"""Run JaxMARL's own MAPPO baseline (FLAIROx/JaxMARL, baselines/MAPPO/mappo_rnn_smax.py with its hydra config
config/mappo_homogenous_rnn_smax.yaml) and write what it logs as benchmarks/sweep.py's long CSV.

    pip install distrax hydra-core omegaconf       # the script's imports; jax, flax, optax, jaxmarl stay as pinned
    python benchmarks/mappo_reference.py --jaxmarl-repo ~/JaxMARL --map smacv2_5_units --seed 1 \\
        --total-timesteps 10000000 --out benchmarks/results/mappo_reference_smacv2_5_units.csv
    # a changed hyperparameter is a new variant: hydra overrides after the flags
    python benchmarks/mappo_reference.py --jaxmarl-repo ~/JaxMARL --seed 1 --variant lr1e-3 LR=0.001

None of the algorithm is ours and none of it is copied here: the script is imported from the checkout as it is and
its `make_train(config)` is jitted and run as its hydra `main` does, with the yaml config composed by hydra and the
overrides MAP_NAME, SEED, TOTAL_TIMESTEPS and WANDB_MODE=disabled (plus any given). The only stand-in is the `wandb`
module, put in sys.modules before the import: the script reports its metrics only through `wandb.log`, called from
a `jax.experimental.io_callback` once per update (train returns no metrics), and the stand-in records those calls.
The script runs against the installed jaxmarl (0.2.0, whose SMAX and wrappers equal the checkout's at the time of
writing), or against the checkout's own package with --checkout-jaxmarl.

The environment is JaxMARL's config, not games.py's adapter: HeuristicEnemySMAX with walls_cause_death, SMAX's
native reward (damage fraction + 1 for a win, at most 2), SMAX's episode limit and action layout.
Rows of the CSV (script mappo_jaxmarl, variant --variant, step in env steps counted as JaxMARL counts
TOTAL_TIMESTEPS: one step of one of the NUM_ENVS parallel environments, all agents acting, as our scripts count):
  * charts/win_rate: JaxMARL's `win_rate`, the fraction of won episodes among the training episodes (stochastic
    policy) that ended during the update's rollout (SMAXLogWrapper's returned_won_episode); not a greedy evaluation;
  * charts/episodic_return_native: JaxMARL's `returns`, those episodes' mean return in SMAX's native reward (at
    most 2; our scripts' charts/episodic_return is SMAC's reward scaled to at most 20);
  * losses/<name>: the script's loss_info means (actor_loss, value_loss, entropy, approx_kl, clip_frac, ...);
  * charts/SPS: env steps per second of the jitted run, compile excluded, once at the last step.
JaxMARL logs env_step = update index x NUM_ENVS x NUM_STEPS, the steps done BEFORE the update's rollout; the rows
stand at the end of the rollout the episodes came from (that + NUM_ENVS x NUM_STEPS), so the last row is the total.
Rows of other (script, map, variant, seed) in --out are kept, and the file is rewritten after every update.
"""
import argparse
import importlib.util
import math
import os
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep  # noqa: E402  (benchmarks/: the long CSV writer)

SCRIPT = Path("baselines/MAPPO/mappo_rnn_smax.py")
CONFIG = "mappo_homogenous_rnn_smax"
PIP = {"hydra": "hydra-core", "omegaconf": "omegaconf", "distrax": "distrax"}
METRICS = {"win_rate": "charts/win_rate", "returns": "charts/episodic_return_native"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jaxmarl-repo", required=True, type=Path, help="a checkout of FLAIROx/JaxMARL")
    p.add_argument("--map", default="smacv2_5_units", help="SMAX map (hydra MAP_NAME)")
    p.add_argument("--seed", type=int, default=0, help="hydra SEED (JaxMARL's default 0)")
    p.add_argument("--total-timesteps", type=int, default=10_000_000, help="hydra TOTAL_TIMESTEPS (yaml: 1e7)")
    p.add_argument("--variant", default="jaxmarl_defaults", help="the CSV's variant; name one when overriding")
    p.add_argument("--out", help="long CSV (default benchmarks/results/mappo_reference_<map>.csv)")
    p.add_argument("--checkout-jaxmarl", action="store_true", help="import jaxmarl from the checkout")
    p.add_argument("overrides", nargs="*", help="extra hydra overrides, e.g. LR=0.001 ENV_KWARGS.attack_mode=random")
    a = p.parse_args(argv)
    if not sweep.NAME.match(a.variant):
        sweep.fail(f"--variant {a.variant!r}: letters, digits, . + = - and single underscores only")
    if a.overrides and a.variant == "jaxmarl_defaults":
        sweep.fail("overrides change JaxMARL's defaults: name the variant with --variant")
    a.out = a.out or str(Path(__file__).resolve().parent / "results" / f"mappo_reference_{a.map}.csv")
    return a


def stand_in_wandb(on_log):
    """A `wandb` module whose log(dict) hands the dict, values as floats, to on_log; init and finish do nothing."""
    wandb = types.ModuleType("wandb")
    wandb.init = wandb.finish = lambda *a, **k: None
    wandb.log = lambda d, *a, **k: on_log({k: float(v) for k, v in d.items()})
    return wandb


def main(argv=None):
    a = parse_args(argv)
    repo = a.jaxmarl_repo.expanduser().resolve()
    script, config_dir = repo / SCRIPT, repo / SCRIPT.parent / "config"
    if not script.is_file() or not (config_dir / f"{CONFIG}.yaml").is_file():
        sweep.fail(f"{repo} is not a JaxMARL checkout: no {SCRIPT} with config/{CONFIG}.yaml")
    out = sweep.output_path(a.out)
    key = ("mappo_jaxmarl", a.map, a.variant, a.seed)
    kept = [(*k, step, m, v) for k, series in (sweep.read_long_csv(out).items() if out.exists() else ())
            if k != key for m, points in series for step, v in points]
    rows, cfg = [], {}

    def on_log(d):  # once per update, from the script's io_callback
        step = int(d.pop("env_step")) + cfg["NUM_ENVS"] * cfg["NUM_STEPS"]  # JaxMARL's is the rollout's start
        rows.extend((*key, step, METRICS.get(k, f"losses/{k}"), v) for k, v in d.items() if math.isfinite(v))
        sweep.write_long_csv(out, kept + rows)
        print(f"[mappo_jaxmarl] step {step} win_rate {d.get('win_rate', math.nan):.3f} "
              f"return {d.get('returns', math.nan):.3f}  {time.time() - t0:.0f}s", flush=True)

    sys.modules["wandb"] = stand_in_wandb(on_log)
    if a.checkout_jaxmarl:
        sys.path.insert(0, str(repo))
    try:
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf
        spec = importlib.util.spec_from_file_location("mappo_rnn_smax", script)
        mappo = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mappo)
        import jax
        import jaxmarl
        from jaxmarl.environments.smax import map_name_to_scenario
    except ModuleNotFoundError as e:
        sweep.fail(f"JaxMARL's MAPPO needs {PIP.get(e.name, e.name)}: pip install distrax hydra-core omegaconf")
    try:
        map_name_to_scenario(a.map)
    except KeyError:
        sweep.fail(f"{a.map!r} is not a SMAX map of jaxmarl {jaxmarl.__version__}")
    overrides = [f"MAP_NAME={a.map}", f"SEED={a.seed}", f"TOTAL_TIMESTEPS={a.total_timesteps}",
                 "WANDB_MODE=disabled", *a.overrides]
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg.update(OmegaConf.to_container(compose(config_name=CONFIG, overrides=overrides)))  # as main() does
    print(f"[mappo_jaxmarl] {script} with jaxmarl {jaxmarl.__version__} from {os.path.dirname(jaxmarl.__file__)}, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}; {' '.join(overrides)}", flush=True)

    t0 = time.time()
    train = jax.jit(mappo.make_train(cfg)).lower(jax.random.PRNGKey(cfg["SEED"])).compile()
    compile_s, t1 = time.time() - t0, time.time()
    jax.block_until_ready(train(jax.random.PRNGKey(cfg["SEED"])))
    jax.effects_barrier()  # the last io_callbacks have run
    run_s = time.time() - t1
    if not rows:
        sweep.fail(f"{script} logged nothing through wandb.log (fewer than NUM_ENVS x NUM_STEPS steps?)")
    steps = max(r[4] for r in rows)
    rows.append((*key, steps, "charts/SPS", steps / run_s))
    sweep.write_long_csv(out, kept + rows)
    wins = [r[6] for r in rows if r[5] == "charts/win_rate"]
    print(f"[mappo_jaxmarl] {steps} env steps: compile {compile_s:.1f}s, run {run_s:.1f}s ({steps / run_s:.0f} "
          f"env steps/s), wall {time.time() - t0:.1f}s; last win_rate {wins[-1] if wins else math.nan:.3f}; "
          f"wrote {out}")


if __name__ == "__main__":
    main()
