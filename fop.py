# FOP: Factorizing Optimal Joint Policy of Maximum-Entropy MARL (Zhang et al., ICML 2021): factorised soft actor-critic. README section "fop.py".
"""FOP: individual soft policies pi_i whose product is the optimal joint maximum-entropy policy (IGO, Sec. 3), learned
through the factorisation Q_jt = sum_i lambda_i [Q_i - V_i] + V_jt (Eq. 7, Sec. 4.3), a soft TD target (Eq. 9),
individual soft values (Eq. 6 in closed form for discrete actions, V-networks trained by Eq. 10 for continuous ones),
and the individual policy loss Eq. 11, in the order of Algorithm 1.

    python fop.py --map 3m                    # SMAC map (SMAX unless StarCraft II is installed)
    python fop.py --env matrix                # Table 1: prints Q_1, Q_2, Q_jt and the greedy joint action
    python fop.py --env mtq                   # Fig. 2: continuous actions; saves runs/<run>/mtq_path.png
    python fop.py --checkpoint runs/<run>/checkpoint.pt                # resume an interrupted run
    python fop.py --checkpoint runs/<run>/checkpoint.pt --eval-only    # evaluate a checkpoint
    python fop.py --map 3m --capture-video    # + a GIF of one evaluation episode per evaluation in runs/<run>/videos

Variants on SMAC maps, by what they are (README "fop.py", benchmarks/fop_results.md):
  * the defaults, "paper temperatures + authors' mixer": the paper's per-agent alpha_i, summed log pi_jt, GRU critics
    and softmax over the legal actions, with the authors' code's weight network and mixer gradient dQ_jt/dQ_i = 1 (a
    hybrid: the paper gives no weight network; --paper-gradient for its formula read literally).
  * "authors' code": --single-alpha --entropy-mean --no-critic-history --epsilon-floor.
  * "authors' code + attention weights": the same plus --lambda-attention-bound 1.
  * any of them + --lambda-normalise: lambda_i divided by its mean over the agents (alpha_i / alpha stays O(1)).

Where this script departs from the paper or from the authors' code (liyheng/FOP):
  * Individual temperatures: alpha_i from the weight network by Sec. 4.3's formula (paper), estimated per agent as a
    ratio of batch sums with one joint action u ~ pi_jt, and updated after the networks (Algorithm 1, line 12). The
    authors' code uses the team alpha everywhere: --single-alpha. Nothing fixes the scale of lambda, so alpha_i / alpha
    drifts with it (1.6-4.1 on SMAX 3m); --lambda-normalise (ours) divides lambda_i by its mean over the agents.
  * Entropy of the joint policy: log pi_jt = sum_i log pi_i (paper); the authors' code takes the mean over agents:
    --entropy-mean.
  * Q_i(tau_i, u_i) is a GRU over the agent's history (paper); the authors' critic is an MLP on (o_i, id):
    --no-critic-history.
  * pi_i is a softmax over the legal actions (paper); the authors' code mixes an epsilon floor (1 -> 0.05 over 50k
    steps) into the policy used both for acting and in the losses: --epsilon-floor (it also replaces the sample by a
    random action with probability epsilon; not done here).
  * V_i = alpha_i logsumexp(Q_i / alpha_i) over the legal actions (Eq. 6; the authors' code sums over all actions).
    For discrete actions this is the exact minimiser of Eq. 10, so no V-network is trained; MTQ trains the V-networks
    of Eq. 10.
  * Mixer (the authors' code; the paper gives none): lambda_i = sum_k |key_k(s)| sigmoid(agent_k(s))_i
    sigmoid(action_k(s, u))_i (--lambda-attention-bound c > 0: sum_k exp(c tanh(attention logit / c)) instead) and
    V_jt = sum_i V_i + V_phi(s); gradients as the authors' code: dQ_jt/dQ_i = 1, lambda learns through the detached
    advantages, none reaches V_i (paper: "will not backpropagate to individual V-networks"). The paper's formula read
    literally sends dQ_jt/dQ_i = lambda_i: --paper-gradient.
  * Eq. 9 as a soft TD(lambda=0.8) return over whole episodes (the authors' TD(lambda)), with the entropy bonus of
    every bootstrap and every later stored action inside the recursion; the authors' code subtracts alpha mean_i
    log pi_i once, outside it. The bootstrap joint action u' ~ pi_jt is one sample (paper and authors' code); clipped
    double Q: two critic/mixer pairs (authors' code).
  * Time-outs are terminal (as the authors' code with SMAC's continuing_episode False): the env does not return the
    last observation.
  * Batched envs: whole episodes go to the buffer as they end; each ended episode pays `--updates-per-episode`
    updates of `--batch-size` episodes (authors' code: one update per episode); targets are copied every 200 updates
    (authors' code: every 200 episodes, at one update each).
  * MTQ (no code from the authors): tanh-squashed Gaussian policies starting at (0, 0), MLP Q_i(o_i, u_i) and
    V_i(o_i), rewards x 0.1 (paper); alpha 1 -> 0.01 over the first 10k of 20k steps and 2 updates of 128 episodes per
    32 episodes (ours). While alpha anneals (the first 10k steps) the agents act uniformly in [-10, 10] (--explore 1
    --explore-steps 10000, ours; the paper's Appendix D.1 is not in our text), so the critics see the narrow optimum
    at (5, 5); then they act by pi_i (Algorithm 1), and with the 5,000-episode buffer the data become their own, so
    that each Q_i turns from the reward averaged over the other agent's uniform action (a VDN-like fit, maximal near
    u_i = 4.1) into the reward along the other agent's policy, which IGO needs. lambda_i is normalised to mean 1 over
    the agents (--lambda-normalise, ours). The individual critics' argmax ends within 0.5 of (5, 5) in 16 of 20 seeds
    at the default update budget and 15 of 20 at 4x it (the other seeds at (-5, -5)); uniform actions throughout
    (the previous default) gave 5/5 at 1x but 0/5 at 4x in a 5-seed screen, and the policy's own samples from the
    start (--explore 0, with the previous defaults) reached (-5, -5) in 16 of 20 seeds (benchmarks/fop_results.md,
    benchmarks/fop_toys.py --env mtq).
  * Matrix game (no code from the authors): alpha 1 -> 0.01 over 10k steps (paper Table 2); 4 updates per 32
    episodes (ours). Its weight network is bounded attention (--lambda-attention-bound 1, fsv.py's; the paper gives no
    architecture) with the team alpha (--single-alpha, authors' code), and the agents act uniformly at random while
    training (--explore 1, the QTRAN / FSV matrix-game protocol; the losses are the paper's, and the one-step target
    is the reward, so off-policy data biases nothing): 10 of 10 seeds reach (A, A) and Q_jt reproduces every cell of
    Table 1b within 0.52. Acting by pi_i (--explore 0) also reaches (A, A) in 10 of 10, but the cells it stops
    visiting drift by up to 1.84; the authors' weights or the per-agent alpha_i miss (A, A) in most seeds
    (benchmarks/fop_results.md). On SMAX 3m (sweep D, 3 seeds, current code) these weights with the authors' flags
    reach 0.375 at 500k env steps, the defaults 0.948 [0.906, 0.969] (benchmarks/fop_results.md).
  * SMAX (jaxmarl) plays StarCraft unless SC2 is installed: numbers are not comparable with published SMAC ones.
"""

import copy
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

import games


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """sets torch.backends.cudnn.deterministic"""
    cuda: bool = True
    """use CUDA when available"""
    track: bool = False
    """log to Weights & Biases"""
    wandb_project_name: str = "marl-papers"
    """the wandb project name"""
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
    """smac (a SMAC map), matrix (the matrix game of Table 1) or mtq (Max of Two Quadratics, Fig. 2)"""
    map: str = "3m"
    """SMAC map (with --env smac), a key of games.SMAC_MAPS (an unknown name lists them all): 3m, 8m, 25m, 5m_vs_6m,
    8m_vs_9m, 2s3z, 3s5z, 3s_vs_5z, 6h_vs_8z, corridor, ...; SMAX plays those in games.SMAX_MAPS (with
    smacv2_5_units, smacv2_10_units, smacv2_20_units: SMACv2 on SMAX), the others (MMM, MMM2, 1c3s5z, protoss_5_vs_5,
    ...) need StarCraft II"""
    backend: str = "auto"
    """StarCraft backend: auto (SC2 if installed, else SMAX), smax or sc2"""
    num_envs: int = 8
    """parallel environments (also the number of evaluation environments)"""
    total_timesteps: int = 2_050_000
    """environment steps, one per env per step (authors' code: 2.05M; matrix: 10k steps, paper Sec. 5.1; mtq: 20k,
    paper Fig. 2b)"""
    eval_interval: int = 10_000
    """evaluate every this many env steps (authors' code: 10k)"""
    eval_episodes: int = 32
    """greedy evaluation episodes (authors' code: 32)"""
    checkpoint_interval: int = 100_000
    """write a checkpoint every this many env steps"""
    log_interval: int = 1_000
    """log losses and SPS every this many env steps"""

    gamma: float = 0.99
    """discount gamma (authors' code: 0.99)"""
    td_lambda: float = 0.8
    """lambda of the TD(lambda) soft target built on Eq. 9 (authors' code: 0.8)"""
    alpha_start: float = 0.5
    """team temperature alpha at step 0 (authors' code: 0.5; matrix: 1, paper Table 2; mtq: 1)"""
    alpha_end: float = 0.05
    """team temperature after the anneal (authors' code: 0.05; matrix: 0.01, paper Table 2 (d) = Table 1; mtq: 0.01)"""
    alpha_anneal_steps: int = 90_000
    """env steps of the linear anneal (authors' code: max(0.05, 0.5 - t/2e5) reaches 0.05 at 90k; matrix: 10k, paper
    Table 2)"""
    autotune: bool = False
    """tune the team alpha as SAC does (paper Sec. 4.3) instead of annealing it"""
    target_entropy_scale: float = 0.2
    """--autotune target entropy per agent: this fraction of log |legal actions| (ours; the paper gives none)"""
    single_alpha: bool = False
    """alpha_i = alpha for every agent (authors' code); default: alpha_i from the weight network (paper Sec. 4.3)"""
    lambda_normalise: bool = False
    """divide lambda_i by its mean over the agents (per joint action), so that mean_i lambda_i = 1 and alpha_i / alpha
    stays O(1) (ours; on by default for mtq); the value of Q_jt is still Eq. 7 with these weights; default: lambda as
    the network gives it"""
    entropy_mean: bool = False
    """the target's entropy term with the mean over agents of log pi_i (authors' code); default: the sum, log pi_jt
    (paper)"""
    paper_gradient: bool = False
    """gradient of Q_jt into Q_i through lambda_i (the paper's formula read literally); default: dQ_jt/dQ_i = 1
    (authors' code)"""
    critic_history: bool = True
    """Q_i(tau_i, .) a GRU over (obs, last action, id) (paper); --no-critic-history: MLP on (obs, id) (authors' code)"""
    epsilon_floor: bool = False
    """mix epsilon-uniform into pi_i, epsilon 1 -> 0.05 over 50k steps, for acting and losses (authors' code)"""
    explore: float = 0.0
    """probability that an agent acts uniformly at random instead of sampling pi_i, while training only; the losses
    are unchanged (ours; mtq: 1, see the module docstring)"""
    explore_steps: Optional[int] = None
    """--explore applies during the first this many env steps, then the agents act by pi_i alone (Algorithm 1,
    line 4); None: throughout (mtq: 10000)"""
    reward_scale: float = 1.0
    """reward multiplier (mtq: 0.1, paper Sec. 5.1)"""
    hidden_dim: int = 64
    """hidden units of the policy and individual critics (authors' code: 64)"""
    mixing_embed_dim: int = 32
    """hidden units of V_phi(s) in the mixer (authors' code: 32)"""
    n_heads: int = 4
    """heads of the weight network lambda (authors' code: 4)"""
    lambda_attention_bound: float = 0.0
    """> 0: the weight network is bounded attention, lambda_i = sum_k exp(c tanh(logit_k,i / c)) with c this bound
    (fsv.py's, ours; matrix: 1); 0: the authors' code's QPLEX-style weights"""
    lr: float = 5e-4
    """policy learning rate, RMSprop (authors' code: 5e-4)"""
    critic_lr: float = 5e-4
    """critics, mixers (and mtq V-networks) learning rate, RMSprop (authors' code: 5e-4)"""
    grad_norm_clip: float = 10.0
    """gradient norm clip (authors' code: 10)"""
    buffer_size: int = 5_000
    """replay capacity in episodes (authors' code: 5000)"""
    batch_size: int = 32
    """episodes per update (authors' code: 32)"""
    learning_starts: int = 100
    """episodes in the buffer before updates start (authors' code: 100)"""
    updates_per_episode: float = 1.0
    """updates per collected episode (authors' code: 1)"""
    target_update_interval: int = 200
    """updates between hard copies to the target networks (authors' code: 200 episodes at one update each)"""


# Defaults that differ per game (the sources are in the Args docstrings). The matrix game and MTQ are one-step games
# with a constant observation: small batches of many envs, and few updates, are enough.
ENV_DEFAULTS = {
    "smac": {},
    "matrix": dict(total_timesteps=10_000, eval_interval=1_000, alpha_start=1.0, alpha_end=0.01,
                   alpha_anneal_steps=10_000, num_envs=32, updates_per_episode=0.125, checkpoint_interval=10_000,
                   lambda_attention_bound=1.0, single_alpha=True, explore=1.0),
    "mtq": dict(total_timesteps=20_000, eval_interval=500, alpha_start=1.0, alpha_end=0.01, alpha_anneal_steps=10_000,
                num_envs=32, updates_per_episode=0.0625, batch_size=128, learning_starts=256, reward_scale=0.1,
                checkpoint_interval=20_000, log_interval=500, explore=1.0, explore_steps=10_000,
                lambda_normalise=True),
}


HELP = __doc__[: __doc__.index("Where this script departs")].strip()  # --help: the commands and the variants
PROGRESS_SECONDS = 30
"""a progress line at least this often (seconds of wall time)"""


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def hms(seconds):
    """H:MM:SS, hours unbounded."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(step, total, sps, updates, wins, returns, eta):
    """The console's progress line (the same in all four scripts); wins, returns: training episodes since the last."""
    train = (f"train win rate {np.mean(wins):.2f}, return {np.mean(returns):.2f}" if len(wins)
             else "train win rate n/a, return n/a")
    return (f"step {step:,}/{total:,} ({100 * step / total:.0f}%) | {sps:.1f} env steps/s | {updates:,} updates | "
            f"{train} | ETA {'n/a' if eta is None else hms(max(0.0, eta))}")


def eval_line(step, win, ret, episodes):
    return f"eval at step {step:,}: win rate {win:.3f}, return {ret:.2f} ({episodes} episodes, greedy)"


class Progress:
    """Prints progress_line every PROGRESS_SECONDS (tick() after every env step) and at the end (tick(force=True)).
    env steps/s and the ETA use the interval since the previous line; add_episode() collects the training episodes
    finished in it."""

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
    """Create runs/{run_name} before anything expensive and check that it can be written (else one line, exit 2). A
    new run gets a directory of its own: os.makedirs is atomic, so when the name is taken (two runs started in the
    same second) it tries run_name_2, _3, ...; a resumed run reuses its checkpoint's. Returns the name used and a
    function that removes what was created here (for a failure before training starts)."""
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


# ---------------------------------------------------------------------------------------------------------------------
# Networks (Sec. 4.3, Fig. 1): individual policies pi_i, individual soft Q-networks Q_i (two, for clipped double Q),
# and per critic a mixer holding the weight network lambda(tau, u) and the joint soft V-network.
# ---------------------------------------------------------------------------------------------------------------------
class AgentGRU(nn.Module):
    """fc -> ReLU -> GRU -> fc over one agent's history tau_i = (o_i, last action, agent id), shared by the agents:
    the policy pi_i(.|tau_i) (logits; the authors' RNNAgent) and the individual soft Q-network Q_i(tau_i, .) (paper)."""

    def __init__(self, in_dim, hidden, out_dim):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x, h=None):  # x [B, T, N, in], h [1, B*N, H] -> [B, T, N, out], h
        B, T, N, _ = x.shape
        z = F.relu(self.fc1(x)).transpose(1, 2).reshape(B * N, T, -1)  # [B*N, T, H]
        z, h = self.gru(z, h)
        return self.fc2(z).reshape(B, N, T, -1).transpose(1, 2), h


class FeedForwardQ(nn.Module):
    """Q_i(o_i, .) from the current observation and agent id only (the authors' FOPCritic; --no-critic-history)."""

    def __init__(self, in_dim, hidden, out_dim):
        super().__init__()
        self.net = mlp(in_dim, hidden, out_dim)

    def forward(self, x, h=None):  # [B, T, N, in] -> [B, T, N, out], None
        return self.net(x), None


def mlp(in_dim, hidden, out_dim):
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, out_dim))


class Mixer(nn.Module):
    """Q_jt(tau, u) = sum_i lambda_i(tau, u) [Q_i(tau_i, u_i) - V_i(tau_i)] + V_jt(tau)   (Sec. 4.3; Eq. 7 with the
    learned weights). lambda_i = sum_k |key_k(s)| sigmoid(agent_k(s))_i sigmoid(action_k(s, u))_i: K heads of
    positive weights from the state and the joint action (authors' code); with bound c > 0, bounded attention instead
    (attention_weights). V_jt = sum_i V_i + V_phi(s) (authors' code)."""

    def __init__(self, state_dim, n_agents, joint_action_dim, embed_dim, n_heads, paper_gradient=False, bound=0.0,
                 normalise=False):
        super().__init__()
        self.shape, self.paper_gradient, self.bound = (n_heads, n_agents), paper_gradient, bound
        self.normalise = normalise
        self.v_phi = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))
        if bound > 0:  # --lambda-attention-bound: lambda from bounded attention logits (attention_weights)
            self.embed_s = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
            self.embed_u = nn.Sequential(nn.Linear(joint_action_dim + n_agents, embed_dim), nn.ReLU(),
                                         nn.Linear(embed_dim, embed_dim))
            self.w_q = nn.Linear(embed_dim, n_heads * embed_dim, bias=False)
            self.w_k = nn.Linear(embed_dim, n_heads * embed_dim, bias=False)
            return
        self.key = nn.Linear(state_dim, n_heads)
        self.agent = nn.Linear(state_dim, n_heads * n_agents)
        self.action = nn.Linear(state_dim + joint_action_dim, n_heads * n_agents)

    def attention_weights(self, state, joint_action):  # [..., S], [..., U] -> lambda [..., N] in [K/e^c, K e^c]
        """lambda_i = sum_k exp(c tanh(q_k(s) . key_k(u, i) / (c sqrt(d)))): a query from the state, a key per agent
        from the joint action and the agent's id (fsv.py's weight network, FSV Eq. 14-15 with the bound)."""
        (K, N), d = self.shape, self.w_q.out_features // self.shape[0]
        ids = torch.eye(N, device=state.device).expand(*joint_action.shape[:-1], N, N)
        e_u = self.embed_u(torch.cat([joint_action.unsqueeze(-2).expand(*ids.shape[:-1], -1), ids], -1))
        query = self.w_q(self.embed_s(state)).unflatten(-1, (K, d)).unsqueeze(-3)                     # [..., 1, K, d]
        key = self.w_k(e_u).unflatten(-1, (K, d))                                                     # [..., N, K, d]
        logits = (query * key).sum(-1) / d ** 0.5
        return (self.bound * torch.tanh(logits / self.bound)).exp().sum(-1)                           # [..., N]

    def weights(self, state, joint_action):  # [..., S], [..., U] -> lambda [..., N], every entry > 0
        if self.bound > 0:
            lam = self.attention_weights(state, joint_action)
        else:
            key = self.key(state).abs() + 1e-10                                                        # [..., K]
            agent = torch.sigmoid(self.agent(state)).unflatten(-1, self.shape)                         # [..., K, N]
            action = torch.sigmoid(self.action(torch.cat([state, joint_action], -1))).unflatten(-1, self.shape)
            lam = (key.unsqueeze(-1) * agent * action).sum(-2)                                         # [..., N]
        # --lambda-normalise: mean_i lambda_i = 1 for every (tau, u), so alpha_i = alpha E[A_i] / E[lambda_i A_i]
        # (Sec. 4.3) stays O(alpha) whatever scale the network drifts to; lambda_i > 0 keeps Eq. 7's IGO
        return lam / lam.mean(-1, keepdim=True) if self.normalise else lam

    def forward(self, q, v, state, joint_action):  # Q_i(tau_i, u_i), V_i(tau_i): [..., N] -> Q_jt [...]
        lam, v = self.weights(state, joint_action), v.detach()  # nothing flows into V_i (paper and authors' code)
        # Value: sum_i lambda_i (Q_i - V_i) + sum_i V_i + V_phi(s). Gradients: C's dQ_jt/dQ_i = 1 with lambda learning
        # through the detached advantages; --paper-gradient: dQ_jt/dQ_i = lambda_i, as Sec. 4.3's formula reads.
        if self.paper_gradient:
            return (lam * (q - v) + v).sum(-1) + self.v_phi(state).squeeze(-1)
        return ((lam - 1) * (q - v).detach() + q).sum(-1) + self.v_phi(state).squeeze(-1)


class GaussianPolicy(nn.Module):
    """pi_i(u_i|tau_i) for continuous actions (MTQ): a Gaussian squashed by tanh to [-bound, bound], as in SAC."""

    def __init__(self, in_dim, hidden, bound):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mean, self.log_std = nn.Linear(hidden, 1), nn.Linear(hidden, 1)
        nn.init.zeros_(self.mean.weight)  # the policies start at (0, 0) (Sec. 5.1)
        nn.init.zeros_(self.mean.bias)
        self.bound = bound

    def stats(self, x):  # [..., in] -> mean and log std of the Gaussian before the squash [..., 1]
        h = self.net(x)
        return self.mean(h), self.log_std(h).clamp(-5, 2)

    def log_prob(self, mu, log_std, z):  # log pi of u = bound tanh(z) [..., 1] -> [...]
        # Gaussian minus log |du/dz|, with log(1 - tanh^2 z) in a stable form
        log_det = math.log(self.bound) + 2 * (math.log(2) - z - F.softplus(-2 * z))
        return (torch.distributions.Normal(mu, log_std.exp()).log_prob(z) - log_det).squeeze(-1)

    def forward(self, x):  # [..., in] -> u [..., 1] (reparameterised sample), log pi(u) [...], greedy [..., 1]
        mu, log_std = self.stats(x)
        z = mu + log_std.exp() * torch.randn_like(mu)
        return self.bound * torch.tanh(z), self.log_prob(mu, log_std, z), self.bound * torch.tanh(mu)


# ---------------------------------------------------------------------------------------------------------------------
# Losses and the quantities they need, in the paper's order.
# ---------------------------------------------------------------------------------------------------------------------
def policy_probs(logits, avail, eps):
    """pi_i(.|tau_i): softmax over the legal actions; --epsilon-floor mixes in eps-uniform over them (authors' code)."""
    pi = torch.softmax(logits.masked_fill(avail == 0, -1e10), -1)
    if eps > 0:
        pi = (1 - eps) * pi + eps * avail / avail.sum(-1, keepdim=True)
    return pi


def soft_value(q, avail, alpha_i):
    """Eq. 6: V_i(tau_i) = alpha_i log sum_{u in U_i} exp(Q_i(tau_i, u) / alpha_i) over the legal actions U_i. It is
    also the exact minimiser of Eq. 10 when pi_i is the Boltzmann policy of Eq. 6.
    q, avail [..., N, A], alpha_i [N] -> [..., N]"""
    logits = (q / alpha_i.unsqueeze(-1)).masked_fill(avail == 0, -float("inf"))
    return alpha_i * torch.logsumexp(logits, -1)


def soft_lambda_returns(reward, terminated, v_soft, entropy_bonus, gamma, lam):
    """The target of Eq. 9 as a soft TD(lambda) return over whole episodes, computed backwards:
        G_t = r_t + gamma (1 - d_t) [(1 - lam) V_jt(tau_{t+1}) + lam (G_{t+1} - alpha log pi_jt(u_{t+1}|tau_{t+1}))]
    with V_jt(tau) = Q^_jt(tau, u') - alpha log pi_jt(u'|tau), u' ~ pi_jt, the bootstrap of Eq. 9 (target networks),
    and entropy_bonus[:, t] = -alpha log pi_jt(u_t|tau_t) of the stored action. lam = 0 gives Eq. 9 exactly.
    All [B, T]; the last real step of every episode is terminal, so padding never leaks in."""
    ret = torch.zeros_like(reward)
    nxt = torch.zeros_like(reward[:, 0])
    for t in reversed(range(reward.shape[1])):
        boot = (1 - lam) * v_soft[:, t + 1] + lam * (nxt + entropy_bonus[:, t + 1]) if t + 1 < reward.shape[1] else 0
        ret[:, t] = reward[:, t] + gamma * (1 - terminated[:, t]) * boot
        nxt = ret[:, t]
    return ret


def policy_loss(pi, log_pi, q, alpha_i, mask):
    """Eq. 11: J(psi_i) = E_{tau_i ~ D, u_i ~ pi_i}[alpha_i log pi_i(u_i|tau_i) - Q_i(tau_i, u_i)], the expectation over
    u_i exact (a sum over the legal actions; illegal ones have pi_i = 0). pi, log_pi, q [B, T, N, A], mask [B, T]."""
    per_agent = (pi * (alpha_i.unsqueeze(-1) * log_pi - q)).sum(-1)  # [B, T, N]
    return (per_agent.mean(-1) * mask).sum() / mask.sum()


def individual_temperatures(adv, lam, mask):
    """Sec. 4.3: alpha_i = alpha E_{u_i ~ pi_i}[Q_i - V_i] / E_{u ~ pi_jt}[lambda_i(tau, u) (Q_i - V_i)], each
    expectation a sum over the batch with one joint action u ~ pi_jt. adv, lam [..., N], mask [...] -> alpha_i/alpha.
    With discrete actions V_i >= max Q_i, so every advantage is <= 0 and the ratio is an advantage-weighted mean of
    1 / lambda_i; with V-networks (MTQ) the signs can differ, and the clamp keeps the ratio in that range."""
    w = mask.unsqueeze(-1).expand_as(adv)
    dims = tuple(range(adv.dim() - 1))
    num, den = (adv * w).sum(dims), (lam * adv * w).sum(dims)
    lo = torch.where(w > 0, lam, torch.inf).amin(dims)
    hi = torch.where(w > 0, lam, -torch.inf).amax(dims)
    ratio = torch.where(den.abs() > 1e-8, num / den.where(den.abs() > 1e-8, 1.0), 2 / (lo + hi))
    return torch.minimum(torch.maximum(ratio, 1 / hi), 1 / lo)


def explore_probability(args, step):
    """--explore during the first --explore-steps env steps (all of them without it), then 0."""
    return args.explore if args.explore_steps is None or step < args.explore_steps else 0.0


def team_alpha(args, step):
    """The team temperature alpha, annealed linearly (authors' code: max(0.05, 0.5 - t / 2e5))."""
    frac = min(1.0, step / max(1, args.alpha_anneal_steps))
    return args.alpha_start + frac * (args.alpha_end - args.alpha_start)


def epsilon(args, step):
    """The authors' code's epsilon floor: 1 -> 0.05 linearly over 50k env steps (0 without --epsilon-floor)."""
    return max(0.05, 1.0 - 0.95 * step / 50_000) if args.epsilon_floor else 0.0


def agent_inputs(obs, last_action, n_actions):
    """(o_i, one-hot last action, one-hot agent id) per agent. obs [..., N, O], last_action [..., N] (-1: none) or None
    to leave it out -> [..., N, in]"""
    N = obs.shape[-2]
    parts = [obs]
    if last_action is not None:
        parts.append(F.one_hot(last_action + 1, n_actions + 1)[..., 1:].float())
    parts.append(torch.eye(N, device=obs.device).expand(*obs.shape[:-1], N))
    return torch.cat(parts, -1)


# ---------------------------------------------------------------------------------------------------------------------
# Episode replay buffer: whole episodes padded to the episode limit; `length` gives the mask. Padded steps have every
# action legal so that the soft values stay finite there.
# ---------------------------------------------------------------------------------------------------------------------
def episode_arrays(n, T, N, obs_dim, state_dim, A):
    return {"obs": np.zeros((n, T, N, obs_dim), np.float32), "state": np.zeros((n, T, state_dim), np.float32),
            "avail": np.ones((n, T, N, A), np.float32), "actions": np.zeros((n, T, N), np.int64),
            "reward": np.zeros((n, T), np.float32), "terminated": np.zeros((n, T), np.float32),
            "length": np.zeros(n, np.int64)}


def buffer_add(buf, staged, e):
    """Copy the episode env e just ended from the staging arrays into the ring buffer and clear its staging row."""
    pos = buf["pos"]
    for k, v in staged.items():
        buf[k][pos] = v[e]
        v[e] = 1 if k == "avail" else 0
    buf["pos"], buf["size"] = (pos + 1) % len(buf["length"]), min(buf["size"] + 1, len(buf["length"]))


BUFFER_KEYS = ("obs", "state", "avail", "actions", "reward", "terminated", "length")
MTQ_BUFFER_KEYS = ("obs", "state", "actions", "reward")


def buffer_state(buf, keys):
    """The filled rows of a ring buffer for a checkpoint, oldest first: rows pos..size-1, then 0..pos-1 (before the
    buffer is full, pos = size and the first part is empty). Tensors that share the arrays' memory, so writing copies
    nothing and only the filled part is written."""
    pos, size = buf["pos"], buf["size"]
    return {"size": size, **{k: (torch.from_numpy(buf[k][pos:size]), torch.from_numpy(buf[k][:pos])) for k in keys}}


def buffer_restore(buf, saved, keys):
    """Copy a checkpoint's buffer (buffer_state) into the preallocated arrays of buf: its newest min(size, capacity)
    rows, oldest first, at rows 0.. . Checkpoints of earlier versions hold the whole arrays with pos and size."""
    if "pos" in saved:  # the earlier format: every row of the arrays, ring position pos
        pos = saved["pos"]
        saved = {"size": saved["size"], **{k: (saved[k][pos:saved["size"]], saved[k][:pos]) for k in keys}}
    cap, n = len(buf[keys[0]]), saved["size"]
    m = min(n, cap)
    for k in keys:
        drop, at = n - m, 0  # the oldest n - m rows do not fit
        for part in saved[k]:
            part = np.asarray(part)
            cut = min(drop, len(part))
            part, drop = part[cut:], drop - cut
            buf[k][at:at + len(part)] = part
            at += len(part)
    buf["size"], buf["pos"] = m, m % cap


def buffer_sample(buf, batch_size, rng, device):
    """batch_size episodes, uniformly without replacement, cut to the longest one. Returns tensors [B, T, ...]."""
    idx = rng.choice(buf["size"], batch_size, replace=False)
    T = int(buf["length"][idx].max())
    b = {k: torch.as_tensor(buf[k][idx, :T], device=device) for k in ("obs", "state", "avail", "actions", "reward",
                                                                     "terminated")}
    b["mask"] = (torch.arange(T, device=device) < torch.as_tensor(buf["length"][idx], device=device)[:, None]).float()
    return b


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation: greedy and decentralised, every env plays a fixed quota of whole episodes.
# ---------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(policy, env, n_episodes, device):
    E, A = env.num_envs, env.n_actions
    quota = np.array([n_episodes // E + (e < n_episodes % E) for e in range(E)])
    obs, _, avail = env.reset()
    last, h = torch.full((E, env.n_agents), -1, device=device), None
    done_count, wins, returns = np.zeros(E, int), [], []
    while (done_count < quota).any():
        t_avail = torch.as_tensor(avail, device=device)
        logits, h = policy(agent_inputs(torch.as_tensor(obs, device=device), last, A)[:, None], h)
        actions = logits[:, 0].masked_fill(t_avail == 0, -torch.inf).argmax(-1)  # [E, N]
        obs, _, avail, _, done, info = env.step(actions.cpu().numpy())
        for e in np.flatnonzero(done & (done_count < quota)):
            wins.append(float(info["won"][e]))
            returns.append(float(info["episode_return"][e]))
        done_count += done
        d = torch.as_tensor(done, device=device)
        last = torch.where(d[:, None], -1, actions)
        h = h.view(1, E, -1, h.shape[-1]).masked_fill(d[None, :, None, None], 0).view_as(h)
    return float(np.mean(wins)), float(np.mean(returns))


@torch.no_grad()
def matrix_tables(policy, critics, mixers, alpha_i, device):
    """Q_1, Q_2 and Q_jt of the matrix game, as Table 1b: the min over the two critic/mixer pairs."""
    A = 3
    obs = torch.ones(1, 1, 2, 1, device=device)  # [B=1, T=1, N, O]
    x = agent_inputs(obs, torch.full((1, 1, 2), -1, device=device), A)
    x_q = x if isinstance(critics[0], AgentGRU) else agent_inputs(obs, None, A)
    joint = torch.cartesian_prod(torch.arange(A), torch.arange(A)).to(device)  # [9, N]: (u_1, u_2), u_1 major
    avail, state = torch.ones(A * A, 2, A, device=device), torch.ones(A * A, 1, device=device)
    q_i, q_jt = [], []
    for critic, mixer in zip(critics, mixers):
        q = critic(x_q)[0][0, 0]  # [N, A]
        q_i.append(q)
        q_taken = q.expand(A * A, 2, A).gather(-1, joint[..., None]).squeeze(-1)  # [9, N]
        q_jt.append(mixer(q_taken, soft_value(q.expand(A * A, 2, A), avail, alpha_i), state,
                          F.one_hot(joint, A).flatten(-2).float()))
    greedy = policy(x)[0][0, 0].argmax(-1)
    return (torch.min(*q_i).cpu().numpy(), torch.min(*q_jt).view(A, A).cpu().numpy(), tuple(greedy.tolist()))


def print_matrix_tables(q_i, q_jt, greedy):
    names = "ABC"
    print("Q_jt, rows: agent 1's action with Q_1, columns: agent 2's action with Q_2 (Table 1b)")
    print(" " * 10 + "".join(f"{f'{q_i[1, a]:.1f}({names[a]})':>10}" for a in range(3)))
    for a in range(3):
        print(f"{f'{q_i[0, a]:.1f}({names[a]})':>10}" + "".join(f"{q_jt[a, b]:>10.1f}" for b in range(3)))
    print(f"greedy joint action: ({names[greedy[0]]}, {names[greedy[1]]})")


# ---------------------------------------------------------------------------------------------------------------------
# Set-up shared by both trainers: arguments, seeding, run directory, checkpoints.
# ---------------------------------------------------------------------------------------------------------------------
def parse_args():
    """Two passes: the first finds --env and --checkpoint, which supply the defaults of the second, so that flags given
    on the command line win and a resumed run keeps its own settings."""
    first = tyro.cli(Args, description=HELP)
    if first.env not in ENV_DEFAULTS:
        fail(f"unknown --env {first.env!r}; choose smac, matrix or mtq")
    ckpt, default = None, Args(env=first.env, **ENV_DEFAULTS[first.env])
    if first.checkpoint is not None:
        ckpt = load_checkpoint(first.checkpoint)
        default = Args(**{**ckpt["args"], "checkpoint": first.checkpoint, "eval_only": False})
    args = tyro.cli(Args, default=default, description=HELP)
    return args, ckpt


def load_checkpoint(path):
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except OSError as e:  # missing, a directory, no permission
        fail(f"cannot read checkpoint {path}: {e.strerror or e}")
    except Exception:  # torch's zip reader, pickle: truncated or not a torch file at all
        fail(f"checkpoint {path} is truncated or not a torch file")
    if not isinstance(ckpt, dict) or ckpt.get("script") != "fop":
        fail(f"{path} is not a fop.py checkpoint (script: {ckpt.get('script') if isinstance(ckpt, dict) else None})")
    return ckpt


def validate(args, ckpt=None):
    for f in fields(Args):  # NaN passes every comparison below: reject it (and inf) first
        value = getattr(args, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            fail(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
    checks = [
        (args.env in ENV_DEFAULTS, f"unknown --env {args.env!r}; choose smac, matrix or mtq"),
        (args.env != "smac" or args.map in games.SMAC_MAPS,
         f"unknown map {args.map!r}; maps available: {', '.join(games.SMAC_MAPS)}"),
        (args.backend in ("auto", "smax", "sc2"), f"unknown --backend {args.backend!r}; choose auto, smax or sc2"),
        (args.alpha_start > 0 and args.alpha_end > 0,
         f"the temperature alpha must be > 0, got --alpha-start {args.alpha_start} --alpha-end {args.alpha_end}"),
        (args.buffer_size >= args.batch_size >= 1,
         f"--buffer-size ({args.buffer_size}) must hold at least one batch (--batch-size {args.batch_size} >= 1)"),
        (0 <= args.td_lambda <= 1 and 0 < args.gamma <= 1, "--td-lambda must be in [0, 1] and --gamma in (0, 1]"),
        (min(args.num_envs, args.total_timesteps, args.eval_interval, args.eval_episodes, args.checkpoint_interval,
             args.log_interval, args.target_update_interval, args.alpha_anneal_steps, args.hidden_dim,
             args.mixing_embed_dim, args.n_heads) >= 1,
         "--num-envs, --total-timesteps, intervals, --eval-episodes, --alpha-anneal-steps and sizes must be >= 1"),
        (args.lr > 0 and args.critic_lr > 0 and args.updates_per_episode >= 0 and args.learning_starts >= 0,
         "learning rates must be > 0, --updates-per-episode and --learning-starts >= 0"),
        (args.target_entropy_scale >= 0 and args.reward_scale > 0 and args.grad_norm_clip > 0,
         "--target-entropy-scale must be >= 0, --reward-scale and --grad-norm-clip > 0"),
        (0 <= args.explore <= 1, f"--explore must be in [0, 1], got {args.explore}"),
        (args.explore_steps is None or args.explore_steps >= 0, f"--explore-steps must be >= 0, got {args.explore_steps}"),
        (args.lambda_attention_bound >= 0, f"--lambda-attention-bound must be >= 0, got {args.lambda_attention_bound}"),
        (args.video_interval >= 1, f"--video-interval must be >= 1, got {args.video_interval}"),
        (not args.capture_video or args.env == "smac", "--capture-video needs a StarCraft map (--env smac)"),
        (not args.eval_only or args.checkpoint is not None, "--eval-only needs --checkpoint"),
        (ckpt is None or (ckpt["env"], ckpt["map"]) == (args.env, args.map),
         f"checkpoint {args.checkpoint} is for {ckpt and ckpt['env']} {ckpt and ckpt['map']}, "
         f"not {args.env} {args.map}"),
    ]
    for ok, msg in checks:
        if not ok:
            fail(msg)
    if args.track:
        try:
            import wandb  # noqa: F401
        except ImportError:
            fail("--track needs wandb: pip install wandb")


def setup(args):
    """Seeding and the device."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # small networks on a shared CPU: one thread is fastest (benchmarks/fop_results.md)
    return device, np.random.default_rng(args.seed)


def nothing_to_do(args, ckpt):
    """A resumed run already at --total-timesteps: say so (no evaluation, nothing written)."""
    if ckpt is None or ckpt["counters"]["global_step"] < args.total_timesteps:
        return False
    print(f"nothing to do: {ckpt['run_name']} is at step {ckpt['counters']['global_step']:,} >= --total-timesteps "
          f"{args.total_timesteps:,}")
    return True


def start_run(args, ckpt, env_id):
    """The run directory, created and checked before any env or network (make_run_dir). Returns its name and the
    function that removes it again."""
    if ckpt:
        run_name, remove = make_run_dir(ckpt["run_name"], resume=True)
        c = ckpt["counters"]
        print(f"resuming {run_name} at step {c['global_step']:,} ({c['updates']:,} updates)", flush=True)
    else:
        run_name, remove = make_run_dir(f"{env_id}__{args.exp_name}__{args.seed}__{int(time.time())}", resume=False)
        print(f"run directory: runs/{run_name}", flush=True)
    return run_name, remove


def open_writer(args, ckpt, run_name):
    """TensorBoard writer (and wandb). A checkpoint at step S is written after everything logged at steps <= S (the
    evaluation at S included), so a resumed run drops what the interrupted process logged later: purge_step S + 1.
    Checkpoints of earlier versions were written before step S's evaluation (their next_eval <= S): purge S too."""
    if args.track:
        import wandb
        wandb.init(project=args.wandb_project_name, sync_tensorboard=True, config=vars(args), name=run_name,
                   save_code=True)
    from torch.utils.tensorboard import SummaryWriter

    purge_step = None
    if ckpt:
        step = ckpt["counters"]["global_step"]
        purge_step = step if ckpt["counters"]["next_eval"] <= step else step + 1
    writer = SummaryWriter(f"runs/{run_name}", purge_step=purge_step)
    writer.add_text("hyperparameters",
                    "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))
    return writer


def save_video(eval_env, path):
    """env 0's recorded evaluation episode: a GIF on SMAX, a StarCraft II replay next to path on SC2."""
    try:
        return eval_env.save_replay(path)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}")


def save_checkpoint(path, args, run_name, modules, buf, counters, rng):
    """Every network and optimiser state, the filled part of the replay buffer (buffer_state), counters and RNG
    states; written atomically."""
    torch.save({"script": "fop", "env": args.env, "map": args.map, "args": asdict(args), "run_name": run_name,
                "modules": {k: m.state_dict() for k, m in modules.items()}, "buffer": buf, "counters": counters,
                "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                        "generator": rng.bit_generator.state}}, path + ".tmp")
    os.replace(path + ".tmp", path)


def restore(ckpt, modules, rng, device):
    try:
        for k, m in modules.items():
            m.load_state_dict(ckpt["modules"][k])
    except (RuntimeError, KeyError, ValueError) as e:
        fail(f"checkpoint {ckpt['run_name']} does not match these network flags ({type(e).__name__} in {k})")
    random.setstate(ckpt["rng"]["python"])
    np.random.set_state(ckpt["rng"]["numpy"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if ckpt["rng"]["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    rng.bit_generator.state = ckpt["rng"]["generator"]


def clip_step(optimizer, loss, params, clip):
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()


# ---------------------------------------------------------------------------------------------------------------------
# Discrete FOP: SMAC maps and the matrix game.
# ---------------------------------------------------------------------------------------------------------------------
def train(args, ckpt=None):
    """Train (or, with --eval-only, evaluate) on a SMAC map or the matrix game. Returns the final evaluation, plus the
    Q tables and greedy joint action for the matrix game."""
    device, rng = setup(args)
    c = copy.deepcopy(ckpt["counters"]) if ckpt else {
        "global_step": 0, "updates": 0, "episodes": 0, "credit": 0.0, "next_eval": 0,
        "next_ckpt": args.checkpoint_interval, "next_log": 0, "alpha_ratio": None, "log_alpha": None}
    env_id = args.map if args.env == "smac" else args.env
    if not args.eval_only and nothing_to_do(args, ckpt):
        return {"run_name": ckpt["run_name"], "global_step": c["global_step"], "updates": c["updates"]}
    run_name, remove_run_dir = (None, None) if args.eval_only else start_run(args, ckpt, env_id)
    try:  # a bad map leaves nothing behind
        if args.env == "matrix":
            eval_env, env = games.MatrixGame(args.num_envs), games.MatrixGame(args.num_envs)
        else:
            eval_env = games.make_starcraft(args.map, args.num_envs, args.seed + 10_000, args.backend)
            env = None if args.eval_only else \
                games.make_starcraft(args.map, args.num_envs, args.seed + c["episodes"], args.backend)
            print(f"StarCraft backend: {eval_env.backend}; map {args.map}", flush=True)
    except (ValueError, RuntimeError, ImportError) as e:
        if remove_run_dir:
            remove_run_dir()
        fail(str(e))
    E, N, A, T = args.num_envs, eval_env.n_agents, eval_env.n_actions, eval_env.episode_limit
    obs_dim, state_dim = eval_env.obs_dim, eval_env.state_dim

    policy = AgentGRU(obs_dim + A + N, args.hidden_dim, A).to(device)
    make_q = (lambda: AgentGRU(obs_dim + A + N, args.hidden_dim, A)) if args.critic_history else \
        (lambda: FeedForwardQ(obs_dim + N, args.hidden_dim, A))
    critics = nn.ModuleList([make_q(), make_q()]).to(device)
    mixers = nn.ModuleList([Mixer(state_dim, N, N * A, args.mixing_embed_dim, args.n_heads, args.paper_gradient,
                                  args.lambda_attention_bound, args.lambda_normalise)
                            for _ in range(2)]).to(device)
    target_critics, target_mixers = copy.deepcopy(critics), copy.deepcopy(mixers)
    policy_opt = torch.optim.RMSprop(policy.parameters(), lr=args.lr, alpha=0.99, eps=1e-5)
    critic_opts = [torch.optim.RMSprop(list(critics[j].parameters()) + list(mixers[j].parameters()), lr=args.critic_lr,
                                       alpha=0.99, eps=1e-5) for j in range(2)]
    log_alpha = torch.tensor(math.log(args.alpha_start), device=device, requires_grad=True)
    alpha_opt = torch.optim.Adam([log_alpha], lr=args.lr)
    modules = {"policy": policy, "critics": critics, "mixers": mixers, "target_critics": target_critics,
               "target_mixers": target_mixers, "policy_opt": policy_opt, "critic_opt_1": critic_opts[0],
               "critic_opt_2": critic_opts[1], "alpha_opt": alpha_opt}
    alpha_ratio = torch.ones(N, device=device)  # alpha_i / alpha (Sec. 4.3), updated after every update
    if ckpt:
        restore(ckpt, modules, rng, device)
        alpha_ratio = c["alpha_ratio"].to(device)
        with torch.no_grad():
            log_alpha.copy_(c["log_alpha"])

    if args.eval_only:
        if args.capture_video:
            eval_env.start_recording()
        win, ret = evaluate(policy, eval_env, args.eval_episodes, device)
        print(f"checkpoint {args.checkpoint}", flush=True)
        print(eval_line(c["global_step"], win, ret, args.eval_episodes), flush=True)
        if args.capture_video:
            save_video(eval_env, os.path.join(os.path.dirname(args.checkpoint), "videos",
                                              f"step_{c['global_step']}.gif"))
        result = {"win_rate": win, "episodic_return": ret}
        if args.env == "matrix":
            alpha = log_alpha.exp().item() if args.autotune else team_alpha(args, c["global_step"])
            q_i, q_jt, greedy = matrix_tables(policy, critics, mixers, alpha_ratio * alpha, device)
            print_matrix_tables(q_i, q_jt, greedy)
            result.update(q_i=q_i, q_jt=q_jt, greedy=greedy)
        return result

    buf = {**episode_arrays(args.buffer_size, T, N, obs_dim, state_dim, A), "pos": 0, "size": 0}
    if ckpt:
        buffer_restore(buf, ckpt.pop("buffer"), BUFFER_KEYS)  # popped: the loaded copy is freed once copied
    writer = open_writer(args, ckpt, run_name)
    evaluations = [0]  # of this session: --capture-video records evaluations 0, k, 2k, ... (k = --video-interval)

    def alpha_now():
        return log_alpha.exp().item() if args.autotune else team_alpha(args, c["global_step"])

    def run_evaluation():
        record = args.capture_video and evaluations[0] % args.video_interval == 0
        if record:
            eval_env.start_recording()  # env 0's first evaluation episode
        win, ret = evaluate(policy, eval_env, args.eval_episodes, device)
        if record:
            save_video(eval_env, f"runs/{run_name}/videos/step_{c['global_step']}.gif")
        evaluations[0] += 1
        writer.add_scalar("eval/win_rate", win, c["global_step"])
        writer.add_scalar("eval/episodic_return", ret, c["global_step"])
        print(eval_line(c["global_step"], win, ret, args.eval_episodes), flush=True)
        return win, ret

    def checkpoint():
        c["alpha_ratio"], c["log_alpha"] = alpha_ratio.cpu(), log_alpha.detach().cpu()
        save_checkpoint(f"runs/{run_name}/checkpoint.pt", args, run_name, modules, buffer_state(buf, BUFFER_KEYS),
                        c, rng)

    def update():
        """One update of Algorithm 1 (lines 8-13) on a batch of whole episodes."""
        nonlocal alpha_ratio
        b = buffer_sample(buf, args.batch_size, rng, device)
        B, L = b["reward"].shape
        mask, avail_b, acts = b["mask"], b["avail"], b["actions"]
        last_b = torch.cat([torch.full_like(acts[:, :1], -1), acts[:, :-1]], 1)  # [B, L, N]
        x = agent_inputs(b["obs"], last_b, A)                                   # [B, L, N, in]
        x_q = x if args.critic_history else agent_inputs(b["obs"], None, A)
        alpha = alpha_now()
        alpha_i = alpha * alpha_ratio                                           # [N]
        pi = policy_probs(policy(x)[0], avail_b, epsilon(args, c["global_step"]))  # [B, L, N, A]
        log_pi = torch.log(pi + 1e-10)
        agents_sum = (lambda t: t.mean(-1)) if args.entropy_mean else (lambda t: t.sum(-1))
        q = [critic(x_q)[0] for critic in critics]                              # 2 x [B, L, N, A]

        # Eq. 9 target: r + gamma (Q^_jt(tau', u') - alpha log pi_jt(u'|tau')), u' ~ pi_jt, min over the two target
        # pairs, as a TD(lambda) return over the episode.
        with torch.no_grad():
            u_next = torch.multinomial(pi.view(-1, A), 1).view(B, L, N)        # u'_t ~ pi_jt(.|tau_t)
            onehot_next = F.one_hot(u_next, A).flatten(-2).float()              # [B, L, N*A]
            q_next = []
            for target_critic, target_mixer in zip(target_critics, target_mixers):
                tq = target_critic(x_q)[0]                                      # [B, L, N, A]
                q_next.append(target_mixer(tq.gather(-1, u_next[..., None]).squeeze(-1),
                                           soft_value(tq, avail_b, alpha_i), b["state"], onehot_next))
            q_next = torch.min(*q_next)                                         # [B, L]
            log_pi_next = agents_sum(log_pi.gather(-1, u_next[..., None]).squeeze(-1))             # [B, L]
            log_pi_taken = agents_sum(log_pi.gather(-1, acts[..., None]).squeeze(-1))              # [B, L]
            y = soft_lambda_returns(b["reward"], b["terminated"], q_next - alpha * log_pi_next,
                                    -alpha * log_pi_taken, args.gamma, args.td_lambda)

        # Eq. 9 loss for each critic/mixer pair ([theta_i], Phi, Psi of Algorithm 1, line 9)
        onehot_taken = F.one_hot(acts, A).flatten(-2).float()
        critic_losses, q_jts = [], []
        for j in range(2):
            q_taken = q[j].gather(-1, acts[..., None]).squeeze(-1)             # [B, L, N]
            q_jt = mixers[j](q_taken, soft_value(q[j].detach(), avail_b, alpha_i), b["state"], onehot_taken)
            loss = (((q_jt - y) ** 2) * mask).sum() / mask.sum()
            clip_step(critic_opts[j], loss, list(critics[j].parameters()) + list(mixers[j].parameters()),
                      args.grad_norm_clip)
            critic_losses.append(loss.item())
            q_jts.append(q_jt.detach())

        # Eq. 11 with the smaller of the two individual Q-values (line 11)
        q_min = torch.min(q[0], q[1]).detach()
        actor_loss = policy_loss(pi, log_pi, q_min, alpha_i, mask)
        clip_step(policy_opt, actor_loss, policy.parameters(), args.grad_norm_clip)

        # temperatures (line 12): alpha_i from the weight network, alpha by SAC's rule with --autotune
        with torch.no_grad():
            q1 = q[0].detach()
            adv = (q1 - soft_value(q1, avail_b, alpha_i).unsqueeze(-1)).gather(-1, u_next[..., None]).squeeze(-1)
            lam = mixers[0].weights(b["state"], onehot_next)                   # [B, L, N]
            if not args.single_alpha:
                alpha_ratio = individual_temperatures(adv, lam, mask)
            entropy = -(pi * log_pi).sum(-1).sum(-1)                            # H(pi_jt) = sum_i H(pi_i), [B, L]
        losses = {"losses/critic_loss": sum(critic_losses) / 2, "losses/policy_loss": actor_loss.item(),
                  "charts/alpha": alpha, "fop/alpha_i_mean": alpha_i.mean().item(),
                  "fop/lambda_mean": ((lam.mean(-1) * mask).sum() / mask.sum()).item(),
                  "fop/q_jt_mean": ((q_jts[0] * mask).sum() / mask.sum()).item(),
                  "fop/entropy_per_agent": ((entropy * mask).sum() / mask.sum()).item() / N}
        if args.autotune:
            target = args.target_entropy_scale * torch.log(avail_b.sum(-1)).sum(-1)  # [B, L]
            alpha_loss = log_alpha.exp() * (((entropy - target) * mask).sum() / mask.sum())
            alpha_opt.zero_grad()
            alpha_loss.backward()
            alpha_opt.step()
            losses["losses/alpha_loss"] = alpha_loss.item()
        return losses

    # Algorithm 1: act in E envs with the individual policies; whole episodes go to the buffer as they end.
    staged = episode_arrays(E, T, N, obs_dim, state_dim, A)
    obs, state, avail = env.reset()
    last, h = torch.full((E, N), -1, device=device), None
    start_time = time.time()
    progress = Progress(c["global_step"], args.total_timesteps)
    while c["global_step"] < args.total_timesteps:
        if c["global_step"] >= c["next_eval"]:
            run_evaluation()
            c["next_eval"] += args.eval_interval
        if args.save_model and c["global_step"] >= c["next_ckpt"]:  # after the evaluation: it holds all of step S
            c["next_ckpt"] += args.checkpoint_interval
            checkpoint()

        with torch.no_grad():
            t_avail = torch.as_tensor(avail, device=device)
            logits, h = policy(agent_inputs(torch.as_tensor(obs, device=device), last, A)[:, None], h)
            pi = policy_probs(logits[:, 0], t_avail, epsilon(args, c["global_step"]))  # [E, N, A]
            actions = torch.multinomial(pi.view(-1, A), 1).view(E, N)
            explore = explore_probability(args, c["global_step"])
            if explore > 0:  # a uniform legal action with probability --explore
                uniform = torch.multinomial(t_avail.view(-1, A), 1).view(E, N)
                actions = torch.where(torch.rand(E, N, device=device) < explore, uniform, actions)
        np_actions = actions.cpu().numpy()
        next_obs, next_state, next_avail, reward, done, info = env.step(np_actions)
        t_idx, rows = staged["length"], np.arange(E)
        staged["obs"][rows, t_idx], staged["state"][rows, t_idx] = obs, state
        staged["avail"][rows, t_idx], staged["actions"][rows, t_idx] = avail, np_actions
        staged["reward"][rows, t_idx] = reward * args.reward_scale
        staged["terminated"][rows, t_idx] = done  # time-outs too (module docstring)
        staged["length"] += 1
        c["global_step"] += E
        for e in np.flatnonzero(done):
            buffer_add(buf, staged, e)
            c["episodes"] += 1
            progress.add_episode(info["won"][e], info["episode_return"][e])
            writer.add_scalar("charts/episodic_return", info["episode_return"][e], c["global_step"])
            writer.add_scalar("charts/win_rate", float(info["won"][e]), c["global_step"])
        obs, state, avail = next_obs, next_state, next_avail
        d = torch.as_tensor(done, device=device)
        last = torch.where(d[:, None], -1, actions)
        h = h.view(1, E, N, -1).masked_fill(d[None, :, None, None], 0).view_as(h)

        if buf["size"] >= max(args.learning_starts, args.batch_size):
            c["credit"] += done.sum() * args.updates_per_episode
        while c["credit"] >= 1:
            c["credit"] -= 1
            losses = update()
            c["updates"] += 1
            if c["updates"] % args.target_update_interval == 0:
                target_critics.load_state_dict(critics.state_dict())
                target_mixers.load_state_dict(mixers.state_dict())
            if c["global_step"] >= c["next_log"]:
                c["next_log"] = c["global_step"] + args.log_interval
                for k, v in losses.items():
                    writer.add_scalar(k, v, c["global_step"])
                writer.add_scalar("charts/SPS", progress.rate(c["global_step"]), c["global_step"])
        progress.tick(c["global_step"], c["updates"])

    progress.tick(c["global_step"], c["updates"], force=True)
    win, ret = run_evaluation()
    while c["next_eval"] <= c["global_step"]:  # a run resumed with more steps does not evaluate this step again
        c["next_eval"] += args.eval_interval
    result = {"win_rate": win, "episodic_return": ret, "run_name": run_name, "global_step": c["global_step"],
              "updates": c["updates"]}
    if args.env == "matrix":
        q_i, q_jt, greedy = matrix_tables(policy, critics, mixers, alpha_ratio * alpha_now(), device)
        print_matrix_tables(q_i, q_jt, greedy)
        result.update(q_i=q_i, q_jt=q_jt, greedy=greedy)
    if args.save_model:
        checkpoint()
        print(f"checkpoint: runs/{run_name}/checkpoint.pt")
    print(f"done: {c['global_step']:,} env steps, {c['updates']:,} updates, {time.time() - start_time:.0f} s")
    env.close()
    eval_env.close()
    writer.close()
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Continuous FOP: Max of Two Quadratics (Sec. 5.1, Fig. 2). Every episode is one step with a constant observation, so
# the networks are MLPs and the target of Eq. 9 is the (scaled) reward: tau' is terminal.
# ---------------------------------------------------------------------------------------------------------------------
def save_mtq_figure(path, trail, filename):
    """The reward surface (Fig. 2a) with the greedy joint-action path (Fig. 2c: line) and exploration trail (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-10, 10, 201)
    g1, g2 = np.meshgrid(grid, grid)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    cs = ax.contourf(g1, g2, games.mtq_reward(g1, g2), levels=30, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="reward")
    ax.scatter(trail[:, 0], trail[:, 1], s=2, c="red", alpha=0.3, label="exploration")
    ax.plot(path[:, 1], path[:, 2], c="white", lw=1.5, label="greedy joint action")
    ax.plot(*path[0, 1:], "wo")
    ax.plot(*path[-1, 1:], "w*", ms=12)
    ax.set(xlabel="u_1", ylabel="u_2", xlim=(-10, 10), ylim=(-10, 10), title="FOP on MTQ")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(filename, dpi=100)
    plt.close(fig)


@torch.no_grad()
def mtq_individual(policy, critics, x, bound, points=401):
    """Each agent's individual critic Q_i(u_i) = min_j Q_i^j(tau_i, u_i) (what Eq. 11 trains pi_i on) and the density
    of pi_i(u_i | tau_i) on a grid of u_i inside (-bound, bound). x: the agents' inputs [N, in] ->
    {"grid" [G], "q" [N, G], "pi" [N, G]} as NumPy arrays."""
    grid = torch.linspace(-bound, bound, points, device=x.device)[1:-1]                      # [G], the open interval
    G, N = len(grid), x.shape[0]
    xq = torch.cat([x[:, None].expand(N, G, x.shape[-1]), (grid / bound)[None, :, None].expand(N, G, 1)], -1)
    q = torch.min(*[critic(xq).squeeze(-1) for critic in critics])                            # [N, G]
    mu, log_std = policy.stats(x)                                                             # [N, 1]
    z = torch.atanh(grid / bound)[:, None]                                                    # u = bound tanh(z): [G, 1]
    pi = policy.log_prob(mu[:, None], log_std[:, None], z).exp()                              # [N, G]
    return {"grid": grid.cpu().numpy(), "q": q.cpu().numpy(), "pi": pi.cpu().numpy()}


def train_mtq(args, ckpt=None):
    """Train (or evaluate) continuous FOP on MTQ. Returns the final greedy joint action, its reward and the path."""
    device, rng = setup(args)
    c = copy.deepcopy(ckpt["counters"]) if ckpt else {
        "global_step": 0, "updates": 0, "episodes": 0, "credit": 0.0, "next_eval": 0,
        "next_ckpt": args.checkpoint_interval, "next_log": 0, "alpha_ratio": None, "log_alpha": None,
        "path": [], "trail": []}
    if not args.eval_only and nothing_to_do(args, ckpt):
        return {"run_name": ckpt["run_name"], "global_step": c["global_step"], "updates": c["updates"]}
    run_name = None if args.eval_only else start_run(args, ckpt, "mtq")[0]
    env = games.MaxOfTwoQuadratics(args.num_envs)
    N, bound, E = env.n_agents, env.action_high, args.num_envs
    x_dim = env.obs_dim + N
    policy = GaussianPolicy(x_dim, args.hidden_dim, bound).to(device)
    critics = nn.ModuleList([mlp(x_dim + 1, args.hidden_dim, 1) for _ in range(2)]).to(device)  # Q_i(tau_i, u_i)
    v_net = mlp(x_dim, args.hidden_dim, 1).to(device)                                            # V_i(tau_i)
    mixers = nn.ModuleList([Mixer(env.state_dim, N, N, args.mixing_embed_dim, args.n_heads, args.paper_gradient,
                                  args.lambda_attention_bound, args.lambda_normalise)
                            for _ in range(2)]).to(device)
    policy_opt = torch.optim.RMSprop(policy.parameters(), lr=args.lr, alpha=0.99, eps=1e-5)
    critic_opts = [torch.optim.RMSprop(list(critics[j].parameters()) + list(mixers[j].parameters()), lr=args.critic_lr,
                                       alpha=0.99, eps=1e-5) for j in range(2)]
    v_opt = torch.optim.RMSprop(v_net.parameters(), lr=args.critic_lr, alpha=0.99, eps=1e-5)
    log_alpha = torch.tensor(math.log(args.alpha_start), device=device, requires_grad=True)
    alpha_opt = torch.optim.Adam([log_alpha], lr=args.lr)
    modules = {"policy": policy, "critics": critics, "v_net": v_net, "mixers": mixers, "policy_opt": policy_opt,
               "critic_opt_1": critic_opts[0], "critic_opt_2": critic_opts[1], "v_opt": v_opt, "alpha_opt": alpha_opt}
    alpha_ratio = torch.ones(N, device=device)
    C = args.buffer_size
    buf = {"obs": np.zeros((C, N, env.obs_dim), np.float32), "state": np.zeros((C, env.state_dim), np.float32),
           "actions": np.zeros((C, N), np.float32), "reward": np.zeros(C, np.float32), "pos": 0, "size": 0}
    if ckpt:
        restore(ckpt, modules, rng, device)
        buffer_restore(buf, ckpt.pop("buffer"), MTQ_BUFFER_KEYS)
        alpha_ratio = c["alpha_ratio"].to(device)
        with torch.no_grad():
            log_alpha.copy_(c["log_alpha"])
    ids = torch.eye(N, device=device)

    def inputs(obs):  # [B, N, O] -> (o_i, agent id) [B, N, O + N]
        return torch.cat([obs, ids.expand(obs.shape[0], N, N)], -1)

    @torch.no_grad()
    def greedy_action():
        obs = torch.ones(1, N, env.obs_dim, device=device)
        return policy(inputs(obs))[2][0, :, 0].cpu().numpy()  # [N]

    if args.eval_only:
        u = greedy_action()
        print(f"checkpoint {args.checkpoint}")
        print(f"eval at step {c['global_step']:,}: greedy joint action ({u[0]:.2f}, {u[1]:.2f}), "
              f"reward {float(games.mtq_reward(*u)):.2f}")
        return {"final_action": u, "reward": float(games.mtq_reward(*u))}

    writer = open_writer(args, ckpt, run_name)

    def alpha_now():
        return log_alpha.exp().item() if args.autotune else team_alpha(args, c["global_step"])

    def run_evaluation():
        u = greedy_action()
        won, ret = float(np.hypot(u[0] - 5, u[1] - 5) <= 0.5), float(games.mtq_reward(*u))
        writer.add_scalar("eval/win_rate", won, c["global_step"])
        writer.add_scalar("eval/episodic_return", ret, c["global_step"])
        writer.add_scalar("mtq/action_1", u[0], c["global_step"])
        writer.add_scalar("mtq/action_2", u[1], c["global_step"])
        print(f"eval at step {c['global_step']:,}: win rate {won:.3f}, return {ret:.2f} (greedy joint action "
              f"({u[0]:.2f}, {u[1]:.2f}), alpha {alpha_now():.3f})", flush=True)
        return u, won, ret

    def checkpoint():
        c["alpha_ratio"], c["log_alpha"] = alpha_ratio.cpu(), log_alpha.detach().cpu()
        save_checkpoint(f"runs/{run_name}/checkpoint.pt", args, run_name, modules,
                        buffer_state(buf, MTQ_BUFFER_KEYS), c, rng)

    def update():
        """Algorithm 1, lines 8-12, for continuous actions."""
        nonlocal alpha_ratio
        idx = rng.choice(buf["size"], args.batch_size, replace=False)
        x = inputs(torch.as_tensor(buf["obs"][idx], device=device))          # [B, N, in]
        state = torch.as_tensor(buf["state"][idx], device=device)            # [B, S]
        u = torch.as_tensor(buf["actions"][idx], device=device) / bound      # [B, N], in [-1, 1]
        y = torch.as_tensor(buf["reward"][idx], device=device) * args.reward_scale  # Eq. 9 target, tau' terminal
        alpha = alpha_now()
        alpha_i = alpha * alpha_ratio
        v = v_net(x).squeeze(-1)                                             # V_i(tau_i), [B, N]

        critic_losses = []  # Eq. 9, each critic/mixer pair (line 9)
        for j in range(2):
            q = critics[j](torch.cat([x, u[..., None]], -1)).squeeze(-1)     # [B, N]
            loss = ((mixers[j](q, v.detach(), state, u) - y) ** 2).mean()
            clip_step(critic_opts[j], loss, list(critics[j].parameters()) + list(mixers[j].parameters()),
                      args.grad_norm_clip)
            critic_losses.append(loss.item())

        u_new, log_pi, _ = policy(x)                                         # u_i ~ pi_i, reparameterised: [B, N, 1]
        q_new = [critic(torch.cat([x, u_new / bound], -1)).squeeze(-1) for critic in critics]
        q_min = torch.min(*q_new)                                            # [B, N]
        v_loss = ((v - (q_min - alpha_i * log_pi).detach()) ** 2).mean()     # Eq. 10 (line 10)
        clip_step(v_opt, v_loss, v_net.parameters(), args.grad_norm_clip)
        actor_loss = (alpha_i * log_pi - q_min).mean()                      # Eq. 11 (line 11)
        clip_step(policy_opt, actor_loss, policy.parameters(), args.grad_norm_clip)

        with torch.no_grad():  # temperatures (line 12)
            lam = mixers[0].weights(state, u_new.squeeze(-1) / bound)
            if not args.single_alpha:
                alpha_ratio = individual_temperatures(q_new[0] - v, lam, torch.ones_like(y))
        losses = {"losses/critic_loss": sum(critic_losses) / 2, "losses/value_loss": v_loss.item(),
                  "losses/policy_loss": actor_loss.item(), "charts/alpha": alpha,
                  "fop/alpha_i_mean": alpha_i.mean().item(), "fop/lambda_mean": lam.mean().item()}
        if args.autotune:  # SAC's target entropy -1 per action dimension in [-1, 1] units, + log(bound) in ours
            target = N * (math.log(bound) - 1.0)
            alpha_loss = log_alpha.exp() * (-log_pi.detach().sum(-1) - target).mean()
            alpha_opt.zero_grad()
            alpha_loss.backward()
            alpha_opt.step()
            losses["losses/alpha_loss"] = alpha_loss.item()
        return losses

    obs, state, _ = env.reset()
    start_time = time.time()
    progress = Progress(c["global_step"], args.total_timesteps)
    while c["global_step"] < args.total_timesteps:
        if c["global_step"] >= c["next_eval"]:
            run_evaluation()
            c["next_eval"] += args.eval_interval
        if args.save_model and c["global_step"] >= c["next_ckpt"]:  # after the evaluation: it holds all of step S
            c["next_ckpt"] += args.checkpoint_interval
            checkpoint()
        with torch.no_grad():
            actions = policy(inputs(torch.as_tensor(obs, device=device)))[0][..., 0]  # [E, N]
            explore = explore_probability(args, c["global_step"])
            if explore > 0:  # uniform in [-bound, bound] with probability --explore
                uniform = (2 * torch.rand(E, N, device=device) - 1) * bound
                actions = torch.where(torch.rand(E, N, device=device) < explore, uniform, actions)
            actions = actions.cpu().numpy()
        next_obs, next_state, _, reward, done, info = env.step(actions)
        rows = (buf["pos"] + np.arange(E)) % C
        buf["obs"][rows], buf["state"][rows], buf["actions"][rows], buf["reward"][rows] = obs, state, actions, reward
        buf["pos"], buf["size"] = (buf["pos"] + E) % C, min(buf["size"] + E, C)
        obs, state = next_obs, next_state
        c["global_step"] += E
        c["episodes"] += E
        c["path"].append((c["global_step"], *greedy_action()))
        c["trail"].append(actions[0])
        for e in range(E):
            progress.add_episode(info["won"][e], info["episode_return"][e])
        writer.add_scalar("charts/episodic_return", float(info["episode_return"].mean()), c["global_step"])
        writer.add_scalar("charts/win_rate", float(info["won"].mean()), c["global_step"])

        if buf["size"] >= max(args.learning_starts, args.batch_size):
            c["credit"] += E * args.updates_per_episode
        while c["credit"] >= 1:
            c["credit"] -= 1
            losses = update()
            c["updates"] += 1
            if c["global_step"] >= c["next_log"]:
                c["next_log"] = c["global_step"] + args.log_interval
                for k, v in losses.items():
                    writer.add_scalar(k, v, c["global_step"])
                writer.add_scalar("charts/SPS", progress.rate(c["global_step"]), c["global_step"])
        progress.tick(c["global_step"], c["updates"])

    progress.tick(c["global_step"], c["updates"], force=True)
    u, won, ret = run_evaluation()
    while c["next_eval"] <= c["global_step"]:  # a run resumed with more steps does not evaluate this step again
        c["next_eval"] += args.eval_interval
    path = np.array([(0, 0.0, 0.0)] + c["path"])  # the policies start at (0, 0)
    save_mtq_figure(path, np.array(c["trail"]), f"runs/{run_name}/mtq_path.png")
    print(f"learning path: runs/{run_name}/mtq_path.png")
    if args.save_model:
        checkpoint()
        print(f"checkpoint: runs/{run_name}/checkpoint.pt")
    print(f"done: {c['global_step']:,} env steps, {c['updates']:,} updates, {time.time() - start_time:.0f} s")
    writer.close()
    individual = mtq_individual(policy, critics, inputs(torch.ones(1, N, env.obs_dim, device=device))[0], bound)
    return {"final_action": u, "reward": ret, "won": won, "path": path, "run_name": run_name,
            "global_step": c["global_step"], "updates": c["updates"], "individual": individual}


if __name__ == "__main__":
    args, ckpt = parse_args()
    validate(args, ckpt)
    (train_mtq if args.env == "mtq" else train)(args, ckpt)
