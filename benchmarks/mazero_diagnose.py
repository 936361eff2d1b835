"""Why MAZero's search is no better than its policy head on SMAX (issue 13): the learned model's accuracy and the
search's choices, measured on finished mazero.py checkpoints.

    python benchmarks/mazero_diagnose.py runs/sweeps/mazero_3m --variants preset reward_next \
        --out benchmarks/results/mazero_3m_diagnose

For each finished sweep run's newest checkpoint, on the evaluation envs (seed + 10,000) that mazero.py evaluates on:
1. Greedy episodes (each agent the argmax of its masked policy head, as mazero.evaluate). Value: the predicted v(s_t)
   against the discounted return G_t of the episode (correlation, mean error = bias, RMSE; std of G_t for scale); how
   many were lost at the episode limit (time-outs) and their mean length. Reward: the model unrolled from s_{t,0}
   along the joint actions actually taken, r_{t,k-1} predicted at unroll step k = 1..5 against the real reward
   u_{t+k-1} (correlation, RMSE, mean error = bias; std of u for scale).
2. Search episodes (noise-free search with the checkpoint's --num-simulations and --num-sampled, the most visited
   root child, as --eval-mcts): the fraction of decisions whose greedy joint action is among the sampled root
   actions, the fraction in which the search chooses it, and the win rate.
3. The self-play policy (search with root noise, the child drawn with probability ~ N(a)^(1/tau), as training
   acts) at each --selfplay-taus: its win rate, i.e. the quality of the data the model would be trained on next; at
   tau = 1 (the default self-play) also the value and reward accuracy (as in 1.) on those episodes (selfplay_tau1_*), to
   tell a model that is wrong everywhere from one that is wrong only on the greedy policy's states.
Writes <out>.csv (long: script,map,variant,seed,step,metric,value) and <out>_summary.csv (mean and 95% bootstrap CI
over seeds, as sweep.py plot writes them)."""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
import games  # noqa: E402
import mazero  # noqa: E402
import sweep  # noqa: E402

UNROLL = 5


def play(model, env, args, episodes, cfg, rng, noise=False, tau=0.0):
    """Whole episodes on env (each env plays ceil(episodes / E) of them, as mazero.evaluate). Greedy (cfg None) or by
    search (root noise if `noise`, the child drawn at temperature tau; 0: the most visited). Returns the episodes
    (stacked observations x [T, n, S*d], actions [T, n], rewards [T], won) and, for search, per decision whether the
    greedy joint action was sampled and whether it was chosen."""
    E = env.num_envs
    quota = -(-episodes // E)
    obs, _, legal = env.reset()
    stack = mazero.push_frame(np.zeros((E, args.stacked_observations, *obs.shape[1:]), np.float32), obs,
                              np.ones(E, bool))
    done_count, current, finished, sampled, agrees = np.zeros(E, int), [[] for _ in range(E)], [], [], []
    while (done_count < quota).any():
        x = torch.as_tensor(mazero.flatten_stack(stack))
        with torch.inference_mode():
            logits = model.initial(x)[2].numpy()
        greedy = np.where(legal > 0, logits, -np.inf).argmax(-1)  # [E, n]
        actions = greedy
        if cfg is not None:
            out, _ = mazero.search(model, x, legal > 0, cfg, rng, add_noise=noise, **mazero.search_options(args))
            actions = out.actions[np.arange(E), mazero.sample_slot(out.visit_counts, tau, rng)]
            hit = (out.actions == greedy[:, None]).all(-1) & out.valid  # [E, K]
            live = done_count < quota
            sampled += list(hit.any(1)[live])
            agrees += list((actions == greedy).all(-1)[live])
        obs, _, legal, reward, done, info = env.step(actions)
        for e in range(E):
            if done_count[e] < quota:
                current[e].append((x[e].numpy(), actions[e], float(reward[e])))
                if done[e]:
                    xs, acts, rs = zip(*current[e])
                    finished.append((np.stack(xs), np.stack(acts), np.array(rs), float(info["won"][e])))
                    current[e] = []
        done_count += done
        mazero.push_frame(stack, obs, done)
    return finished, np.array(sampled, float), np.array(agrees, float)


def model_accuracy(model, episodes, gamma):
    """Value and k-step reward accuracy of the model along real greedy episodes (see the module docstring)."""
    S = model.S
    v_pred, ret, rewards, pairs = [], [], [], {k: [] for k in range(1, UNROLL + 1)}
    with torch.inference_mode():
        for x, a, r, _ in episodes:
            T = len(r)
            s, v_logits, _ = model.initial(torch.as_tensor(x))
            g = np.zeros(T)
            for t in reversed(range(T)):
                g[t] = r[t] + gamma * (g[t + 1] if t + 1 < T else 0.0)
            v_pred.append(mazero.support_to_scalar(v_logits, S).numpy())
            ret.append(g)
            rewards.append(r)
            a = torch.as_tensor(a)
            for k in range(1, min(UNROLL, T) + 1):  # s[t] is s_{t,k-1} of the unroll started at t
                m = T - k + 1
                s, r_logits, _, _ = model.recurrent(s[:m], a[k - 1:k - 1 + m])
                pairs[k].append(np.stack([mazero.support_to_scalar(r_logits, S).numpy(), r[k - 1:]]))
    v_pred, ret, rewards = map(np.concatenate, (v_pred, ret, rewards))
    out = {"value_corr": np.corrcoef(v_pred, ret)[0, 1], "value_bias": np.mean(v_pred - ret),
           "value_rmse": np.sqrt(np.mean((v_pred - ret) ** 2)), "return_std": ret.std(), "reward_std": rewards.std()}
    for k, p in pairs.items():
        if p:
            pred, real = np.concatenate(p, 1)
            out[f"reward_corr_k{k}"] = np.corrcoef(pred, real)[0, 1]
            out[f"reward_rmse_k{k}"] = np.sqrt(np.mean((pred - real) ** 2))
            out[f"reward_bias_k{k}"] = np.mean(pred - real)
    return out


def diagnose(checkpoint, episodes, selfplay_taus):
    try:
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception:
        sweep.fail(f"{checkpoint} is not a readable torch checkpoint")
    if not isinstance(ck, dict) or ck.get("script") != "mazero":
        sweep.fail(f"{checkpoint} is not a mazero.py checkpoint")
    args = mazero.Args(**ck["args"])
    try:
        env = games.make_starcraft(ck["map"], min(args.num_envs, episodes), args.seed + 10_000, args.backend)
    except (ValueError, RuntimeError) as e:  # a backend that is not installed here
        sweep.fail(str(e))
    model = mazero.MAZeroNet(env.n_agents, env.obs_dim, env.n_actions, args)
    model.load_state_dict(ck["model"])
    model.eval()
    torch.manual_seed(0)
    greedy_eps, _, _ = play(model, env, args, episodes, None, None)
    out = model_accuracy(model, greedy_eps, args.gamma)
    out["greedy_win_rate"] = np.mean([won for *_, won in greedy_eps])
    out["greedy_timeout_rate"] = np.mean([not won and len(r) >= env.episode_limit for _, _, r, won in greedy_eps])
    out["greedy_episode_length"] = np.mean([len(r) for _, _, r, _ in greedy_eps])
    cfg = mazero.search_config(args, args.num_simulations)
    search_eps, sampled, agrees = play(model, env, args, episodes, cfg, np.random.default_rng(0))
    out["search_win_rate"] = np.mean([won for *_, won in search_eps])
    out["greedy_sampled"], out["search_agrees"] = sampled.mean(), agrees.mean()
    for tau in selfplay_taus:
        eps, _, _ = play(model, env, args, episodes, cfg, np.random.default_rng(0), noise=True, tau=tau)
        out[f"selfplay_win_rate_tau{tau:g}"] = np.mean([won for *_, won in eps])
        if tau == 1.0:  # the training data's own policy: the model's accuracy where it was trained, not greedy play
            out.update({f"selfplay_tau1_{k}": v for k, v in model_accuracy(model, eps, args.gamma).items()})
    return ck, ck["counters"][0], {k: float(v) for k, v in out.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", help="sweep directories, sweep run directories of mazero.py runs, "
                   "checkpoint files (variant: the run's --exp-name), or long CSVs of an earlier diagnosis (runs "
                   "whose checkpoints are gone; a run diagnosed now, or named in an earlier CSV, wins)")
    p.add_argument("--variants", nargs="+", help="only these variants")
    p.add_argument("--episodes", type=int, default=64, help="greedy and search episodes per checkpoint")
    p.add_argument("--selfplay-taus", type=float, nargs="*", default=[1.0, 0.25, 0.0],
                   help="temperatures of the self-play policies to play (none: skip)")
    p.add_argument("--out", required=True, help="output prefix: <out>.csv and <out>_summary.csv")
    a = p.parse_args(argv)
    if a.episodes < 1:
        sweep.fail(f"--episodes must be >= 1, got {a.episodes}")
    if any(not tau >= 0 for tau in a.selfplay_taus):
        sweep.fail(f"--selfplay-taus must be >= 0, got {a.selfplay_taus}")
    out = sweep.output_path(a.out)
    torch.set_num_threads(1)
    csvs = [Path(x) for x in a.paths if Path(x).is_file() and Path(x).suffix == ".csv"]
    files = [Path(x) for x in a.paths if Path(x).is_file() and Path(x).suffix != ".csv"]
    dirs = [x for x in a.paths if not Path(x).is_file()]
    todo = []  # (name, checkpoint, variant or None: the checkpoint's exp_name, seed or None)
    for script, mp, variant, seed, logdir in sweep.find_runs(dirs, None) if dirs else []:
        run_dir = logdir.parent.parent
        if script != "mazero" or (a.variants and variant not in a.variants):
            continue
        ckpts = sweep.checkpoints(run_dir)
        if not sweep.finished({"run_dir": run_dir}) or not ckpts:
            print(f"[diagnose] {run_dir.name}: not finished, skipped", file=sys.stderr)
            continue
        todo.append((run_dir.name, ckpts[-1], variant, seed))
    todo += [(str(f), f, None, None) for f in files]
    long_rows = []
    for name, checkpoint, variant, seed in todo:
        ck, step, res = diagnose(checkpoint, a.episodes, a.selfplay_taus)
        script, mp = "mazero", ck["map"]
        variant, seed = variant or ck["args"]["exp_name"], seed or ck["args"]["seed"]
        print(f"[diagnose] {name} at {step:,}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)
        long_rows += [(script, mp, variant, seed, step, f"diag/{k}", v) for k, v in res.items()]
    done = {row[:4] for row in long_rows}
    for path in csvs:  # earlier diagnoses, each run's rows as they were written
        for key, series in sweep.read_long_csv(path).items():
            if key in done or (a.variants and key[2] not in a.variants):
                continue
            done.add(key)
            for metric, points in series:
                if metric.startswith("diag/"):
                    step, v = points[-1]
                    long_rows.append((*key, step, metric, v))
    if not long_rows:
        sweep.fail("no finished mazero.py runs, checkpoints or diag/ rows in " + " ".join(a.paths))
    sweep.write_long_csv(f"{out}.csv", long_rows)
    sweep.write_seed_summary(f"{out}_summary.csv", sweep.seed_summary(long_rows))
    print(f"[diagnose] wrote {out}.csv and {out}_summary.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
