"""MAG's Figure 3 (Sec. 4.2) on a SMAX map: accumulated model error along imagined rollouts, MAG's planned
predictions against plain one-step model samples (MAMBA), with ONE trained model and ONE set of real data.

    python benchmarks/mag_model_error.py RUN/checkpoint.pt --out benchmarks/mag_model_error

1. Load a mag.py checkpoint (world model, R̂_m, actor) and play `--episodes` fresh real episodes with its
   stochastic policy (the data the model would be trained on next), recording o, a, r.
2. Every start t0 of every episode with t0 + K steps left before the end: filter the real history up to t0
   with the posterior (as training does), then roll the model forward K steps OPEN LOOP (no posterior
   after t0) with the RECORDED actions a_t0..a_t0+K-1, `--samples` times per start:
   - MAMBA (--no-mag): each next latent is one sample of the prior;
   - MAG: each next latent is plan_to_predict's choice (L rollouts of H steps against the current policy,
     least summed R̂_m; per start state, or with --global-argmin the released code's batch argmin).
3. True model error at imagined step k (the quantity Sec. 3.3 defines and R̂_m is trained on):
   e_k = Σ_i ||ô^i_{t0+k} - o^i_{t0+k}||_2 + Σ_i |R̂^i_{t0+k-1} - r_{t0+k-1}|, with (ô, R̂) decoded from
   the imagined latent and (o, r) the real ones. Accumulated error E_k = Σ_{j<=k} e_j.
4. The paper's own proxy, for comparison: free rollouts where the policy also picks the actions, error
   measured by R̂_m (Σ_i R̂_m(s^i_k)), from the same starts. MAG minimises exactly this quantity, so the
   proxy favours it by construction; the true error above does not.
Writes <out>.csv and <out>.png (difference MAMBA - MAG, as Figure 3, with ±2 standard errors; the starts of
one episode overlap, so the standard error treats each episode as a cluster).
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import games  # noqa: E402
import mag  # noqa: E402


def collect(wm, actor, env, n_episodes):
    """Whole episodes of the stochastic policy: lists of obs [T, N, O], actions [T, N], rewards [T]."""
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
            rows[e].append((obs_np[e], action[e].numpy(), reward[e]))
            if done[e]:
                o, a, r = (np.stack(x) for x in zip(*rows[e]))
                episodes.append((o, a, r))
                rows[e] = []
        obs_np, avail_np = next_obs, next_avail
        obs, avail = torch.as_tensor(obs_np), torch.as_tensor(avail_np)
        h, z = mag.filter_step(wm, h, z, action, obs, torch.as_tensor(done))
    return episodes[:n_episodes]


def start_states(wm, episodes, K, stride):
    """Posterior states at every start t0 (stride apart) with K real steps after it, plus the real
    actions, next observations and rewards of those K steps."""
    T = max(len(r) for _, _, r in episodes)
    N, O = episodes[0][0].shape[1:]
    obs = np.zeros((T, len(episodes), N, O), np.float32)
    act = np.zeros((T, len(episodes), N), np.int64)
    rew = np.zeros((T, len(episodes)), np.float32)
    for b, (o, a, r) in enumerate(episodes):
        obs[: len(r), b], act[: len(r), b], rew[: len(r), b] = o, a, r
    batch = dict(obs=torch.as_tensor(obs), action_onehot=F.one_hot(torch.as_tensor(act), wm.n_actions).float(),
                 first=torch.zeros(T, len(episodes)))
    with torch.no_grad():
        h, z, _, _ = mag.observe(wm, batch)  # [T, B, N, ...]: the filter over each whole episode
    idx = [(t0, b) for b, (_, _, r) in enumerate(episodes) for t0 in range(0, len(r) - K, stride)]
    t0, b = (torch.as_tensor(x) for x in zip(*idx))
    steps = t0[:, None] + torch.arange(K)  # [S, K]
    return dict(h=h[t0, b], z=z[t0, b], action=torch.as_tensor(act)[steps, b[:, None]],  # [S, K, N]
                next_obs=torch.as_tensor(obs)[steps + 1, b[:, None]], reward=torch.as_tensor(rew)[steps, b[:, None]],
                episode=b)


def clustered_se(d, cluster):
    """Standard error of mean(d) with the starts of one episode as a cluster (their windows overlap, so
    they are not independent): sqrt(Σ_episodes (Σ_starts (d - mean))^2) / S."""
    sums = torch.zeros(int(cluster.max()) + 1).index_add_(0, cluster, d - d.mean())
    return (sums.pow(2).sum().sqrt() / len(d)).item()


@torch.no_grad()
def rollout(wm, actor, rm, starts, K, L, H, use_mag, global_argmin, free):
    """K open-loop model steps from every start. free=False: the recorded actions, returns the true
    error e_k [S, K]; free=True: the policy's actions, returns Σ_i R̂_m [S, K]."""
    h, z, out = starts["h"], starts["z"], []
    for k in range(K):
        if free:
            a, _, _ = mag.policy_step(wm, actor, wm.feat(h, z))
        else:
            a = starts["action"][:, k]
        h, prior = wm.transition(F.one_hot(a, wm.n_actions).float(), z, h)
        z = mag.plan_to_predict(wm, actor, rm, h, prior, L, H, global_argmin)[0] if use_mag else mag.sample_onehot(prior)
        feat = wm.feat(h, z)
        if free:
            out.append(rm(feat).sum(-1))
        else:
            err = mag.prediction_error(wm, feat, starts["next_obs"][:, k], starts["reward"][:, k],
                                       torch.ones(len(h)))
            out.append(err.sum(-1))
    return torch.stack(out, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--episodes", type=int, default=64, help="real episodes to measure on")
    p.add_argument("--steps", type=int, default=None, help="K, imagined steps (default: the run's horizon)")
    p.add_argument("--samples", type=int, default=4, help="model rollouts per start state and variant")
    p.add_argument("--stride", type=int, default=2, help="distance between start states in an episode")
    p.add_argument("--mag-l", type=int, default=None)
    p.add_argument("--mag-h", type=int, default=None)
    p.add_argument("--global-argmin", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/mag_model_error")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    ckpt = mag.load_checkpoint(a.checkpoint)
    args = mag.Args(**{k: v for k, v in ckpt["args"].items() if k in {f.name for f in dataclasses.fields(mag.Args)}})
    L, H = mag.MAG_LH.get(args.map, mag.MAG_LH_DEFAULT)
    L, H = a.mag_l or args.mag_l or L, a.mag_h or args.mag_h or H  # flag, else the run's, else the table
    K = a.steps or args.horizon
    env = games.make_starcraft(args.map, 8, 20_000 + a.seed, args.backend)
    wm = mag.WorldModel(env.n_agents, env.obs_dim, env.n_actions, args)
    rm = mag.ModelErrorPredictor(wm.feat_dim, args.rm_hidden, args.rm_layers)
    actor = mag.Actor(wm.feat_dim, args.hidden, env.n_actions)
    for name, net in (("world_model", wm), ("rm", rm), ("actor", actor)):
        net.load_state_dict(ckpt["nets"][name])
        net.eval()
    t = time.time()
    episodes = collect(wm, actor, env, a.episodes)
    starts = start_states(wm, episodes, K, a.stride)
    episode = starts.pop("episode")
    starts = {k: v.repeat_interleave(a.samples, 0) for k, v in starts.items()}
    S = len(episode)
    print(f"{args.map}, step {ckpt['global_step']}: {len(episodes)} episodes "
          f"(mean length {np.mean([len(r) for *_, r in episodes]):.1f}), {S} start states x {a.samples} samples, "
          f"K={K}, L={L}, H={H}{' global argmin' if a.global_argmin else ''}")

    res = {}
    for free in (False, True):
        for use_mag in (False, True):
            e = rollout(wm, actor, rm, starts, K, L, H, use_mag, a.global_argmin, free)
            res[(free, use_mag)] = e.cumsum(1).view(S, a.samples, K).mean(1)  # accumulated, mean over samples
    rows = []
    for k in range(K):
        row = {"step": k + 1}
        for free, name in ((False, "true"), (True, "rm_proxy")):
            base, m = res[(free, False)][:, k], res[(free, True)][:, k]
            d = base - m
            row.update({f"{name}_mamba": base.mean().item(), f"{name}_mag": m.mean().item(),
                        f"{name}_diff": d.mean().item(), f"{name}_diff_se": clustered_se(d, episode)})
        rows.append(row)
    keys = list(rows[0])
    with open(a.out + ".csv", "w") as f:
        f.write("# " + " ".join(sys.argv) + f"\n# checkpoint step {ckpt['global_step']}, {S} starts x {a.samples} "
                f"samples, L={L}, H={H}, {time.time() - t:.0f} s\n" + ",".join(keys) + "\n")
        for row in rows:
            f.write(",".join(f"{row[k]:.6g}" for k in keys) + "\n")
    print(",".join(keys))
    for row in rows:
        print(",".join(f"{row[k]:.4g}" for k in keys))

    steps = np.arange(1, K + 1)
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    ax[0].plot(steps, [r["true_mamba"] for r in rows], "o-", label="MAMBA (--no-mag)")
    ax[0].plot(steps, [r["true_mag"] for r in rows], "s-", label=f"MAG (L={L}, H={H})")
    ax[0].set(title="accumulated true model error", xlabel="imagined step k", ylabel="Σ_{j≤k} e_j")
    ax[0].legend()
    for i, (name, title) in enumerate((("true", "true error vs real trajectory"),
                                       ("rm_proxy", "R̂_m-estimated error (paper's proxy)")), 1):
        d = np.array([r[f"{name}_diff"] for r in rows])
        se = np.array([r[f"{name}_diff_se"] for r in rows])
        ax[i].bar(steps, d, yerr=2 * se, color=np.where(d > 0, "tab:green", "tab:red"))
        ax[i].axhline(0, color="k", lw=0.8)
        ax[i].set(title=f"MAMBA − MAG, {title}", xlabel="imagined step k", ylabel="accumulated error difference")
    fig.suptitle(f"SMAX {args.map}, one model (step {ckpt['global_step']}), {S} start states × {a.samples}")
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=120)


if __name__ == "__main__":
    main()
