"""MAG's Figure 3 (Sec. 4.2) on a SMAX map: accumulated model error along imagined rollouts, MAG's planned
predictions against plain one-step model samples (MAMBA), with ONE trained model and ONE set of real data.

    python benchmarks/mag_model_error.py RUN/checkpoint.pt --out benchmarks/mag_model_error

1. Load a mag.py checkpoint (world model, R̂_m, actor) and play `--episodes` fresh real episodes with its
   stochastic policy (the data the model would be trained on next), recording o, a, r.
2. Every start t0 of every episode that has at least one transition with a real next observation after it
   (t0 <= T-2 for an episode of T steps; the last step's next observation is the end), short episodes
   included: filter the real history up to t0 with the posterior (as training does), then roll the model
   forward K steps OPEN LOOP (no posterior after t0) with the RECORDED actions, `--samples` times per start:
   - MAMBA (--no-mag): each next latent is one sample of the prior;
   - MAG: each next latent is plan_to_predict's choice (L rollouts of H steps against the current policy;
     the checkpoint's own score unless --planner says otherwise: `agent` (--mag-living-mean with each agent's own
     mean imputed, the default), `step` (the step's mean over all agents, --no-mag-agent-mean) or `sum` (the paper's);
     per start state, or with --global-argmin the authors' code's batch argmin).
   Imagined step k of a start is scored if the episode has a real observation t0 + k (t0 + k <= T-1); at
   step k the means run over the starts with at least k scored steps (`n_starts` in the CSV), so the last
   transitions of every episode, where allies die, count. `--full-windows`: only starts with all K steps
   scored (this script's earlier t0 <= T-1-K, a fixed population).
3. True model error at imagined step k, the label R̂_m is trained on (mag.rm_loss, --mag-living-mean):
   e_k = Σ_{i alive in o_{t0+k}} ||ô^i_{t0+k} - o^i_{t0+k}||_2 + |R̂^i_{t0+k-1} - r_{t0+k-1}|, with (ô, R̂)
   decoded from the imagined latent and (o, r) the real ones. A dead agent's all-zero observation is not
   counted (`--label all`: every agent, the paper's sum, in which dead agents add almost nothing).
   Accumulated error E_k = Σ_{j<=k} e_j.
4. The paper's own proxy, for comparison: free rollouts where the policy also picks the actions, error
   measured by R̂_m: per step N times the mean of R̂_m(s^i_k) weighted by the model's P(i alive in s_k)
   and P(no end up to s_k) (`--label all`: Σ_i R̂_m(s^i_k)). MAG minimises this kind of quantity, so the
   proxy favours it by construction; the true error above does not. The same free rollouts give the model's
   expected number of dead allies (`dead_*`, from its legal-action head: no-op legal = dead) and its P(no
   predicted end yet) (`running_*`) at every step, and `dead_diff` = MAG - MAMBA: the planner's dead-agent
   bias (issue 15: positive under the paper's sum).
Writes <out>.csv (the long CSV of benchmarks/sweep.py: script, map,
variant = planner_<agent|step|sum>_label_<living|all>
[_global_argmin], seed, step = the checkpoint's env step, metric = fig3/<quantity>@k<imagined step>, value; the
quantities are the columns the script prints) and <out>.png (difference MAMBA - MAG, as Figure 3, with ±2 standard
errors; the starts of one episode overlap, so the standard error treats each episode as a cluster).
"""
import argparse
import dataclasses
import os
import sys
import time

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.path.abspath(__file__))]
import games  # noqa: E402
import mag  # noqa: E402
import sweep  # noqa: E402  (benchmarks/: the long CSV writer)


def long_rows(rows, map_name, variant, seed, env_step):
    """The per-k rows as sweep.py's long CSV rows: metric fig3/<quantity>@k<imagined step>, step the env step."""
    return [("mag", map_name, variant, seed, env_step, f"fig3/{key}@k{row['step']}", row[key])
            for row in rows for key in row if key != "step"]


def collect(wm, actor, env, n_episodes):
    """Whole episodes of the stochastic policy: lists of obs [T, N, O], actions [T, N], rewards [T] and legal
    actions [T, N, A]."""
    episodes, rows = [], [[] for _ in range(env.num_envs)]
    obs_np, _, avail_np = env.reset()
    obs, avail = torch.as_tensor(obs_np), torch.as_tensor(avail_np)
    h = torch.zeros(*obs.shape[:2], wm.gru.hidden_size)
    with torch.no_grad():
        z = mag.straight_through_sample(wm.posterior(h, obs))
    while len(episodes) < n_episodes:
        action = mag.act(wm, actor, h, z, avail, greedy=False)
        next_obs, _, next_avail, reward, done, _ = env.step(action.numpy())
        for e in range(env.num_envs):
            rows[e].append((obs_np[e], action[e].numpy(), reward[e], avail_np[e]))
            if done[e]:
                episodes.append(tuple(np.stack(x) for x in zip(*rows[e])))
                rows[e] = []
        obs_np, avail_np = next_obs, next_avail
        obs, avail = torch.as_tensor(obs_np), torch.as_tensor(avail_np)
        h, z = mag.filter_step(wm, h, z, action, obs, torch.as_tensor(done))
    return episodes[:n_episodes]


def start_states(wm, episodes, K, stride, full_windows=False):
    """Posterior states at every start t0 (stride apart) with at least one real next observation after it
    (with all K of them if full_windows), the real actions, next observations and rewards of the K steps
    (zeros past the end), and which of the K steps are scored ([S, K], 1 while t0 + k <= T-1)."""
    T = max(len(r) for _, _, r, _ in episodes)
    N, O = episodes[0][0].shape[1:]
    obs = np.zeros((T + K, len(episodes), N, O), np.float32)  # padded so every window of K steps exists
    act = np.zeros((T + K, len(episodes), N), np.int64)
    rew = np.zeros((T + K, len(episodes)), np.float32)
    avail = np.zeros((T + K, len(episodes), N, wm.n_actions), np.float32)
    for b, (o, a, r, av) in enumerate(episodes):
        obs[: len(r), b], act[: len(r), b], rew[: len(r), b], avail[: len(r), b] = o, a, r, av
    batch = dict(obs=torch.as_tensor(obs[:T]), action_onehot=F.one_hot(torch.as_tensor(act[:T]), wm.n_actions).float(),
                 first=torch.zeros(T, len(episodes)))
    with torch.no_grad():
        h, z, _, _ = mag.observe(wm, batch)  # [T, B, N, ...]: the filter over each whole episode
    last = (lambda n: n - 1 - K) if full_windows else (lambda n: n - 2)  # the last start of an episode of n steps
    idx = [(t0, b) for b, (_, _, r, _) in enumerate(episodes) for t0 in range(0, last(len(r)) + 1, stride)]
    t0, b = (torch.as_tensor(x) for x in zip(*idx))
    steps = t0[:, None] + torch.arange(K)  # [S, K]
    length = torch.as_tensor([len(r) for _, _, r, _ in episodes])[b]  # [S]
    obs_t = torch.as_tensor(obs)
    return dict(h=h[t0, b], z=z[t0, b], action=torch.as_tensor(act)[steps, b[:, None]],  # [S, K, N]
                next_avail=torch.as_tensor(avail)[steps + 1, b[:, None]], next_obs=obs_t[steps + 1, b[:, None]],
                reward=torch.as_tensor(rew)[steps, b[:, None]], scored=(steps + 1 <= length[:, None] - 1).float(),
                episode=b)


def clustered_se(d, cluster):
    """Standard error of mean(d) with the starts of one episode as a cluster (their windows overlap, so
    they are not independent): sqrt(Σ_episodes (Σ_starts (d - mean))^2) / S."""
    sums = torch.zeros(int(cluster.max()) + 1).index_add_(0, cluster, d - d.mean())
    return (sums.pow(2).sum().sqrt() / len(d)).item()


def true_error(wm, feat, starts, k, living):
    """e_k of every start [S]: the R̂_m label (mag.rm_loss) of imagined step k against the real transition,
    summed over the agents alive in the real o_{t0+k} (living) or over all agents."""
    err = mag.prediction_error(wm, feat, starts["next_obs"][:, k], starts["reward"][:, k], torch.ones(len(feat)))
    if living:
        err = err * mag.alive_in(starts["next_avail"][:, k])  # [S, N]
    return err.sum(-1)


@torch.no_grad()
def rollout(wm, actor, rm, starts, K, L, H, use_mag, global_argmin, free, planner, living, stats=None):
    """K open-loop model steps from every start. free=False: the recorded actions, returns the true
    error e_k [S, K]; free=True: the policy's actions, returns the R̂_m proxy [S, K] and, into `stats`, the
    model's expected number of dead allies and P(no predicted end yet) at every step ([S, K] each)."""
    h, z, out = starts["h"], starts["z"], []
    running = torch.ones(len(h))
    dead, still = [], []
    for k in range(K):
        if free:
            a, _, _ = mag.policy_step(wm, actor, wm.feat(h, z))
        else:
            a = starts["action"][:, k]
        h, prior = wm.transition(F.one_hot(a, wm.n_actions).float(), z, h)
        z = (mag.plan_to_predict(wm, actor, rm, h, prior, L, H, global_argmin, planner != "sum", planner == "agent")[0]
             if use_mag
             else mag.sample_onehot(prior))
        feat = wm.feat(h, z)
        if not free:
            out.append(true_error(wm, feat, starts, k, living))
            continue
        running = running * torch.sigmoid(wm.pcont(feat).squeeze(-1)).mean(-1)
        alive = mag.alive_in(torch.sigmoid(wm.avail(feat)))  # [S, N]: P(alive) in s_k
        dead.append((1 - alive).sum(-1)), still.append(running)
        if living:
            w = alive * running[:, None] + 1e-6  # [S, N]
            out.append(feat.shape[-2] * (w * rm(feat)).sum(-1) / w.sum(-1))
        else:
            out.append(rm(feat).sum(-1))
    if stats is not None and free:
        stats.update(dead=torch.stack(dead, 1), running=torch.stack(still, 1))
    return torch.stack(out, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--episodes", type=int, default=64, help="real episodes to measure on")
    p.add_argument("--steps", type=int, default=None, help="K, imagined steps (default: the run's horizon)")
    p.add_argument("--samples", type=int, default=4, help="model rollouts per start state and variant")
    p.add_argument("--stride", type=int, default=2, help="distance between start states in an episode")
    p.add_argument("--full-windows", action="store_true",
                   help="only starts with all K steps inside the episode (the earlier t0 <= T-1-K)")
    p.add_argument("--label", choices=("living", "all"), default="living",
                   help="true error over the agents alive in each real next observation (R̂_m's label) or all agents")
    p.add_argument("--planner", choices=("checkpoint", "agent", "step", "sum"), default="checkpoint",
                   help="MAG's score: the run's own, the living mean imputing each agent's own mean (agent) or the "
                        "step's mean over all agents (step), or the paper's sum")
    p.add_argument("--mag-l", type=int, default=None)
    p.add_argument("--mag-h", type=int, default=None)
    p.add_argument("--global-argmin", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/mag_model_error")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    ckpt = mag.load_checkpoint(a.checkpoint)
    names = {f.name for f in dataclasses.fields(mag.Args)}
    args = mag.Args(**{**mag.LEGACY_ARGS, **{k: v for k, v in ckpt["args"].items() if k in names}})
    L, H = mag.MAG_LH.get(args.map, mag.MAG_LH_DEFAULT)
    L, H = a.mag_l or args.mag_l or L, a.mag_h or args.mag_h or H  # flag, else the run's, else the table
    K = a.steps or args.horizon
    planner = a.planner
    if planner == "checkpoint":
        planner = ("agent" if args.mag_agent_mean else "step") if args.mag_living_mean else "sum"
    living = a.label == "living"
    env = games.make_starcraft(args.map, 8, 20_000 + a.seed, args.backend)
    wm = mag.WorldModel(env.n_agents, env.obs_dim, env.n_actions, args)
    rm = mag.ModelErrorPredictor(wm.feat_dim, args.rm_hidden, args.rm_layers)
    actor = mag.Actor(wm.feat_dim, args.hidden, env.n_actions)
    for name, net in (("world_model", wm), ("rm", rm), ("actor", actor)):
        net.load_state_dict(ckpt["nets"][name])
        net.eval()
    t = time.time()
    episodes = collect(wm, actor, env, a.episodes)
    starts = start_states(wm, episodes, K, a.stride, a.full_windows)
    episode, scored = starts.pop("episode"), starts["scored"]
    starts = {k: v.repeat_interleave(a.samples, 0) for k, v in starts.items()}
    S = len(episode)
    lengths = [len(r) for _, _, r, _ in episodes]
    print(f"{args.map}, step {ckpt['global_step']}: {len(episodes)} episodes (mean length {np.mean(lengths):.1f}, "
          f"{min(lengths)}-{max(lengths)}), {S} start states x {a.samples} samples, K={K}, L={L}, H={H}, "
          f"planner {planner}{', global argmin' if a.global_argmin else ''}, "
          f"label {a.label}")

    res, free_stats = {}, {}
    for free in (False, True):
        for use_mag in (False, True):
            stats = free_stats.setdefault(use_mag, {})
            e = rollout(wm, actor, rm, starts, K, L, H, use_mag, a.global_argmin, free, planner, living, stats)
            e = e * starts["scored"]  # nothing past the episode's last real observation
            res[(free, use_mag)] = e.cumsum(1).view(S, a.samples, K).mean(1)  # accumulated, mean over samples
    rows = []
    for k in range(K):
        sel = scored[:, k] > 0  # the starts with at least k + 1 scored steps
        row = {"step": k + 1, "n_starts": int(sel.sum())}
        for free, name in ((False, "true"), (True, "rm_proxy")):
            base, m = res[(free, False)][sel, k], res[(free, True)][sel, k]
            d = base - m
            row.update({f"{name}_mamba": base.mean().item(), f"{name}_mag": m.mean().item(),
                        f"{name}_diff": d.mean().item(), f"{name}_diff_se": clustered_se(d, episode[sel])})
        for use_mag, name in ((False, "mamba"), (True, "mag")):  # the free rollouts: what the planner prefers
            for stat in ("dead", "running"):
                row[f"{stat}_{name}"] = free_stats[use_mag][stat][:, k].view(S, a.samples)[sel].mean().item()
        d = (free_stats[True]["dead"][:, k] - free_stats[False]["dead"][:, k]).view(S, a.samples).mean(1)[sel]
        row.update(dead_diff=d.mean().item(), dead_diff_se=clustered_se(d, episode[sel]))
        rows.append(row)
    keys = list(rows[0])
    variant = (f"planner_{planner}_label_{a.label}"
               + ("_global_argmin" if a.global_argmin else ""))
    sweep.write_long_csv(a.out + ".csv", long_rows(rows, args.map, variant, args.seed, ckpt["global_step"]))
    print(f"{time.time() - t:.0f} s; wrote {a.out}.csv (variant {variant})")
    print(",".join(keys))
    for row in rows:
        print(",".join(f"{row[k]:.4g}" for k in keys))

    steps = np.arange(1, K + 1)
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    ax[0].plot(steps, [r["true_mamba"] for r in rows], "o-", label="MAMBA (--no-mag)")
    ax[0].plot(steps, [r["true_mag"] for r in rows], "s-", label=f"MAG (L={L}, H={H})")
    ax[0].set(title=f"accumulated true model error ({a.label} agents)", xlabel="imagined step k",
              ylabel="Σ_{j≤k} e_j")
    ax[0].legend()
    for i, (name, title) in enumerate((("true", "true error vs real trajectory"),
                                       ("rm_proxy", "R̂_m-estimated error (paper's proxy)")), 1):
        d = np.array([r[f"{name}_diff"] for r in rows])
        se = np.array([r[f"{name}_diff_se"] for r in rows])
        ax[i].bar(steps, d, yerr=2 * se, color=np.where(d > 0, "tab:green", "tab:red"))
        ax[i].axhline(0, color="k", lw=0.8)
        ax[i].set(title=f"MAMBA − MAG, {title}", xlabel="imagined step k", ylabel="accumulated error difference")
    fig.suptitle(f"SMAX {args.map}, one model (step {ckpt['global_step']}), {S} start states × {a.samples}; "
                 f"step k: starts with k steps left ({rows[-1]['n_starts']} at k={K})")
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=120)


if __name__ == "__main__":
    main()
