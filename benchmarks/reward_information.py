"""Does one SMAX observation frame hold what the reward needs, or do stacked frames add to it? (issue 13)

    python benchmarks/reward_information.py --map 3m --seeds 0 1 2 --out benchmarks/results/smax_3m_reward_information

mazero.py's reward head is much worse with one stacked frame than with four (benchmarks/mazero_results.md). This
separates missing information from learning: a plain supervised regression, no MAZero. For each seed it plays SMAX
episodes with the scripted focus-fire policy (games.SMAXStarCraft.scripted_actions), each agent's action replaced by a
uniformly random legal one with probability --epsilon, splits the episodes 80/20 into train and test, and fits one MLP
(two hidden layers of 256, Adam 1e-3, batch 256) per frame count S in --frames to predict the team reward u_t from the
S most recent observations of every agent (zeros before the episode's start, as mazero.py stacks) and the one-hot
joint action a_t. On the test episodes: R^2, correlation and RMSE of the prediction (metrics `reward_r2_S`,
`reward_corr_S`, `reward_rmse_S`) and the correlation on the steps that are not the winning step (`reward_corr_nowin_S`:
the win bonus dominates the reward's variance). Writes <out>.csv (script,map,variant,seed,step,metric,value;
script `reward_information`, variant `eps<epsilon>`, step = transitions played) and <out>_summary.csv (mean and 95%
bootstrap interval over seeds)."""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
import games  # noqa: E402
import sweep  # noqa: E402


def collect(map_name, num_envs, steps, epsilon, seed):
    """Finished episodes [(obs [T, n, d], actions [T, n], rewards [T], won)] of the epsilon-scripted policy, and the
    map's number of actions."""
    rng = np.random.default_rng(seed)
    env = games.make_starcraft(map_name, num_envs, seed, "smax")
    obs, state, avail = env.reset()
    running, done_eps = [[] for _ in range(num_envs)], []
    for _ in range(steps):
        a = env.scripted_actions(state, avail)
        legal = avail > 0
        u = rng.random(legal.shape) * legal  # a uniformly random legal action: the argmax of uniform noise on them
        a = np.where(rng.random(a.shape) < epsilon, u.argmax(-1), a)
        next_obs, state, avail, reward, done, info = env.step(a)
        for e in range(num_envs):
            running[e].append((obs[e], a[e], reward[e]))
            if done[e]:
                o, act, r = map(np.stack, zip(*running[e]))
                done_eps.append((o, act, r.astype(np.float32), bool(info["won"][e])))
                running[e] = []
        obs = next_obs
    return done_eps, env.n_actions


def features(episode, S, n_actions):
    """[T, n * S * d + n * A]: the S most recent frames of every agent (zeros before the start) and a_t one-hot."""
    o, a, r, _ = episode
    T = len(r)
    padded = np.concatenate([np.zeros((S - 1, *o.shape[1:]), o.dtype), o])
    frames = np.concatenate([padded[i:i + T] for i in range(S)], axis=-1)  # [T, n, S*d], oldest first
    return np.concatenate([frames.reshape(T, -1), np.eye(n_actions)[a].reshape(T, -1)], 1).astype(np.float32)


def fit_and_test(train, test, S, n_actions, seed, iterations):
    """Train an MLP on `train` episodes with S frames; metrics on `test`."""
    torch.manual_seed(seed)
    X, Xt = (torch.as_tensor(np.concatenate([features(ep, S, n_actions) for ep in eps])) for eps in (train, test))
    Y, Yt = (torch.as_tensor(np.concatenate([ep[2] for ep in eps])) for eps in (train, test))
    net = nn.Sequential(nn.Linear(X.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(iterations):
        b = torch.randint(0, len(X), (256,), generator=g)
        loss = ((net(X[b]).squeeze(-1) - Y[b]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        p = net(Xt).squeeze(-1).numpy()
    y = Yt.numpy()
    win_step = np.concatenate([np.arange(len(ep[2])) == len(ep[2]) - 1 if ep[3] else np.zeros(len(ep[2]), bool)
                               for ep in test])
    return {f"reward_r2_{S}": 1 - np.mean((p - y) ** 2) / y.var(), f"reward_corr_{S}": np.corrcoef(p, y)[0, 1],
            f"reward_rmse_{S}": np.sqrt(np.mean((p - y) ** 2)),
            f"reward_corr_nowin_{S}": np.corrcoef(p[~win_step], y[~win_step])[0, 1]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--map", default="3m", help="SMAX map (default 3m)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument("--frames", nargs="+", type=int, default=[1, 4], help="frame counts S to compare (default 1 4)")
    p.add_argument("--epsilon", type=float, default=0.3, help="probability of a random legal action (default 0.3)")
    p.add_argument("--num-envs", type=int, default=32, help="envs played at once (default 32)")
    p.add_argument("--steps", type=int, default=700, help="vectorised steps per seed (default 700)")
    p.add_argument("--iterations", type=int, default=4000, help="Adam steps per fit (default 4000)")
    p.add_argument("--out", required=True, help="output prefix: <out>.csv and <out>_summary.csv")
    a = p.parse_args(argv)
    if a.map not in games.SMAX_MAPS:
        sweep.fail(f"unknown SMAX map {a.map!r}; choose one of {', '.join(games.SMAX_MAPS)}")
    if not (0.0 <= a.epsilon <= 1.0) or min(a.frames) < 1 or min(a.num_envs, a.steps, a.iterations) < 1:
        sweep.fail("--epsilon must be in [0, 1]; --frames, --num-envs, --steps, --iterations >= 1")
    torch.set_num_threads(1)
    variant, rows = f"eps{a.epsilon:g}", []
    for seed in a.seeds:
        episodes, n_actions = collect(a.map, a.num_envs, a.steps, a.epsilon, seed)
        if len(episodes) < 5:
            sweep.fail(f"seed {seed}: only {len(episodes)} finished episodes; raise --steps")
        order = np.random.default_rng(seed).permutation(len(episodes))
        cut = int(0.8 * len(order))
        train, test = [episodes[i] for i in order[:cut]], [episodes[i] for i in order[cut:]]
        step = sum(len(ep[2]) for ep in episodes)
        out = {}
        for S in a.frames:
            out.update(fit_and_test(train, test, S, n_actions, seed, a.iterations))
        print(f"[reward_information] {a.map} seed {seed}: {len(episodes)} episodes, {step} transitions; "
              + ", ".join(f"{k} {v:.3f}" for k, v in out.items()), flush=True)
        rows += [("reward_information", a.map, variant, seed, step, k, float(v)) for k, v in out.items()]
    sweep.write_long_csv(f"{a.out}.csv", rows)
    sweep.write_seed_summary(f"{a.out}_summary.csv", sweep.seed_summary(rows))
    print(f"[reward_information] wrote {a.out}.csv and {a.out}_summary.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
