# FSV: Learning to Factorize Soft Value Function for Cooperative MARL (ICLR 2021 submission): soft Q-learning through Q_tot = sum_i lambda_i (Q_i - V_i) + V_tot. README section "fsv.py".
"""FSV end to end: discrete soft Q-learning on SMAC maps (SMAX or StarCraft II) and the
non-monotonic matrix game, continuous soft actor-critic on Max of Two Quadratics (MTQ).

    python fsv.py --map 3m                         # SMAC map (Sec. 5.3), SMAX unless SC2 is installed
    python fsv.py --env matrix --alpha-final 0.01  # matrix game (Sec. 5.1), prints Tables 4-6's layout
    python fsv.py --env mtq                        # Max of Two Quadratics (Sec. 5.2), saves the path PNG
    python fsv.py --map 3m --checkpoint runs/<run>/checkpoint.pt              # resume
    python fsv.py --map 3m --checkpoint runs/<run>/checkpoint.pt --eval-only  # evaluate

No public FSV code exists, so the paper is the specification. Where it is silent we take the
settings of FOP's authors' code (liyheng/FOP, the same idea one year later) or PyMARL's defaults,
which the paper says it keeps (Appendix 7.2); where neither helps, the choice is ours and says so.
- Individual Q_i: PyMARL's GRU agent (obs, last action, agent id -> 64 -> GRU 64 -> |U|), shared
  by the agents; RMSprop 5e-4, gradient clip 10, gamma 0.99, 5000-episode buffer, batches of 32
  episodes, one update per collected episode after 100 uniform-random episodes, hard target copy
  every 200 episodes (FOP authors' code / PyMARL).
- Eq. 14-15 leave the normalisation of lambda_{i,h} and the number of heads open. 4 heads (FOP
  code); no normalisation: a softmax over agents fixes sum_i lambda_i for every joint action, and
  then no Q_i can reproduce the matrix game (Table 4's own Q_i need lambda ~ 0.8 at (B, B) and ~ 5
  at (A, B)). Each agent's key embeds the joint action and the agent's id (lambda_i depends on the
  whole u, Theorem 2), the query embeds the state. Ours: the attention logits are bounded,
  c tanh(logit / c) with c = 1 (`--lambda-logit-bound`), so lambda_i lies in [4/e, 4e] ~ [1.5, 10.9]
  with 4 heads (Table 4's own Q_i are then out of reach; other Q_i still reproduce the payoff,
  benchmarks/fsv_matrix_tables.txt). Unbounded, lambda grew without limit on MTQ (~100 after 2k
  updates) and carried the whole reward surface while the Q_i stayed flat, so the policies
  overshot (5, 5) (4 of 5 seeds ended near (8.4, 8.4)); on 3m it fell to ~0.1 (development runs
  before the bound; their logs were not kept).
- Eq. 33 "stops all the gradients except for lambda_i and the last term Q_i". Read literally the
  hypernetwork w, b of Eq. 13 would never be trained; we stop the gradients through the
  individual Q_i and V_i only, so w, b and lambda learn (as FOP's code trains its V(s)).
- Eq. 16's expectation over u' ~ pi is one sample per transition (as FOP's code); pi and log pi
  come from the online Q_i (the policy being evaluated), Q_tot(tau', u') from the target networks.
  Episodes cut by the time limit are treated as terminal (ours: games.py's auto-reset returns no
  final observation to bootstrap from; PyMARL's runner does not mark time-outs terminal).
- alpha decays linearly from 1 to 0.01 (Table 8); the paper gives no duration. Matrix game: over
  the whole 20k steps. SMAC: over 10k env steps (ours). At alpha ~ 1 the entropy bonus
  alpha sum_i H(pi_i) (~5 per step on 3m) dwarfs SMAC's rewards (< 1 per step) and pays agents to
  survive rather than fight: annealed over 200k (`--alpha-anneal-steps 200000`), 3m had no win by
  500k on 2 seeds (sweep E; over 50k, 0 wins at 100k in an unlogged development run). `--autotune`
  adjusts alpha by Eq. 34 instead (Table 8's continuous setting; target entropy 0.2 log|U| per
  agent: ours). SMAX 3m, 3 seeds to 1M (benchmarks/README.md, sweep E): the mean of each seed's
  last five evaluations is 0.831 with the 10k decay (alpha at its floor from 10k on) and 0.896
  with --autotune (alpha ~0.03-0.045), higher on every seed; --autotune to 2.05M: 0.908.
- Continuous (MTQ, one-step): Q_i, V_i and a tanh-Gaussian policy, each 2 x 64 (Table 8; one
  set shared by both agents with an agent id, as on SMAC), Adam, auto entropy adjustment (Table 8)
  with target -dim(u_i) = -1 (SAC) and alpha's learning rate 3e-3 (ours: at the actor's 3e-4,
  alpha stays ~0.3 after 5k updates and the policy never narrows). The one-step game makes Eq. 16's
  target the reward, so no target networks. 1000 uniform-random warm-up steps (maci's MTQ code).
- Evaluation every 100k steps with 32 greedy episodes (Sec. 5.3); the default run length, 2.05M
  env steps, is FOP's code's.
"""
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.utils.tensorboard import SummaryWriter

import games


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, cuda will be used when available"""
    track: bool = False
    """if toggled, log to Weights & Biases"""
    wandb_project_name: str = "marl-papers"
    """the Weights & Biases project"""
    capture_video: bool = False
    """record env 0's first episode of every --video-interval-th evaluation: runs/{run_name}/videos/step_<N>.gif on
    SMAX, a StarCraft II replay next to that path on SC2 (with --eval-only: videos/ next to the checkpoint)"""
    video_interval: int = 1
    """with --capture-video: record every this many evaluations (1: every one)"""
    save_model: bool = True
    """write checkpoints to runs/{run_name}/checkpoint.pt"""
    checkpoint: Optional[str] = None
    """resume from this checkpoint (its settings are the defaults); with --eval-only, just evaluate it"""
    eval_only: bool = False
    """evaluate --checkpoint and exit"""

    env: str = "smac"
    """smac (a SMAC map, --map), matrix (Sec. 5.1) or mtq (Max of Two Quadratics, Sec. 5.2)"""
    map: str = "3m"
    """SMAC map (with --env smac), a key of games.SMAC_MAPS (an unknown name lists them all): 3m, 8m, 25m, 5m_vs_6m,
    8m_vs_9m, 2s3z, 3s5z, 3s_vs_5z, 6h_vs_8z, corridor, ...; SMAX plays those in games.SMAX_MAPS (with
    smacv2_5_units, smacv2_10_units, smacv2_20_units: SMACv2 on SMAX), the others (MMM, MMM2, 1c3s5z, protoss_5_vs_5,
    ...) need StarCraft II"""
    backend: str = "auto"
    """StarCraft backend: auto (SC2 if installed, else SMAX), smax or sc2"""
    num_envs: int = 8
    """parallel environments"""
    total_timesteps: Optional[int] = None
    """env steps (default: smac 2,050,000 as FOP's authors' code; matrix 20,000 (Sec. 5.1); mtq 10,000 (maci))"""
    eval_interval: Optional[int] = None
    """env steps between greedy evaluations (default: smac 100,000 (Sec. 5.3); toys 1,000)"""
    eval_episodes: int = 32
    """episodes per evaluation (Sec. 5.3: 32)"""
    checkpoint_interval: int = 100_000
    """env steps between checkpoints"""

    gamma: float = 0.99
    """discount gamma (PyMARL)"""
    alpha_init: float = 1.0
    """temperature alpha at the start of the linear decay (Table 8: 1)"""
    alpha_final: float = 0.01
    """temperature alpha at the end of the linear decay (Table 8: 0.01; Sec. 5.1: 1, 0.1, 0.01)"""
    alpha_anneal_steps: Optional[int] = None
    """env steps of the alpha decay (default: smac 10,000 (ours); matrix: the whole run)"""
    autotune: bool = False
    """adjust alpha by Eq. 34 instead of decaying it (default: on for mtq (Table 8), off otherwise;
    --no-autotune turns it off)"""
    target_entropy: Optional[float] = None
    """target entropy H-bar of Eq. 34 per agent (default: -1 = -dim(u_i) for mtq; 0.2 log|U| discrete)"""
    epsilon: Optional[float] = None
    """probability of a uniform random action while training (default: matrix 1 (Sec. 5.1), else 0)"""
    buffer_size: int = 5000
    """replay capacity in episodes (PyMARL)"""
    batch_size: Optional[int] = None
    """episodes per update (default: 32 (PyMARL); mtq 256 (SAC))"""
    learning_starts: Optional[int] = None
    """episodes of uniform random play before the first update (default: 100 (FOP authors' code); mtq 1000 (maci))"""
    learning_rate: float = 5e-4
    """learning rate of Q_i, V_i and the mixer (PyMARL: 5e-4; RMSprop discrete, Adam continuous)"""
    policy_lr: float = 3e-4
    """learning rate of the continuous policy (Table 8: 3e-4)"""
    alpha_lr: float = 3e-3
    """learning rate of log alpha in Eq. 34 (ours; the paper gives none)"""
    grad_norm_clip: float = 10.0
    """gradient norm clip (PyMARL)"""
    target_update_interval: int = 200
    """episodes between hard target-network copies (FOP authors' code / PyMARL)"""
    rnn_hidden_dim: int = 64
    """GRU width of the individual Q_i (PyMARL)"""
    hidden_dim: int = 64
    """width of the continuous Q_i, V_i and policy networks, two layers each (Table 8)"""
    lambda_hidden: int = 64
    """width of the two-layer embeddings e_s, e_u of lambda (Table 8: 2 layers, 64 units)"""
    n_heads: int = 4
    """attention heads H of Eq. 14 (FOP authors' code: 4; not in the paper)"""
    attention_dim: int = 32
    """key/query size per head in Eq. 15 (FOP authors' code's mixing_embed_dim: 32)"""
    lambda_logit_bound: float = 1.0
    """bound c on the attention logits of Eq. 15 (ours): lambda_{i,h} in [1/e^c, e^c]"""
    hyper_hidden: Optional[int] = None
    """hidden units of the w, b hypernetwork of Eq. 13 (Table 8: 0 discrete, 64 continuous)"""


# Defaults that differ between the games; any flag given on the command line wins.
ENV_DEFAULTS = {
    "smac": dict(total_timesteps=2_050_000, eval_interval=100_000, alpha_anneal_steps=10_000,
                 autotune=False, epsilon=0.0, batch_size=32, learning_starts=100, hyper_hidden=0),
    "matrix": dict(total_timesteps=20_000, eval_interval=1_000, alpha_anneal_steps=None,
                   autotune=False, epsilon=1.0, batch_size=32, learning_starts=100, hyper_hidden=0),
    "mtq": dict(total_timesteps=10_000, eval_interval=1_000, alpha_anneal_steps=None,
                autotune=True, epsilon=0.0, batch_size=256, learning_starts=1000, hyper_hidden=64),
}


PROGRESS_SECONDS = 30
"""a progress line at least this often (seconds of wall time)"""


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


# ----------------------------------------------------------------------------------------------
# Console and run directory (the same in the four scripts)
# ----------------------------------------------------------------------------------------------
def hms(seconds):
    """H:MM:SS, hours unbounded."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(step, total, sps, updates, wins, returns, eta):
    """The console's progress line; wins, returns: training episodes since the last line."""
    train = (f"train win rate {np.mean(wins):.2f}, return {np.mean(returns):.2f}" if len(wins)
             else "train win rate n/a, return n/a")
    return (f"step {step:,}/{total:,} ({100 * step / total:.0f}%) | {sps:.1f} env steps/s | "
            f"{updates:,} updates | {train} | ETA {'n/a' if eta is None else hms(max(0.0, eta))}")


def eval_line(step, win, ret, episodes):
    return f"eval at step {step:,}: win rate {win:.3f}, return {ret:.2f} ({episodes} episodes, greedy)"


class Progress:
    """progress_line every PROGRESS_SECONDS (tick() after every env step) and at the end
    (tick(force=True)); env steps/s and the ETA over the interval since the previous line."""

    def __init__(self, step, total):
        self.total, self.last_time, self.last_step = total, time.time(), step
        self.start_time, self.start_step = self.last_time, step
        self.wins, self.returns = [], []

    def rate(self, step):
        """env steps/s since this session started (TensorBoard's charts/SPS)"""
        return (step - self.start_step) / max(time.time() - self.start_time, 1e-9)

    def add_episode(self, won, ret):
        self.wins.append(float(won))
        self.returns.append(float(ret))

    def tick(self, step, updates, force=False):
        now = time.time()
        if not force and now - self.last_time < PROGRESS_SECONDS:
            return
        sps = (step - self.last_step) / max(now - self.last_time, 1e-9)
        eta = (self.total - step) / sps if sps > 0 else None
        print(progress_line(step, self.total, sps, updates, self.wins, self.returns, eta), flush=True)
        self.last_time, self.last_step, self.wins, self.returns = now, step, [], []


def make_run_dir(run_name, resume):
    """Create runs/{run_name} before anything expensive and check that it can be written (else one
    line, exit 2). A new run gets a directory of its own: os.makedirs is atomic, so when the name is
    taken (two runs started in the same second) it tries run_name_2, _3, ...; a resumed run reuses
    its checkpoint's. Returns the name used and a function that removes what was created here."""
    created_runs = not os.path.lexists("runs")
    name, path = run_name, os.path.join("runs", run_name)
    try:
        if resume:
            os.makedirs(path, exist_ok=True)
        else:
            for i in range(2, 10_000):
                try:
                    os.makedirs(path)
                    break
                except FileExistsError:
                    name = f"{run_name}_{i}"
                    path = os.path.join("runs", name)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        fail(f"cannot write run directory {path}: {e.strerror or e}")

    def remove():
        if not resume:
            shutil.rmtree(path, ignore_errors=True)
            if created_runs:
                try:
                    os.rmdir("runs")  # only when empty
                except OSError:
                    pass
    return name, remove


class NullWriter:
    """--eval-only logs nothing (the checkpoint's run keeps its curves)."""

    def add_scalar(self, *args, **kwargs):
        pass

    def add_text(self, *args, **kwargs):
        pass

    def close(self):
        pass


def save_video(eval_env, path):
    """env 0's recorded evaluation episode: a GIF on SMAX, a StarCraft II replay next to path on SC2."""
    try:
        return eval_env.save_replay(path)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}")


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class AgentQ(nn.Module):
    """Individual Q_i(tau_i, .) over the action-observation history (Sec. 3.3, Fig. 2): the input
    [o_i, u_i^{t-1}, one-hot i] feeds a GRU, so one network serves every agent (PyMARL)."""

    def __init__(self, input_dim, hidden_dim, n_actions):
        super().__init__()
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.rnn = nn.GRU(hidden_dim, hidden_dim, batch_first=True)
        self.fc2 = nn.Linear(hidden_dim, n_actions)

    def forward(self, x, h):  # x [B, T, N, in], h [B, N, H]: a whole sequence in one GRU call
        B, T, N, _ = x.shape
        z = F.relu(self.fc1(x)).transpose(1, 2).reshape(B * N, T, -1)  # [B*N, T, H]
        z, h = self.rnn(z, h.reshape(1, B * N, -1))
        q = self.fc2(z).view(B, N, T, -1).transpose(1, 2)  # [B, T, N, A]
        return q, h.view(B, N, -1)


def mlp(in_dim, hidden, out_dim):
    """Two hidden layers (Table 8: 2 layers of 64 units)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, out_dim))


class LambdaAttention(nn.Module):
    """lambda_i(tau, u) = sum_h lambda_{i,h} (Eq. 14), lambda_{i,h} = exp(e_u,i^T W_k,h^T W_q,h e_s)
    (Eq. 15), with e_s and e_u two-layer embeddings of the state and of the joint action (plus the
    id of agent i, so that each agent gets its own key). Unnormalised: see the module docstring."""

    def __init__(self, state_dim, joint_action_dim, n_agents, hidden, n_heads, dim, bound):
        super().__init__()
        self.n_agents, self.n_heads, self.dim, self.bound = n_agents, n_heads, dim, bound
        self.embed_s = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.embed_u = nn.Sequential(nn.Linear(joint_action_dim + n_agents, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden))
        self.w_q = nn.Linear(hidden, n_heads * dim, bias=False)
        self.w_k = nn.Linear(hidden, n_heads * dim, bias=False)

    def forward(self, s, u):  # s [B, S], u [B, joint_action_dim]
        B, N = s.shape[0], self.n_agents
        ids = torch.eye(N, device=s.device).expand(B, N, N)
        e_u = self.embed_u(torch.cat([u.unsqueeze(1).expand(B, N, u.shape[-1]), ids], -1))  # [B, N, hid]
        query = self.w_q(self.embed_s(s)).view(B, 1, self.n_heads, self.dim)
        key = self.w_k(e_u).view(B, N, self.n_heads, self.dim)
        logits = (query * key).sum(-1) / self.dim ** 0.5  # scaled dot product (ours): [B, N, H]
        bounded = self.bound * torch.tanh(logits / self.bound)  # |logit| <= c (ours, see docstring)
        return bounded.exp().sum(-1)  # Eq. 14-15: [B, N]


class VTotHypernet(nn.Module):
    """V_tot(tau) = sum_i w_i(tau) V_i(tau_i) + b(tau), w_i >= 0 (Eq. 13), from a one-layer
    hypernetwork on the state (Table 8: no hidden layer when discrete, 64 units when continuous)."""

    def __init__(self, state_dim, n_agents, hidden):
        super().__init__()
        def head(out):
            if hidden == 0:
                return nn.Linear(state_dim, out)
            return nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))
        self.w, self.b = head(n_agents), head(1)

    def forward(self, s, v):  # s [B, S], v [B, N]
        return (self.w(s).abs() * v).sum(-1) + self.b(s).squeeze(-1)  # Eq. 13: [B]


class FSVMixer(nn.Module):
    """Q_tot = sum_i lambda_i (Q_i - V_i) + V_tot (Eq. 7), written as Eq. 33:
    sum_i lambda_i sg(Q_i - V_i) + [V_tot - sum_i Q_i]_sg(Q_i, V_i) + sum_i Q_i. Its value is Eq. 7;
    the individual Q_i learn only through the last term (VDN-like), lambda, w and b learn the rest."""

    def __init__(self, state_dim, joint_action_dim, n_agents, args):
        super().__init__()
        self.lam = LambdaAttention(state_dim, joint_action_dim, n_agents, args.lambda_hidden,
                                   args.n_heads, args.attention_dim, args.lambda_logit_bound)
        self.v_tot = VTotHypernet(state_dim, n_agents, args.hyper_hidden)

    def forward(self, q, v, s, u):  # q = Q_i(tau_i, u_i) [B, N], v = V_i [B, N], s [B, S], u [B, *]
        lam = self.lam(s, u)  # [B, N]
        q_sum = q.sum(-1)
        q_tot = (lam * (q - v).detach()).sum(-1) + self.v_tot(s, v.detach()) - q_sum.detach() + q_sum
        return q_tot, lam  # [B], [B, N]


class GaussianPolicy(nn.Module):
    """Continuous pi_i(u_i | tau_i): a tanh-squashed Gaussian scaled to the action bounds
    (Sec. 3.3: the policy network gives a mean and a standard deviation; Table 8: 2 x 64)."""

    def __init__(self, in_dim, hidden, scale):
        super().__init__()
        self.net, self.scale = mlp(in_dim, hidden, 2), scale

    def forward(self, x):  # x [B, N, in] -> u [B, N], log pi(u) [B, N], greedy u [B, N]
        mean, log_std = self.net(x).unbind(-1)
        std = log_std.clamp(-5, 2).exp()
        pre = mean + std * torch.randn_like(mean)  # reparameterised, so Eq. 18 reaches the policy
        y = torch.tanh(pre)
        log_pi = (torch.distributions.Normal(mean, std).log_prob(pre)
                  - torch.log(self.scale * (1 - y.pow(2)) + 1e-6))  # change of variables u = scale tanh
        return self.scale * y, log_pi, self.scale * torch.tanh(mean)


# ----------------------------------------------------------------------------------------------
# Soft values and policies (discrete, Sec. 3.3)
# ----------------------------------------------------------------------------------------------
def masked(q, avail):
    """Q with unavailable actions pushed to a finite -1e10 (finite so p log p stays 0, not NaN)."""
    return q.masked_fill(avail == 0, -1e10)


def soft_v(q, avail, alpha):
    """V_i(tau_i) = alpha log sum_u exp(Q_i(tau_i, u) / alpha) over the legal actions (Sec. 3.3)."""
    return alpha * torch.logsumexp(masked(q, avail) / alpha, -1)


def log_pi(q, avail, alpha):
    """log pi_i(. | tau_i) = (Q_i - V_i) / alpha (Eq. 5 with alpha_i = alpha, Appendix 7.2)."""
    return torch.log_softmax(masked(q, avail) / alpha, -1)


def alpha_schedule(step, args):
    """Linear decay from alpha_init to alpha_final (Table 8)."""
    frac = min(1.0, step / max(1, args.alpha_anneal_steps))
    return args.alpha_init + frac * (args.alpha_final - args.alpha_init)


# ----------------------------------------------------------------------------------------------
# Episode buffer (discrete): padded episodes, as PyMARL's
# ----------------------------------------------------------------------------------------------
def make_episode_store(n, T, N, obs_dim, state_dim, A):
    """n padded episodes of at most T steps: obs/state/avail hold T+1 entries (the last is the
    observation after the final step), actions/reward/terminated/filled hold T."""
    return {"obs": np.zeros((n, T + 1, N, obs_dim), np.float32),
            "state": np.zeros((n, T + 1, state_dim), np.float32),
            "avail": np.ones((n, T + 1, N, A), np.float32),
            "actions": np.zeros((n, T, N), np.int64),
            "reward": np.zeros((n, T), np.float32),
            "terminated": np.zeros((n, T), np.float32),
            "filled": np.zeros((n, T), np.float32)}


def buffer_add(buf, live, e):
    """Move env e's finished episode from the live store into the ring buffer."""
    i = buf["pos"]
    for k, store in buf["data"].items():
        store[i] = live[k][e]
        live[k][e] = 1.0 if k == "avail" else 0.0
    buf["pos"] = (i + 1) % buf["capacity"]
    buf["size"] = min(buf["size"] + 1, buf["capacity"])


def buffer_sample(buf, batch_size, rng, device):
    """Uniform batch of episodes, cut to the longest one in the batch (PyMARL's max_t_filled)."""
    idx = rng.choice(buf["size"], batch_size, replace=False)
    T = int(buf["data"]["filled"][idx].sum(1).max())
    out = {}
    for k, store in buf["data"].items():
        x = store[idx, : T + 1] if k in ("obs", "state", "avail") else store[idx, :T]
        out[k] = torch.as_tensor(x, device=device)
    return out


def agent_inputs(obs, last_onehot):
    """[o_i, one-hot u_i^{t-1}, one-hot i] for every agent: [..., N, obs + A + N]."""
    N = obs.shape[-2]
    ids = torch.eye(N, device=obs.device).expand(*obs.shape[:-1], N)
    return torch.cat([obs, last_onehot, ids], -1)


def unroll(agent, obs, actions, n_actions, hidden_dim):
    """Q_i(tau_i^t, .) for t = 0..T along whole episodes: obs [B, T+1, N, o], actions [B, T, N]."""
    B, T1, N, _ = obs.shape
    last = F.one_hot(actions, n_actions).float()
    last = torch.cat([torch.zeros_like(last[:, :1]), last], 1)  # u^{-1} = 0: [B, T+1, N, A]
    q, _ = agent(agent_inputs(obs, last[:, :T1]), torch.zeros(B, N, hidden_dim, device=obs.device))
    return q  # [B, T+1, N, A]


def soft_q_loss(b, agent, target_agent, mixer, target_mixer, alpha, args, n_actions):
    """J_Q of Eq. 16 on a batch of episodes, with the target
    Q_hat = r + gamma (Q_tot^target(tau', u') - alpha log pi_tot(u' | tau')), u' ~ pi (one sample),
    log pi_tot = sum_i log pi_i (IGO, Eq. 3)."""
    B, T, N = b["actions"].shape
    flat = lambda x: x.reshape(B * T, *x.shape[2:])  # noqa: E731
    q = unroll(agent, b["obs"], b["actions"], n_actions, args.rnn_hidden_dim)  # [B, T+1, N, A]
    q_taken = q[:, :-1].gather(-1, b["actions"].unsqueeze(-1)).squeeze(-1)  # [B, T, N]
    v = soft_v(q[:, :-1], b["avail"][:, :-1], alpha)  # [B, T, N]
    u_onehot = F.one_hot(b["actions"], n_actions).float().reshape(B, T, N * n_actions)
    q_tot, lam = mixer(flat(q_taken), flat(v), flat(b["state"][:, :-1]), flat(u_onehot))
    with torch.no_grad():
        logp = log_pi(q[:, 1:], b["avail"][:, 1:], alpha)  # the current policy at tau': [B, T, N, A]
        u_next = torch.distributions.Categorical(logits=logp).sample()  # [B, T, N]
        logp_next = logp.gather(-1, u_next.unsqueeze(-1)).squeeze(-1).sum(-1)  # log pi_tot: [B, T]
        q_targ = unroll(target_agent, b["obs"], b["actions"], n_actions, args.rnn_hidden_dim)[:, 1:]
        q_targ_taken = q_targ.gather(-1, u_next.unsqueeze(-1)).squeeze(-1)
        v_targ = soft_v(q_targ, b["avail"][:, 1:], alpha)
        u_next_onehot = F.one_hot(u_next, n_actions).float().reshape(B, T, N * n_actions)
        q_tot_next, _ = target_mixer(flat(q_targ_taken), flat(v_targ), flat(b["state"][:, 1:]),
                                     flat(u_next_onehot))
        q_hat = b["reward"] + args.gamma * (1 - b["terminated"]) * (
            q_tot_next.view(B, T) - alpha * logp_next)  # Eq. 16
    mask = b["filled"]
    loss = (((q_tot.view(B, T) - q_hat) ** 2) * mask).sum() / mask.sum()
    stats = {"q_tot": (q_tot.view(B, T) * mask).sum().item() / mask.sum().item(),
             "lambda": (lam.view(B, T, N) * mask[..., None]).sum().item() / (N * mask.sum().item())}
    with torch.no_grad():
        logp_now = log_pi(q[:, :-1], b["avail"][:, :-1], alpha)
        entropy = -(logp_now.exp() * logp_now).sum(-1)  # H(pi_i(. | tau_i^t)): [B, T, N]
    return loss, stats, entropy, mask


# ----------------------------------------------------------------------------------------------
# Acting and evaluation (discrete)
# ----------------------------------------------------------------------------------------------
def act(agent, obs, last, h, avail, alpha, epsilon, greedy, rng, device):
    """Decentralised action selection: pi_i = softmax(Q_i / alpha) (Eq. 5) or the greedy argmax,
    with probability epsilon a uniform legal action instead (Sec. 5.1's full exploration)."""
    avail_t = torch.as_tensor(avail, device=device)
    q, h = agent(agent_inputs(torch.as_tensor(obs, device=device), last).unsqueeze(1), h)
    q = q.squeeze(1)  # [E, N, A]
    if greedy:
        a = masked(q, avail_t).argmax(-1)
    else:
        a = torch.distributions.Categorical(logits=log_pi(q, avail_t, alpha)).sample()
    a = a.cpu().numpy()
    if epsilon > 0:
        uniform = (rng.random(avail.shape) * avail).argmax(-1)  # a uniform legal action: [E, N]
        explore = rng.random(a.shape) < epsilon
        a = np.where(explore, uniform, a)
    return a, h


def evaluate(agent, env, args, device):
    """Greedy decentralised evaluation over `eval_episodes` whole episodes: env e plays a fixed
    quota of episodes (so short episodes are not favoured). Returns (win rate, mean return)."""
    E, N, A = env.num_envs, env.n_agents, env.n_actions
    quota = np.array([args.eval_episodes // E + (e < args.eval_episodes % E) for e in range(E)])
    played = np.zeros(E, int)
    wins, returns = [], []
    obs, _, avail = env.reset()
    h = torch.zeros(E, N, args.rnn_hidden_dim, device=device)
    last = torch.zeros(E, N, A, device=device)
    with torch.no_grad():
        while (played < quota).any():
            a, h = act(agent, obs, last, h, avail, 1.0, 0.0, True, None, device)
            obs, _, avail, _, done, info = env.step(a)
            for e in np.flatnonzero(done & (played < quota)):
                wins.append(float(info["won"][e]))
                returns.append(float(info["episode_return"][e]))
            played += done
            last = F.one_hot(torch.as_tensor(a, device=device), A).float()
            keep = torch.as_tensor(~done, device=device, dtype=torch.float32)[:, None, None]
            h, last = h * keep, last * keep
    return float(np.mean(wins)), float(np.mean(returns))


def matrix_tables(agent, mixer, alpha, args, device):
    """Q_1, Q_2 and Q_tot of the matrix game over all 9 joint actions (Tables 4-6)."""
    with torch.no_grad():
        obs = torch.ones(1, 2, 1, device=device)
        q, _ = agent(agent_inputs(obs, torch.zeros(1, 2, 3, device=device)).unsqueeze(1),
                     torch.zeros(1, 2, args.rnn_hidden_dim, device=device))
        q = q[0, 0]  # [N=2, A=3]
        v = soft_v(q, torch.ones_like(q), alpha)  # [2]
        u1, u2 = torch.meshgrid(torch.arange(3, device=device), torch.arange(3, device=device),
                                indexing="ij")
        u = torch.stack([u1.reshape(-1), u2.reshape(-1)], -1)  # [9, 2]
        q_taken = torch.stack([q[0, u[:, 0]], q[1, u[:, 1]]], -1)  # [9, 2]
        q_tot, _ = mixer(q_taken, v.expand(9, 2), torch.ones(9, 1, device=device),
                         F.one_hot(u, 3).float().reshape(9, 6))
    return q[0].cpu().numpy(), q[1].cpu().numpy(), q_tot.view(3, 3).cpu().numpy()


def format_tables(q1, q2, q_tot, alpha):
    """Tables 4-6's layout: Q_2(u_2) across the top, Q_1(u_1) down the side, Q_tot in the cells."""
    names = "ABC"
    lines = [f"FSV matrix game, alpha = {alpha:g}: Q_tot(u_1, u_2) (rows u_1 with Q_1, columns u_2 with Q_2)",
             "  Q_1 \\ Q_2 |" + "".join(f"  {names[j]} {q2[j]:6.1f}" for j in range(3)),
             "  ----------+" + "-" * 30]
    for i in range(3):
        lines.append(f"  {names[i]} {q1[i]:6.1f}  |" + "".join(f"  {q_tot[i, j]:8.1f}" for j in range(3)))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
def rng_states(rng):
    return {"python": random.getstate(), "numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def set_rng_states(states, rng):
    random.setstate(states["python"])
    rng.bit_generator.state = states["numpy"]
    torch.set_rng_state(states["torch"])


def save_checkpoint(path, ckpt):
    """Write atomically: a crash mid-write never leaves a broken checkpoint behind. The buffer goes in as tensors
    sharing the arrays' memory (torch.from_numpy): torch.save pickles a NumPy array through copies of it (1.15 GB of
    peak memory to save 0.2 GB; the full 5,000-episode buffer of smacv2_5_units, 3.4 GB, got two runs OOM-killed)."""
    ckpt = {**ckpt, "buffer": {k: torch.from_numpy(v) for k, v in ckpt["buffer"].items()}}
    torch.save(ckpt, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path):
    """Read a checkpoint and check it is one of this script's (one-line errors)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except OSError as e:  # missing, a directory, no permission
        fail(f"cannot read checkpoint {path}: {e.strerror or e}")
    except Exception:  # noqa: BLE001 (torch's zip reader, pickle: truncated or not a torch file)
        fail(f"checkpoint {path} is truncated or not a torch file")
    if not isinstance(ckpt, dict) or ckpt.get("script") != "fsv":
        fail(f"{path} is not an fsv.py checkpoint")
    return ckpt


# ----------------------------------------------------------------------------------------------
# Training: discrete (SMAC maps and the matrix game)
# ----------------------------------------------------------------------------------------------
def train_discrete(args, env, eval_env, writer, run_name, device, rng, ckpt):
    N, A, T = env.n_agents, env.n_actions, env.episode_limit
    E = env.num_envs
    agent = AgentQ(env.obs_dim + A + N, args.rnn_hidden_dim, A).to(device)
    mixer = FSVMixer(env.state_dim, N * A, N, args).to(device)
    target_agent = AgentQ(env.obs_dim + A + N, args.rnn_hidden_dim, A).to(device)
    target_mixer = FSVMixer(env.state_dim, N * A, N, args).to(device)
    params = list(agent.parameters()) + list(mixer.parameters())
    optimizer = torch.optim.RMSprop(params, lr=args.learning_rate, alpha=0.99, eps=1e-5, foreach=True)
    log_alpha = torch.tensor(float(np.log(args.alpha_init)), device=device, requires_grad=True)
    a_optimizer = torch.optim.Adam([log_alpha], lr=args.alpha_lr)
    target_entropy = args.target_entropy if args.target_entropy is not None else 0.2 * np.log(A)

    buf = {"data": make_episode_store(args.buffer_size, T, N, env.obs_dim, env.state_dim, A),
           "capacity": args.buffer_size, "pos": 0, "size": 0}
    global_step = updates = episodes = last_target_update = 0
    if ckpt is not None:
        try:
            agent.load_state_dict(ckpt["agent"])
            mixer.load_state_dict(ckpt["mixer"])
            target_agent.load_state_dict(ckpt["target_agent"])
            target_mixer.load_state_dict(ckpt["target_mixer"])
        except RuntimeError:
            fail(f"{args.checkpoint} has other network sizes than these arguments")
        optimizer.load_state_dict(ckpt["optimizer"])
        a_optimizer.load_state_dict(ckpt["a_optimizer"])
        with torch.no_grad():
            log_alpha.copy_(ckpt["log_alpha"])
        global_step, updates, episodes, last_target_update = ckpt["counters"]  # alpha(step) too
        if not args.eval_only:
            saved = ckpt.pop("buffer")  # popped: the loaded copy is freed once copied (3.45 GB on smacv2_5_units)
            n = len(saved["reward"])
            if n > args.buffer_size or saved["reward"].shape[1] != T:
                fail(f"{args.checkpoint}'s buffer does not fit --buffer-size {args.buffer_size}")
            for k, store in buf["data"].items():
                store[:n] = saved[k]
            buf["size"], buf["pos"] = n, ckpt["buffer_pos"] % args.buffer_size
            set_rng_states(ckpt["rng"], rng)
    else:
        target_agent.load_state_dict(agent.state_dict())
        target_mixer.load_state_dict(mixer.state_dict())
    start_time = time.time()
    progress = Progress(global_step, args.total_timesteps)
    evaluations = 0  # of this session: --capture-video records evaluations 0, k, 2k, ... (k = --video-interval)

    def current_alpha():
        return log_alpha.exp().item() if args.autotune else alpha_schedule(global_step, args)

    def run_eval():
        nonlocal evaluations
        record = args.capture_video and evaluations % args.video_interval == 0
        if record:
            eval_env.start_recording()  # env 0's first evaluation episode
        win_rate, ret = evaluate(agent, eval_env, args, device)
        if record:
            folder = os.path.dirname(args.checkpoint) if args.eval_only else f"runs/{run_name}"
            save_video(eval_env, os.path.join(folder, "videos", f"step_{global_step}.gif"))
        evaluations += 1
        writer.add_scalar("eval/win_rate", win_rate, global_step)
        writer.add_scalar("eval/episodic_return", ret, global_step)
        print(eval_line(global_step, win_rate, ret, args.eval_episodes), flush=True)
        return win_rate

    def checkpoint():
        if not args.save_model:
            return
        n = buf["size"]
        save_checkpoint(f"runs/{run_name}/checkpoint.pt", {
            "script": "fsv", "env": args.map if args.env == "smac" else args.env, "args": vars(args),
            "run_name": run_name, "agent": agent.state_dict(), "mixer": mixer.state_dict(),
            "target_agent": target_agent.state_dict(), "target_mixer": target_mixer.state_dict(),
            "optimizer": optimizer.state_dict(), "a_optimizer": a_optimizer.state_dict(),
            "log_alpha": log_alpha.detach().cpu(), "alpha": current_alpha(),
            "buffer": {k: v[:n] for k, v in buf["data"].items()}, "buffer_pos": buf["pos"],
            "counters": (global_step, updates, episodes, last_target_update), "rng": rng_states(rng)})

    if args.eval_only:
        print(f"checkpoint {args.checkpoint}")
        run_eval()
        if args.env == "matrix":  # V_i, hence Q_tot, depends on alpha: use the checkpoint's
            print(format_tables(*matrix_tables(agent, mixer, ckpt["alpha"], args, device), ckpt["alpha"]))
        return {}

    live = make_episode_store(E, T, N, env.obs_dim, env.state_dim, A)
    t_env = np.zeros(E, int)  # step index inside each env's current episode
    obs, state, avail = env.reset()
    h = torch.zeros(E, N, args.rnn_hidden_dim, device=device)
    last = torch.zeros(E, N, A, device=device)
    next_eval = (global_step // args.eval_interval + 1) * args.eval_interval
    next_ckpt = (global_step // args.checkpoint_interval + 1) * args.checkpoint_interval
    recent_wins = []
    if global_step == 0:
        run_eval()
    while global_step < args.total_timesteps:
        alpha = current_alpha()
        warmup = episodes < args.learning_starts
        with torch.no_grad():
            actions, h = act(agent, obs, last, h, avail, alpha, 1.0 if warmup else args.epsilon,
                             False, rng, device)
        e_idx = np.arange(E)
        live["obs"][e_idx, t_env], live["state"][e_idx, t_env] = obs, state
        live["avail"][e_idx, t_env], live["actions"][e_idx, t_env] = avail, actions
        obs, state, avail, reward, done, info = env.step(actions)
        live["reward"][e_idx, t_env], live["filled"][e_idx, t_env] = reward, 1.0
        live["terminated"][e_idx, t_env] = done  # time-outs too: no final observation to bootstrap from
        t_env += 1
        global_step += E
        last = F.one_hot(torch.as_tensor(actions, device=device), A).float()
        finished = np.flatnonzero(done)
        for e in finished:
            # the observation after the last step: auto-reset already returned the next episode's
            # first one, which the terminal flag masks out of every target
            live["obs"][e, t_env[e]], live["state"][e, t_env[e]] = obs[e], state[e]
            buffer_add(buf, live, e)
            t_env[e] = 0
            episodes += 1
            recent_wins.append(float(info["won"][e]))
            progress.add_episode(info["won"][e], info["episode_return"][e])
            writer.add_scalar("charts/episodic_return", info["episode_return"][e], global_step)
            writer.add_scalar("charts/episodic_length", info["episode_length"][e], global_step)
        if len(finished):
            keep = torch.as_tensor(~done, device=device, dtype=torch.float32)[:, None, None]
            h, last = h * keep, last * keep
        if len(recent_wins) >= 32:
            writer.add_scalar("charts/win_rate", np.mean(recent_wins), global_step)
            recent_wins = []

        # one update per collected episode once the burn-in is over (FOP authors' code, PyMARL)
        for _ in range(len(finished) if episodes >= args.learning_starts else 0):
            b = buffer_sample(buf, min(args.batch_size, buf["size"]), rng, device)
            loss, stats, entropy, mask = soft_q_loss(b, agent, target_agent, mixer, target_mixer,
                                                    alpha, args, A)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, args.grad_norm_clip)
            optimizer.step()
            updates += 1
            alive = (b["avail"][:, :-1].sum(-1) > 1).float() * mask[..., None]  # agents with a choice
            mean_entropy = (entropy * alive).sum() / alive.sum().clamp(min=1)
            if args.autotune:  # Eq. 34: J(alpha) = E[-alpha log pi - alpha H-bar]
                alpha_loss = log_alpha.exp() * (mean_entropy - target_entropy)
                a_optimizer.zero_grad()
                alpha_loss.backward()
                a_optimizer.step()
                writer.add_scalar("losses/alpha_loss", alpha_loss.item(), global_step)
            if updates % 20 == 1:  # the first update, then every 20th
                writer.add_scalar("losses/q_tot_loss", loss.item(), global_step)
                writer.add_scalar("losses/q_tot", stats["q_tot"], global_step)
                writer.add_scalar("losses/lambda", stats["lambda"], global_step)
                writer.add_scalar("losses/entropy", mean_entropy.item(), global_step)
                writer.add_scalar("losses/alpha", alpha, global_step)
                writer.add_scalar("charts/SPS", progress.rate(global_step), global_step)
        if episodes - last_target_update >= args.target_update_interval:
            target_agent.load_state_dict(agent.state_dict())
            target_mixer.load_state_dict(mixer.state_dict())
            last_target_update = episodes

        if next_eval <= global_step < args.total_timesteps:  # the final one follows the loop
            run_eval()
            next_eval += args.eval_interval
        if next_ckpt <= global_step < args.total_timesteps:
            checkpoint()
            next_ckpt += args.checkpoint_interval
        progress.tick(global_step, updates)

    progress.tick(global_step, updates, force=True)
    win_rate = run_eval()
    checkpoint()
    if args.save_model:
        print(f"checkpoint: runs/{run_name}/checkpoint.pt")
    print(f"done: {global_step:,} env steps, {updates:,} updates, {time.time() - start_time:.0f} s")
    result = {"eval_win_rate": win_rate, "global_step": global_step, "updates": updates}
    if args.env == "matrix":
        alpha = current_alpha()
        q1, q2, q_tot = matrix_tables(agent, mixer, alpha, args, device)
        table = format_tables(q1, q2, q_tot, alpha)
        print(table)
        writer.add_text("matrix/q_tot_table", "```\n" + table + "\n```", global_step)
        result.update(q1=q1, q2=q2, q_tot=q_tot, greedy=(int(q1.argmax()), int(q2.argmax())))
    return result


# ----------------------------------------------------------------------------------------------
# Training: continuous (Max of Two Quadratics, one-step)
# ----------------------------------------------------------------------------------------------
def train_continuous(args, env, eval_env, writer, run_name, device, rng, ckpt):
    N, E = env.n_agents, env.num_envs
    scale = env.action_high
    in_dim = env.obs_dim + N  # [o_i, one-hot i]: one set of networks for both agents
    policy = GaussianPolicy(in_dim, args.hidden_dim, scale).to(device)
    q_net = mlp(in_dim + 1, args.hidden_dim, 1).to(device)  # Q_i(tau_i, u_i)
    v_net = mlp(in_dim, args.hidden_dim, 1).to(device)  # V_i(tau_i)
    mixer = FSVMixer(env.state_dim, N, N, args).to(device)
    q_params = list(q_net.parameters()) + list(mixer.parameters())
    q_optimizer = torch.optim.Adam(q_params, lr=args.learning_rate, fused=True)
    log_alpha = torch.tensor(float(np.log(args.alpha_init)), device=device, requires_grad=True)
    actor_optimizer = torch.optim.Adam([  # V_i, pi_i and alpha step together after each Q step
        {"params": v_net.parameters(), "lr": args.learning_rate},
        {"params": policy.parameters(), "lr": args.policy_lr},
        {"params": [log_alpha], "lr": args.alpha_lr}], fused=True)
    target_entropy = args.target_entropy if args.target_entropy is not None else -1.0  # -dim(u_i)
    nets = {"policy": policy, "q_net": q_net, "v_net": v_net, "mixer": mixer,
            "q_optimizer": q_optimizer, "actor_optimizer": actor_optimizer}

    cap = args.buffer_size
    buf = {"state": np.zeros((cap, env.state_dim), np.float32),
           "obs": np.zeros((cap, N, env.obs_dim), np.float32),
           "actions": np.zeros((cap, N), np.float32), "reward": np.zeros(cap, np.float32)}
    pos = size = global_step = updates = 0
    path = []  # the greedy joint action over training: [(step, u_1, u_2)]
    if ckpt is not None:
        try:
            for k, m in nets.items():
                m.load_state_dict(ckpt[k])
        except (RuntimeError, ValueError, KeyError):
            fail(f"{args.checkpoint} has other network sizes than these arguments")
        with torch.no_grad():
            log_alpha.copy_(ckpt["log_alpha"])
        global_step, updates = ckpt["counters"]
        if not args.eval_only:
            saved = ckpt.pop("buffer")  # popped: the loaded copy is freed once copied
            size = len(saved["reward"])
            if size > cap:
                fail(f"{args.checkpoint}'s buffer does not fit --buffer-size {cap}")
            for k in buf:
                buf[k][:size] = saved[k]
            pos = ckpt["buffer_pos"] % cap
            path = list(ckpt["path"])
            set_rng_states(ckpt["rng"], rng)

    ids = torch.eye(N, device=device)

    def inputs(obs):  # [B, N, o] -> [B, N, o + N]
        return torch.cat([obs, ids.expand(obs.shape[0], N, N)], -1)

    def current_alpha():
        return log_alpha.exp().item() if args.autotune else alpha_schedule(global_step, args)

    def run_eval():
        obs, _, _ = eval_env.reset()
        with torch.no_grad():
            _, _, greedy = policy(inputs(torch.as_tensor(obs, device=device)))
        _, _, _, reward, _, info = eval_env.step(greedy.cpu().numpy())
        writer.add_scalar("eval/win_rate", info["won"].mean(), global_step)
        writer.add_scalar("eval/episodic_return", reward.mean(), global_step)
        u = greedy[0].cpu().numpy()
        print(f"eval at step {global_step:,}: win rate {info['won'].mean():.3f}, return {reward.mean():.2f} "
              f"(greedy joint action ({u[0]:.2f}, {u[1]:.2f}), alpha {current_alpha():.3f})", flush=True)
        return u, float(reward.mean())

    def checkpoint():
        if not args.save_model:
            return
        save_checkpoint(f"runs/{run_name}/checkpoint.pt", {
            "script": "fsv", "env": "mtq", "args": vars(args), "run_name": run_name,
            **{k: m.state_dict() for k, m in nets.items()}, "log_alpha": log_alpha.detach().cpu(),
            "buffer": {k: v[:size] for k, v in buf.items()}, "buffer_pos": pos,
            "counters": (global_step, updates), "path": path, "rng": rng_states(rng)})

    if args.eval_only:
        print(f"checkpoint {args.checkpoint}")
        run_eval()
        return {}

    next_eval = (global_step // args.eval_interval + 1) * args.eval_interval
    next_ckpt = (global_step // args.checkpoint_interval + 1) * args.checkpoint_interval
    start_time = time.time()
    progress = Progress(global_step, args.total_timesteps)
    obs, state, _ = env.reset()
    if global_step == 0:
        with torch.random.fork_rng(devices=[]):  # the policy's forward draws noise: training stays as before
            run_eval()
    while global_step < args.total_timesteps:
        obs_t = torch.as_tensor(obs, device=device)
        if global_step < args.learning_starts:  # uniform warm-up (maci's MTQ runs)
            actions = rng.uniform(-scale, scale, (E, N)).astype(np.float32)
        else:
            with torch.no_grad():
                actions = policy(inputs(obs_t))[0].cpu().numpy()
        next_obs, next_state, _, reward, _, info = env.step(actions)
        for e in range(E):
            buf["obs"][pos], buf["state"][pos], buf["actions"][pos], buf["reward"][pos] = (
                obs[e], state[e], actions[e], reward[e])
            pos, size = (pos + 1) % cap, min(size + 1, cap)
        obs, state = next_obs, next_state
        global_step += E
        writer.add_scalar("charts/episodic_return", reward.mean(), global_step)
        writer.add_scalar("charts/win_rate", info["won"].mean(), global_step)
        for e in range(E):
            progress.add_episode(info["won"][e], info["episode_return"][e])
        progress.tick(global_step, updates)
        if global_step < args.learning_starts:
            continue

        for _ in range(E):  # one update per episode, as in the discrete case
            idx = rng.integers(0, size, min(args.batch_size, size))
            b_obs = inputs(torch.as_tensor(buf["obs"][idx], device=device))  # [B, N, o + N]
            b_state = torch.as_tensor(buf["state"][idx], device=device)
            b_u = torch.as_tensor(buf["actions"][idx], device=device)  # [B, N]
            b_r = torch.as_tensor(buf["reward"][idx], device=device)
            alpha = current_alpha()

            # Eq. 16: one-step game, so Q_hat = r
            q = q_net(torch.cat([b_obs, b_u.unsqueeze(-1) / scale], -1)).squeeze(-1)  # [B, N]
            v = v_net(b_obs).squeeze(-1)  # [B, N]
            q_tot, lam = mixer(q, v, b_state, b_u / scale)
            q_loss = F.mse_loss(q_tot, b_r)
            q_optimizer.zero_grad()
            q_loss.backward()
            nn.utils.clip_grad_norm_(q_params, args.grad_norm_clip)
            q_optimizer.step()

            # Eq. 17, 18 and 34 on a fresh reparameterised u_i ~ pi_i, against the Q_i just updated.
            u_pi, logp, _ = policy(b_obs)
            q_pi = q_net(torch.cat([b_obs, u_pi.unsqueeze(-1) / scale], -1)).squeeze(-1)  # [B, N]
            v_loss = F.mse_loss(v, (q_pi - alpha * logp).detach())  # Eq. 17
            policy_loss = (alpha * logp - q_pi).mean()  # Eq. 18
            # Eq. 34: J(alpha) = E[-alpha log pi - alpha H-bar]
            alpha_loss = (log_alpha.exp() * (-logp.detach() - target_entropy)).mean()
            actor_optimizer.zero_grad()
            # q_net also receives gradients from Eq. 18 here; they are cleared before its next step
            (v_loss + policy_loss + (alpha_loss if args.autotune else 0)).backward()
            actor_optimizer.step()
            updates += 1

        with torch.no_grad():
            _, _, greedy = policy(inputs(obs_t[:1]))
        u = greedy[0].cpu().numpy()
        path.append((global_step, float(u[0]), float(u[1])))
        writer.add_scalar("mtq/action_1", u[0], global_step)
        writer.add_scalar("mtq/action_2", u[1], global_step)
        if updates % (20 * E) == E:  # after the first updates, then every 20 iterations
            writer.add_scalar("losses/q_tot_loss", q_loss.item(), global_step)
            writer.add_scalar("losses/v_loss", v_loss.item(), global_step)
            writer.add_scalar("losses/policy_loss", policy_loss.item(), global_step)
            writer.add_scalar("losses/lambda", lam.mean().item(), global_step)
            writer.add_scalar("losses/alpha", current_alpha(), global_step)
            writer.add_scalar("losses/entropy", -logp.mean().item(), global_step)
            writer.add_scalar("charts/SPS", progress.rate(global_step), global_step)
        if next_eval <= global_step < args.total_timesteps:  # the final one follows the loop
            run_eval()
            next_eval += args.eval_interval
        if next_ckpt <= global_step < args.total_timesteps:
            checkpoint()
            next_ckpt += args.checkpoint_interval

    progress.tick(global_step, updates, force=True)
    u, ret = run_eval()
    plot_path(path, f"runs/{run_name}/mtq_path.png")
    print(f"learning path: runs/{run_name}/mtq_path.png")
    checkpoint()
    if args.save_model:
        print(f"checkpoint: runs/{run_name}/checkpoint.pt")
    print(f"done: {global_step:,} env steps, {updates:,} updates, {time.time() - start_time:.0f} s")
    return {"u": u, "eval_return": ret, "path": path, "global_step": global_step, "updates": updates}


def plot_path(path, filename):
    """The MTQ reward surface (games.mtq_reward) with the greedy joint action's path over training."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-10, 10, 201)
    a1, a2 = np.meshgrid(grid, grid, indexing="ij")
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    cs = ax.contourf(a1, a2, games.mtq_reward(a1, a2), levels=np.linspace(-60, 10, 29), extend="min",
                     cmap="viridis")
    fig.colorbar(cs, label="reward")
    if path:
        p = np.array(path)
        ax.plot(p[:, 1], p[:, 2], "w.-", ms=2, lw=0.8, label="greedy joint action")
        ax.plot(p[-1, 1], p[-1, 2], "r*", ms=12, label="final")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("u_1")
    ax.set_ylabel("u_2")
    ax.set_title("FSV on Max of Two Quadratics")
    fig.tight_layout()
    fig.savefig(filename, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
def validate(args):
    """Every argument is checked before anything is written: one line, exit code 2."""
    if args.env not in ENV_DEFAULTS:
        fail(f"unknown env {args.env!r}; choose smac, matrix or mtq")
    for k, v in ENV_DEFAULTS[args.env].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.alpha_anneal_steps is None:
        args.alpha_anneal_steps = args.total_timesteps
    for f in fields(Args):  # NaN passes every comparison below: reject it (and inf) first
        value = getattr(args, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            fail(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
    if args.alpha_init <= 0 or args.alpha_final <= 0:
        fail(f"alpha must be > 0, got --alpha-init {args.alpha_init} --alpha-final {args.alpha_final}")
    positive = ["num_envs", "total_timesteps", "eval_interval", "eval_episodes", "checkpoint_interval",
                "alpha_anneal_steps", "buffer_size", "batch_size", "target_update_interval", "video_interval",
                "rnn_hidden_dim", "hidden_dim", "lambda_hidden", "n_heads", "attention_dim"]
    for k in positive:
        if getattr(args, k) < 1:
            fail(f"--{k.replace('_', '-')} must be >= 1, got {getattr(args, k)}")
    for k in ["learning_rate", "policy_lr", "alpha_lr", "grad_norm_clip", "lambda_logit_bound"]:
        if not getattr(args, k) > 0:
            fail(f"--{k.replace('_', '-')} must be > 0, got {getattr(args, k)}")
    if args.hyper_hidden < 0 or args.learning_starts < 0:
        fail("--hyper-hidden and --learning-starts must be >= 0")
    if not 0 <= args.gamma <= 1 or not 0 <= args.epsilon <= 1:
        fail(f"--gamma and --epsilon must lie in [0, 1], got {args.gamma}, {args.epsilon}")
    if args.batch_size > args.buffer_size:
        fail(f"--batch-size {args.batch_size} exceeds --buffer-size {args.buffer_size}")
    if args.capture_video and args.env != "smac":
        fail("--capture-video needs a StarCraft map (--env smac)")
    if args.eval_only and args.checkpoint is None:
        fail("--eval-only needs --checkpoint")
    if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
        fail(f"no checkpoint file {args.checkpoint}")
    if args.track:
        try:
            import wandb  # noqa: F401
        except ImportError:
            fail("--track needs wandb: pip install wandb")


def make_envs(args, seed, on_fail):
    """Training envs seeded from `seed`, evaluation envs from `seed + 10_000`."""
    if args.env == "matrix":
        return games.MatrixGame(args.num_envs), games.MatrixGame(args.num_envs)
    if args.env == "mtq":
        return games.MaxOfTwoQuadratics(args.num_envs), games.MaxOfTwoQuadratics(args.num_envs)
    try:
        env = games.make_starcraft(args.map, args.num_envs, seed, args.backend)
        eval_env = games.make_starcraft(args.map, args.num_envs, seed + 10_000, args.backend)
    except (ValueError, RuntimeError, ImportError) as e:
        on_fail()
        fail(str(e))
    print(f"StarCraft backend: {env.backend} (map {args.map})", flush=True)
    return env, eval_env


def env_args(env="smac", **kw) -> Args:
    """Args with the defaults of `env` (ENV_DEFAULTS), then kw: what the command line gives."""
    return Args(**{**ENV_DEFAULTS.get(env, {}), "env": env, **kw})


def parse_args(argv=None) -> Args:
    """Two passes: the first finds --env and --checkpoint, whose defaults (ENV_DEFAULTS, or the
    checkpoint's own settings) become those of the second, so a resumed or evaluated run keeps
    them, --autotune is a plain flag, and flags given on the command line still win."""
    first = tyro.cli(Args, args=argv)
    default = env_args(first.env)
    if first.checkpoint is not None and os.path.isfile(first.checkpoint):  # a missing file: validate()
        saved = {k: v for k, v in load_checkpoint(first.checkpoint)["args"].items() if k in Args.__dataclass_fields__}
        default = Args(**{**saved, "checkpoint": first.checkpoint, "eval_only": False})
    return tyro.cli(Args, args=argv, default=default)


def main(args: Args) -> dict:
    validate(args)
    ckpt = load_checkpoint(args.checkpoint) if args.checkpoint is not None else None
    env_id = args.map if args.env == "smac" else args.env
    if ckpt is not None and ckpt["env"] != env_id:
        fail(f"{args.checkpoint} was trained on {ckpt['env']}, not {env_id}")
    step, updates = ckpt["counters"][:2] if ckpt is not None else (0, 0)
    remove_run_dir = lambda: None  # noqa: E731
    if args.eval_only:
        run_name = ckpt["run_name"]
    elif ckpt is not None:
        if step >= args.total_timesteps:
            print(f"nothing to do: {ckpt['run_name']} is at step {step:,} >= --total-timesteps "
                  f"{args.total_timesteps:,}")
            return {"run_name": ckpt["run_name"], "global_step": step, "updates": updates}
        run_name, _ = make_run_dir(ckpt["run_name"], resume=True)
        print(f"resuming {run_name} at step {step:,} ({updates:,} updates)", flush=True)
    else:
        run_name, remove_run_dir = make_run_dir(f"{env_id}__{args.exp_name}__{args.seed}__{int(time.time())}",
                                                resume=False)
        print(f"run directory: runs/{run_name}", flush=True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(1)  # small networks: one thread is fastest on a CPU
    rng = np.random.default_rng(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    # a resumed run gets fresh env streams rather than a replay of the first episodes
    env_seed = args.seed + (step if ckpt is not None and not args.eval_only else 0)
    env, eval_env = make_envs(args, env_seed, remove_run_dir)

    if args.track and not args.eval_only:
        import wandb
        wandb.init(project=args.wandb_project_name, sync_tensorboard=True, config=vars(args),
                   name=run_name, monitor_gym=False, save_code=True)
    if args.eval_only:
        writer = NullWriter()
    else:
        # A checkpoint at step S is written after everything logged at steps <= S (its evaluation
        # included), so a resumed run drops what the interrupted process logged later.
        writer = SummaryWriter(f"runs/{run_name}", purge_step=None if ckpt is None else step + 1)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n%s" % (
        "\n".join([f"|{key}|{value}|" for key, value in vars(args).items()])))
    train = train_continuous if args.env == "mtq" else train_discrete
    result = train(args, env, eval_env, writer, run_name, device, rng, ckpt)
    env.close()
    eval_env.close()
    writer.close()
    result["run_name"] = run_name
    return result


if __name__ == "__main__":
    main(parse_args())
