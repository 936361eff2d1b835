# Efficient Multi-agent Reinforcement Learning by Planning (MAZero, ICLR 2024): MuZero for cooperative MARL. README section "mazero.py".
"""MAZero: a centralised-training model with per-agent representation and dynamics (Sec. 4.1), sampled MCTS over
joint actions with Optimistic Search Lambda (Sec. 4.2, `ctree_numpy.py`), Advantage-Weighted Policy Optimisation
(Sec. 4.3), EfficientZero-style reanalyse with a delayed target network (Sec. 4.4, Appendix B.2).

    python mazero.py --map 3m                      # the paper's Table 1 settings: meant for a GPU
    python mazero.py --map 3m --preset cpu         # settings that learn 3m on a 2-core CPU (CPU_PRESET below)
    python mazero.py --checkpoint runs/<run>/checkpoint.pt                # resume an interrupted run
    python mazero.py --checkpoint runs/<run>/checkpoint.pt --eval-only    # evaluate a checkpoint
    python mazero.py --checkpoint runs/<run>/checkpoint.pt --eval-only --capture-video   # ... and watch it (GIF)
    python mazero.py --policy-loss bc --no-os-lambda    # Fig. 5 ablations; --no-communication, --flattened-model: Fig. 6

Console: a progress line at least every 30 s and at the end, an evaluation line at step 0, every --eval-interval and
at the end (TensorBoard logs, checkpoint and videos in runs/{map}__{exp_name}__{seed}__{time}, suffixed _2, _3, ... if
taken):
    step 12,345/50,000 (25%) | 13.2 env steps/s | 3,086 updates | train win rate 0.31, return 12.40 | ETA 0:47:36
    eval at step 12,345: win rate 0.406, return 15.21 (32 episodes, greedy)

Where this script departs from the paper or the authors' code (liuqh16/MAZero, train_smac.sh):
  * Defaults are the paper's Table 1. The authors' script differs and each difference is a flag: stacked observations
    1 (paper: 4), rho 0.25 (paper: 0.75), alpha 2 (paper: 3), lr 5e-4 (paper: 1e-4); their weight clip at 3 is used
    here too.
  * AWPO (Eq. 10/14) as the authors' code: the advantages are standardised over the batch and exp(A/alpha) is clipped
    at 3; the paper uses the raw advantage, unclipped (--awpo-weight-clip inf drops the clip; the standardisation
    stays).
  * Support: atoms at the integers -5..5 of h(x) space (the authors' DiscreteSupport(-5, 5), 11 atoms; the paper says
    "ten bins").
  * Reward head: R(s_{t,k}, a_{t+k}) from the state the action is taken in, as Eq. 4 (the authors' code feeds it the
    next state, R(s_{t,k+1}, a_{t+k}): --reward-from-next-state).
  * Value and reward losses run over every unroll step, past the episode end with zero targets (absorbing state, as
    the authors' code); Eq. 13 starts the value sum at k=1, the authors' code at k=0 (done here). Policy and
    consistency losses are masked past the end.
  * Policy loss: log pi is the softmax over the legal actions of s_{t+k} (the authors' code: over all actions, and a
    1e-4 floor on every legal action's root prior in the search: --policy-softmax all). The search masks its roots; an
    unmasked softmax taught the policy that attacks (legal only in range) are improbable, and the search then hardly
    ever sampled them (3m, before the bootstrap fix: the training return fell below a random policy's within 5k steps).
  * Legal masks apply inside the tree too: each node's policy is masked with its root's legal actions (see search; the
    authors' code masks the root only: --tree-legal-mask root).
  * Gradient scaling: the gradient s_{t,k} passes on to the next unroll step is halved (MuZero's pseudocode); the
    authors' code halves all of s_{t,k}'s gradient, its own reward/value/policy/consistency heads' included, with a
    register_hook (--grad-scale-hook).
  * Latent states are not min-max normalised (EfficientZero does it for images): h and every g block end in LayerNorm,
    and g adds its output to the previous latent (residual, Appendix B.1), as the authors' code.
  * Target network: a copy of the online weights every 200 updates (the authors' code pushes weights that are 200
    updates old, so its lag is 200-400). Fixed n-step horizon, as Table 1 (the authors' code shortens it for old data,
    EfficientZero's off-policy correction, n = clip(5 - age // (0.3 x total updates), 1, 5): --td-age-ratio 0.3).
  * Time-outs at the episode limit are terminal (as SMAC and the authors' code): the adapter does not return the last
    observation.
  * One process, synchronous: act one vectorised env step, then do the updates it pays for (`updates_per_env_step`;
    the authors' code: 0.5 updates per transition, run in parallel Ray workers). Replay is never evicted (as theirs;
    --replay-window W samples only the W most recent positions, a test of stale value targets, in neither).
  * SMAX (jaxmarl) plays StarCraft unless SC2 is installed: numbers are not comparable with published SMAC ones.
"""

import contextlib
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

import ctree_numpy
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
    """record env 0's first episode of every --video-interval-th evaluation to runs/{run_name}/videos/step_<N>.gif;
    on SC2 a StarCraft II replay next to that path; with --eval-only in videos/ next to the checkpoint"""
    video_interval: int = 1
    """with --capture-video: record every this many evaluations (1: every one)"""
    save_model: bool = True
    """write checkpoints to runs/{run_name}/checkpoint.pt"""
    checkpoint: Optional[str] = None
    """resume from this checkpoint (its settings are the defaults); with --eval-only, just evaluate it"""
    eval_only: bool = False
    """evaluate --checkpoint and exit"""
    preset: Optional[str] = None
    """"cpu": the CPU_PRESET settings (fewer simulations, smaller reanalyse batch, fewer updates); None: the paper's"""

    map: str = "3m"
    """SMAC map, a key of games.SMAC_MAPS (an unknown name lists them all): 3m, 8m, 25m, 5m_vs_6m, 8m_vs_9m, 2s3z,
    3s5z, 3s_vs_5z, 6h_vs_8z, corridor, ...; SMAX plays those in games.SMAX_MAPS (with smacv2_5_units,
    smacv2_10_units, smacv2_20_units: SMACv2 on SMAX), the others (MMM, MMM2, 1c3s5z, protoss_5_vs_5, ...) need
    StarCraft II"""
    backend: str = "auto"
    """StarCraft backend: auto (SC2 if installed, else SMAX), smax or sc2"""
    num_envs: int = 8
    """parallel environments, searched together in one batched MCTS per step (authors' code: 4)"""
    total_timesteps: int = 100_000
    """environment steps (one per env per step)"""
    eval_interval: int = 5_000
    """evaluate every this many env steps"""
    eval_episodes: int = 32
    """evaluation episodes (paper Table 1: 32)"""
    eval_mcts: bool = False
    """evaluate with noise-free search and argmax visits (the authors' --use_mcts_test), not the greedy policy head"""
    checkpoint_interval: int = 10_000
    """write a checkpoint every this many env steps"""

    stacked_observations: int = 4
    """observations stacked per agent (paper Table 1: 4; authors' code: 1)"""
    gamma: float = 0.99
    """discount gamma (paper Table 1: 0.99)"""
    batch_size: int = 256
    """minibatch size (paper Table 1: 256)"""
    learning_rate: float = 1e-4
    """Adam learning rate (paper Table 1: 1e-4; authors' code: 5e-4)"""
    anneal_lr: bool = False
    """decay the learning rate linearly to 0 over the run's updates (CleanRL's PPO anneal; not in the paper, whose
    learning rate is constant, nor in the authors' code)"""
    adam_eps: float = 1e-5
    """Adam epsilon (paper Table 1: 1e-5)"""
    weight_decay: float = 0.0
    """weight decay (paper Table 1: 0)"""
    max_grad_norm: float = 5.0
    """max gradient norm (paper Table 1: 5)"""
    priority_alpha: float = 0.6
    """priority exponent c_alpha (paper Table 1: 0.6)"""
    priority_beta: float = 0.4
    """priority correction c_beta, annealed linearly to 1 (paper Table 1: 0.4 -> 1)"""
    min_replay_size: int = 300
    """transitions in replay before sampling starts (paper Table 1: 300)"""
    replay_window: int = 0
    """sample only this many most recent positions (0: all, as the authors' code, which never evicts; the paper
    gives no buffer size)"""
    target_update_interval: int = 200
    """updates between refreshes of the reanalyse target network (paper Table 1: 200)"""
    unroll_steps: int = 5
    """unroll steps K of Eq. 13 (paper Table 1: 5)"""
    td_steps: int = 5
    """n of the n-step value target (paper Table 1: 5)"""
    td_age_ratio: float = 0.0
    """EfficientZero's off-policy correction (authors' code: 0.3; paper: not given, 0 = off): a position that is D
    transitions old gets n_t = clip(n - D // (ratio x total updates), 1, n), so stale data bootstraps sooner"""
    num_sampled: int = 10
    """K, joint actions sampled per node (paper Table 1: 10)"""
    num_simulations: int = 100
    """N, simulations per search when acting (paper Table 1: 100)"""
    reanalyse_simulations: Optional[int] = None
    """simulations per reanalyse search; None: the same N (paper)"""
    rho: float = 0.75
    """OS(lambda) quantile rho: the top (1 - rho) of each U_d is kept, Eq. 6 (paper Table 1: 0.75; authors: 0.25)"""
    lam: float = 0.8
    """OS(lambda) depth decay lambda, Eq. 7 (paper Table 1: 0.8)"""
    alpha: float = 3.0
    """AWPO temperature alpha, Eq. 10 (paper Table 1: 3; authors' code: 2)"""
    awpo_weight_clip: float = 3.0
    """clip of the AWPO weight exp(A/alpha) (authors' code: 3; the paper does not clip: inf)"""
    policy_loss: str = "awpo"
    """awpo (Eq. 14) or bc (visit-count cross-entropy of Sampled MuZero, the paper's "No AWPO" ablation)"""
    os_lambda: bool = True
    """OS(lambda) values in the search (Eq. 5-9); --no-os-lambda: mean values (the paper's "No OS(lambda)")"""
    communication: bool = True
    """communication network e (Eq. 4); --no-communication: e = 0 (Fig. 6 ablation)"""
    flattened_model: bool = False
    """dynamics as one MLP over all agents' concatenated latents and actions (Fig. 6 "Flattened" ablation)"""
    tree_legal_mask: str = "all-nodes"
    """where the search applies the root's legal actions: all-nodes (every expanded node's policy is masked with them);
    root (the root only, as the authors' code: deeper nodes sample from the unmasked policy)"""
    policy_softmax: str = "legal"
    """log pi of the policy loss: legal (softmax over the legal actions of s_{t+k});
    all (over all actions, as the authors' code, whose search then adds 1e-4 to every legal action's root prior)"""
    grad_scale_hook: bool = False
    """halve the whole gradient into s_{t,k}, k >= 1, its own heads' included (the authors' register_hook);
    default: halve only the gradient passed on to the next unroll step (MuZero's pseudocode)"""
    reward_from_next_state: bool = False
    """reward head on the state after the dynamics, R(s_{t,k+1}, a_{t+k}) (the authors' code);
    default: R(s_{t,k}, a_{t+k}) (paper Eq. 4)"""
    hidden_size: int = 128
    """latent size per agent (paper Appendix B.1: 128)"""
    support_size: int = 5
    """value/reward support [-5, 5] in h(x) space (paper Appendix B.1)"""
    dirichlet_alpha: float = 0.3
    """root Dirichlet noise alpha (authors' code: 0.3)"""
    dirichlet_fraction: float = 0.25
    """root Dirichlet noise fraction (authors' code: 0.25)"""
    action_temperature: float = 1.0
    """tau of the self-play action: root child played with prob ~ N(a)^(1/tau) (authors' code: 1; paper: not given;
    0: the most visited)"""
    temperature_schedule: str = "constant"
    """constant: tau = --action-temperature throughout (the authors' train_smac.sh); muzero: tau x 1, then x 0.5 from
    50% and x 0.25 from 75% of --total-timesteps (MuZero's schedule, the authors' --use_change_temperature)"""
    updates_per_env_step: float = 0.5
    """gradient updates per env transition (authors' code: 1M updates over 2M transitions)"""
    reward_loss_coef: float = 1.0
    """reward loss weight (authors' code: 1)"""
    value_loss_coef: float = 0.25
    """value loss weight (authors' code: 0.25)"""
    policy_loss_coef: float = 1.0
    """policy loss weight (authors' code: 1)"""
    consistency_loss_coef: float = 2.0
    """consistency loss weight (authors' code: 2)"""


# What `--preset cpu` changes. A search costs one model call per simulation, so the paper's reanalyse (256 positions
# x 6 unroll steps = 1536 roots, N = 100, every update, 0.5 updates per transition) is ~8 s of CPU per update here.
CPU_PRESET = dict(
    num_envs=32,                # one search serves 32 envs: the fixed cost of each model call is shared by 32 roots
    reanalyse_simulations=16,   # >= K = 10, so every sampled root action is still visited; acting keeps N = 100
    batch_size=32,
    updates_per_env_step=0.25,
    hidden_size=64,             # a 50k run at 128 takes ~1.5x as long; +0.08 at 50k, at the interval's edge (README)
    learning_rate=5e-4,         # the authors' learning rate
    eval_interval=2_500,
    checkpoint_interval=5_000,
    total_timesteps=50_000,
)


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


def eval_line(step, win, ret, episodes, with_search):
    return (f"eval at step {step:,}: win rate {win:.3f}, return {ret:.2f} "
            f"({episodes} episodes, {'search' if with_search else 'greedy'})")


def make_run_dir(run_name, resume):
    """Create runs/{run_name} before anything expensive and check that it can be written (else one line, exit 2). A
    new run gets a directory of its own: os.makedirs is atomic, so when the name is taken (two runs started in the
    same second) it tries run_name_2, _3, ...; a resumed run reuses its checkpoint's. Returns the name used and whether
    runs/ itself was created here."""
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
    return name, created_runs


# ---------------------------------------------------------------------------------------------------------------------
# Value and reward representation (Appendix B.1): h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x, then two-hot categorical
# targets over the integer atoms -S..S of h space (MuZero, Appendix F).
# ---------------------------------------------------------------------------------------------------------------------
H_EPS = 0.001


def h_transform(x):
    return torch.sign(x) * (torch.sqrt(x.abs() + 1) - 1) + H_EPS * x


def h_inverse(y):
    z = y.double()  # float32 loses ~1e-5 to cancellation near 0
    return (torch.sign(z) * (((torch.sqrt(1 + 4 * H_EPS * (z.abs() + 1 + H_EPS)) - 1) / (2 * H_EPS)) ** 2 - 1)).to(y.dtype)


def scalar_to_support(x, S):
    """[...] scalars -> [..., 2S+1] two-hot probabilities of h(x) on the atoms -S..S."""
    y = h_transform(x).clamp(-S, S)
    low = y.floor()
    p_high = y - low
    idx = (low + S).long()
    target = torch.zeros(*x.shape, 2 * S + 1, device=x.device)
    target.scatter_(-1, idx.unsqueeze(-1), (1 - p_high).unsqueeze(-1))
    target.scatter_add_(-1, (idx + 1).clamp(max=2 * S).unsqueeze(-1), p_high.unsqueeze(-1))  # y = S: p_high = 0
    return target


def support_to_scalar(logits, S):
    """[..., 2S+1] logits -> [...] scalars: h^-1 of the expected atom."""
    atoms = torch.arange(-S, S + 1, device=logits.device, dtype=logits.dtype)
    return h_inverse((logits.softmax(-1) * atoms).sum(-1))


# ---------------------------------------------------------------------------------------------------------------------
# Model, Sec. 4.1, Eq. 4, Fig. 2, Appendix B.1: every linear layer is followed by ReLU and LayerNorm.
# ---------------------------------------------------------------------------------------------------------------------
def mlp(sizes):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        linear = nn.Linear(a, b)
        nn.init.orthogonal_(linear.weight, nn.init.calculate_gain("relu"))
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU(), nn.LayerNorm(b)]
    return nn.Sequential(*layers)


def head(sizes, out):
    """MLP then a zero-initialised output layer (as the authors' code): a fresh model predicts 0 and a uniform
    policy."""
    last = nn.Linear(sizes[-1], out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(mlp(sizes), last)


class Representation(nn.Module):
    """s^i_{t,0} = h(o^i_{<=t}), Eq. 4: shared over agents, input LayerNorm over the stacked observations."""

    def __init__(self, in_dim, H):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), mlp([in_dim, 128, 128, H]))

    def forward(self, obs):  # [B, n, S*d] -> [B, n, H]
        return self.net(obs)


class Communication(nn.Module):
    """e^1..e^N_{t,k} = e(s^1..s^N_{t,k}, a^1..a^N_{t+k}), Eq. 4: a 3-layer Transformer over the agents' (state, action)
    with a learned agent positional encoding (agents are otherwise interchangeable) and dropout 0.1."""

    def __init__(self, n, H, A):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(H + A, H), nn.ReLU())
        self.position = nn.Parameter(torch.zeros(n, H))
        layer = nn.TransformerEncoderLayer(H, nhead=8, dim_feedforward=128, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)

    def forward(self, s, a_onehot):  # [B, n, H], [B, n, A] -> [B, n, H]
        return self.encoder(self.embed(torch.cat([s, a_onehot], -1)) + self.position)


class MAZeroNet(nn.Module):
    """The six functions of Eq. 4 plus the SimSiam projection of the consistency loss (EfficientZero)."""

    def __init__(self, n, obs_dim, A, args):
        super().__init__()
        H, S = args.hidden_size, args.support_size
        self.n, self.A, self.H, self.S = n, A, H, S
        self.communication, self.flattened = args.communication, args.flattened_model
        self.reward_from_next_state = args.reward_from_next_state
        self.representation = Representation(args.stacked_observations * obs_dim, H)
        if self.flattened:  # Fig. 6 "Flattened": one MLP maps all latents and actions to all next latents
            self.dynamics = mlp([n * (H + A), n * H, n * H, n * H])
        else:  # g, shared by the agents
            self.comm = Communication(n, H, A)
            self.dynamics = mlp([2 * H + A, 128, 128, H])
        self.reward = head([n * (H + A), 32], 2 * S + 1)  # R(s_{t,k}, a_{t+k}) (or of s_{t,k+1}), global
        self.value = head([n * H, 32], 2 * S + 1)         # V(s_{t,k}), global
        self.policy = head([H, 32], A)                    # P(s^i_{t,k}), per agent
        self.projection = mlp([n * H, 128, 128])          # SimSiam projector and predictor (authors: 128/128/64/128)
        self.predictor = mlp([128, 64, 128])

    def predict(self, s):
        """v_{t,k} = V(s_{t,k}) and p^i_{t,k} = P(s^i_{t,k}), Eq. 4."""
        return self.value(s.flatten(1)), self.policy(s)  # [B, 2S+1], [B, n, A]

    def initial(self, obs):
        """s_{t,0} = h(o_{<=t}) per agent, then its predictions. obs [B, n, S*d]."""
        s = self.representation(obs)  # [B, n, H]
        return (s, *self.predict(s))

    def recurrent(self, s, a):
        """One step of Eq. 4 from s_{t,k} [B, n, H] with joint action a_{t+k} [B, n]:
        e = e(s, a); s^i_{t,k+1} = s^i_{t,k} + g(s^i_{t,k}, a^i, e^i) (residual, Appendix B.1); r_{t,k} = R(s_{t,k}, a)
        (with --reward-from-next-state R(s_{t,k+1}, a), as the authors' code)."""
        a = F.one_hot(a, self.A).float()  # [B, n, A]
        reward = lambda state: self.reward(torch.cat([state, a], -1).flatten(1))  # noqa: E731
        if not self.reward_from_next_state:  # before the dynamics, as before the flag: same autograd order, same bits
            r_logits = reward(s)
        if self.flattened:
            s_next = s + self.dynamics(torch.cat([s, a], -1).flatten(1)).view_as(s)
        else:
            e = self.comm(s, a) if self.communication else torch.zeros_like(s)
            s_next = s + self.dynamics(torch.cat([s, a, e], -1))
        if self.reward_from_next_state:
            r_logits = reward(s_next)
        return (s_next, r_logits, *self.predict(s_next))

    def project(self, s, with_predictor):
        """SimSiam: the online branch takes projector + predictor, the target branch the projector only."""
        z = self.projection(s.flatten(1))
        return self.predictor(z) if with_predictor else z


def scale_gradient(x, scale):
    """Identity forward, gradient times `scale`. MuZero's pseudocode halves the gradient that s_{t,k} passes on to the
    next unroll step (done here); the authors' code halves all of s_{t,k}'s gradient, its own heads' included, with a
    register_hook on the state (--grad-scale-hook)."""
    return x * scale + x.detach() * (1 - scale)


# ---------------------------------------------------------------------------------------------------------------------
# Sampled MCTS with OS(lambda), Sec. 4.2: the tree is ctree_numpy; the model is queried once per simulation for the
# whole batch, with the latent states kept in a [B, N + 1, n, H] table indexed by the tree's node ids.
# ---------------------------------------------------------------------------------------------------------------------
_latent_buffers = {}  # (device, dtype) -> flat tensor, reused by every search and grown when a search needs more


def latent_table(B, M, shape, device, dtype):
    """A [B, M, *shape] view of a buffer kept across searches. A fresh table per search (635 MB for the paper's
    reanalyse on 8m: 1536 roots x 101 nodes x 8 agents x 128) is mapped and zero-filled by the OS page by page on every
    call; reused, its pages stay mapped: 0.33 s of CPU less per 8m search (of ~28 s), 0.13 s per 3m search (of ~8.5 s),
    nothing measurable at the CPU preset's 2.5 MB. Only valid until the next search (every entry is written before it
    is read)."""
    size, key = B * M * int(np.prod(shape)), (torch.device(device), dtype)
    buf = _latent_buffers.get(key)
    if buf is None or buf.numel() < size:
        _latent_buffers.pop(key, None)  # free the old buffer before allocating the larger one
        buf = _latent_buffers[key] = torch.empty(size, device=device, dtype=dtype)
    return buf[:size].view(B, M, *shape)


AUTHORS_PRIOR_FLOOR = 1e-4
"""the authors' search adds 1e-4 to every legal action's root prior before renormalising (mcts_sampled.py)"""


def search_options(args):
    """search()'s keyword arguments for --tree-legal-mask and --policy-softmax."""
    return dict(mask_tree=args.tree_legal_mask == "all-nodes",
                prior_floor=AUTHORS_PRIOR_FLOOR if args.policy_softmax == "all" else 0.0)


def search(model, obs, legal, cfg, rng, add_noise, clock=None, mask_tree=True, prior_floor=0.0):
    """Run one batched search from obs [B, n, S*d] (tensor) with root masks legal [B, n, A] (numpy bool).
    Returns ctree_numpy's SearchOutput and the predicted root values v(s) [B] (numpy).

    The model knows nothing of legality and ctree masks the root only, so with mask_tree every expanded node's policy
    is masked with its root's legal actions: a dead agent stays dead, a dead enemy is not attacked, an enemy out of
    range at the root stays out of range within the tree (but an enemy killed inside the tree stays attackable).
    Unmasked (mask_tree=False, the authors' code), the tree sampled attacks that were illegal and the reward model
    paid for them: on 3m, before the bootstrap fix, the search's root value rose to twice the realised return.
    prior_floor > 0: the root prior is (softmax over all actions + floor) on the legal actions, renormalised, as the
    authors' code (their Dirichlet noise gets the same floor, which is not reproduced: <= 0.25e-4 of beta)."""
    B, S = obs.shape[0], model.S
    with torch.inference_mode():
        root_legal = torch.as_tensor(legal, device=obs.device)
        s0, v_logits, p_logits = model.initial(obs)
        if prior_floor > 0:  # ctree's softmax over the legal actions of log(p + floor) is (p + floor) renormalised
            p_logits = torch.log(p_logits.softmax(-1) + prior_floor)
        table = latent_table(B, cfg.num_simulations + 1, s0.shape[1:], obs.device, s0.dtype)  # [B, N + 1, n, H]
        table[:, 0] = s0
        rows = torch.arange(B, device=obs.device)
        model_time = 0.0

        def recurrent_fn(parent, action, node):
            nonlocal model_time
            t0 = time.perf_counter()
            parent, action = torch.from_numpy(parent).to(obs.device), torch.from_numpy(action).to(obs.device)
            s, r_logits, v_logits, p_logits = model.recurrent(table[rows, parent], action)
            table[:, node] = s
            if mask_tree:
                p_logits = torch.where(root_legal, p_logits, -1e9)  # inside the tree: the root's legal actions
            out = [support_to_scalar(r_logits, S), support_to_scalar(v_logits, S), p_logits]  # scalars into the tree
            out = [x.cpu().numpy() for x in out]
            model_time += time.perf_counter() - t0
            return out

        root_value = support_to_scalar(v_logits, S).cpu().numpy()
        t0 = time.perf_counter()
        out = ctree_numpy.search(recurrent_fn, root_value, p_logits.cpu().numpy(), legal, rng, cfg, add_noise)
        if clock is not None:
            clock["model"] += model_time
            clock["tree"] += time.perf_counter() - t0 - model_time
    return out, root_value


def action_temperature(args, step):
    """tau of the self-play action at env step `step` (--temperature-schedule)."""
    if args.temperature_schedule == "constant":
        return args.action_temperature
    done = step / args.total_timesteps
    return args.action_temperature * (1.0 if done < 0.5 else 0.5 if done < 0.75 else 0.25)


def sample_slot(visits, tau, rng):
    """The self-play action: a root child drawn with probability N(a)^(1/tau) / sum_b N(b)^(1/tau); tau = 0 takes the
    most visited (first on ties). tau = 1 draws an integer below N, which is exact."""
    if tau == 1:
        draw = rng.integers(0, visits[0].sum(), (len(visits), 1))               # every root has N visits
        return (visits.cumsum(1) <= draw).sum(1)                                  # P(slot) = N(slot) / N
    if tau == 0:
        return visits.argmax(1)
    logp = np.where(visits > 0, np.log(np.maximum(visits, 1)) / tau, -np.inf)   # [E, K]
    p = np.exp(logp - logp.max(1, keepdims=True))
    return np.minimum((p.cumsum(1) < rng.random((len(p), 1)) * p.sum(1, keepdims=True)).sum(1), p.shape[1] - 1)


# ---------------------------------------------------------------------------------------------------------------------
# Replay: whole games stored flat (positions of one game are contiguous), one frame per position (stacking is done on
# the fly), float16 observations; prioritised sampling over positions (Schaul et al., as MuZero).
# ---------------------------------------------------------------------------------------------------------------------
def push_frame(stack, obs, new_episode):
    """Observation stacking for acting: stack [E, S, n, d] (oldest first) gets obs [E, n, d]; envs starting a new
    episode (new_episode [E] bool) forget their earlier frames, which become zeros as at the start of any episode."""
    stack[new_episode] = 0.0
    stack[:, :-1] = stack[:, 1:].copy()
    stack[:, -1] = obs
    return stack


def flatten_stack(stack):
    """[..., S, n, d] -> [..., n, S*d]: each agent sees its own S frames (Sec. 4.1: o^i_{<=t})."""
    x = np.moveaxis(stack, -3, -2)
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])  # not -1: an empty batch has no size to infer


class Replay:
    def __init__(self, capacity, n, obs_dim, A, S):
        self.size, self.S = 0, S
        self.obs = np.zeros((capacity, n, obs_dim), np.float16)
        self.action = np.zeros((capacity, n), np.int16)
        self.reward = np.zeros(capacity, np.float32)
        self.legal = np.zeros((capacity, n, A), bool)
        self.start = np.zeros(capacity, np.int64)  # index of the game's first position
        self.end = np.zeros(capacity, np.int64)    # one past the game's last position (its terminal state)
        self.priority = np.zeros(capacity)

    def add_game(self, obs, action, reward, legal):
        """Append one finished game of T positions; new data gets the maximum priority so far (authors' code)."""
        T, i = len(reward), self.size
        if i + T > len(self.reward):
            raise RuntimeError("replay is full: raise its capacity")
        for name, x in (("obs", obs), ("action", action), ("reward", reward), ("legal", legal)):
            getattr(self, name)[i:i + T] = x
        self.start[i:i + T], self.end[i:i + T] = i, i + T
        self.priority[i:i + T] = self.priority[:i].max() if i else 1.0
        self.size += T

    def stacked(self, pos):
        """Stacked observations [..., n, S*d] of positions pos [...] (all inside their games)."""
        idx = pos[..., None] - np.arange(self.S - 1, -1, -1)  # [..., S], oldest first
        frames = np.where((idx >= self.start[pos][..., None])[..., None, None], self.obs[np.maximum(idx, 0)], 0)
        return flatten_stack(frames.astype(np.float32))

    def sample(self, B, alpha, beta, rng, window=0):
        """Prioritised sampling without replacement among the last `window` positions (0: all); importance weights
        (N P(i))^-beta / max, N the positions sampled from."""
        lo = max(0, self.size - window) if window else 0
        p = self.priority[lo:self.size] ** alpha
        p /= p.sum()
        idx = rng.choice(len(p), B, replace=False, p=p)
        w = (len(p) * p[idx]) ** -beta
        return lo + idx, w / w.max()

    def state_dict(self):
        n = self.size
        # tensors sharing the arrays' memory: torch.save pickles an ndarray through copies of it (~5x its size)
        return {k: torch.from_numpy(getattr(self, k)[:n])
                for k in ("obs", "action", "reward", "legal", "start", "end", "priority")}

    def load_state_dict(self, d):
        self.size = len(d["reward"])
        for k, v in d.items():
            getattr(self, k)[:self.size] = v


# ---------------------------------------------------------------------------------------------------------------------
# Reanalyse (Appendix B.2): targets come from the delayed target network theta^-, for all K + 1 unroll steps.
# ---------------------------------------------------------------------------------------------------------------------
def td_steps(n, age, ratio, total_updates):
    """n of each sampled position [B]: n itself, or with --td-age-ratio EfficientZero's off-policy correction as the
    authors code it, clip(n - age // (ratio x total updates), 1, n), age = transitions stored after the position."""
    if ratio <= 0:
        return np.full(len(age), n)
    return np.clip(n - age // max(1, int(ratio * total_updates)), 1, n)


def value_targets(reward, end, pos, boot_value, n, gamma):
    """n-step targets z = sum_{i<n} gamma^i u_{t+i} + gamma^n v^-(s_{t+n}) (MuZero Eq. 2 with the authors' pred-re).
    reward: flat rewards; end [B]: one past each game's last position; pos [B, K+1]: positions; n: an int or [B]
    (td_steps); boot_value [B, K+1]: the target net's value at pos + n (read only where pos + n < end). No bootstrap
    past the end; 0 from the terminal state on (absorbing)."""
    n = np.broadcast_to(np.asarray(n), pos.shape[:1])[:, None]                      # [B, 1]
    steps = np.arange(n.max())
    i = pos[..., None] + steps                                                      # [B, K+1, max n]
    inside = (i < end[:, None, None]) & (steps < n[..., None])
    u = np.where(inside, reward[np.minimum(i, len(reward) - 1)], 0.0)
    z = (u * gamma ** steps).sum(-1)
    z += np.where(pos + n < end[:, None], gamma ** n * boot_value, 0.0)
    return np.where(pos < end[:, None], z, 0.0)


def awpo_weights(advantage, valid, alpha, clip):
    """exp(A^/alpha) of Eq. 10/14, A^ standardised over the batch's valid (root, sample) entries and the weight clipped
    at `clip` (the authors' `sharp` AWPO). advantage, valid: [...]; returns weights, 0 where invalid."""
    a = advantage[valid]
    a_hat = (advantage - a.mean()) / (a.std() + 1e-8)
    return np.where(valid, np.minimum(np.exp(a_hat / alpha), clip), 0.0)


def make_batch(replay, target_model, args, cfg, rng, device, beta, clock):
    """Sample B positions t; reanalyse them with the target network: a fresh noised OS(lambda) search at every real
    s_{t+k,0}, k = 0..K (policy targets omega and advantages A, Eq. 14), and n-step value targets."""
    K = args.unroll_steps
    idx, is_weight = replay.sample(args.batch_size, args.priority_alpha, beta, rng, args.replay_window)
    end = replay.end[idx]
    n = td_steps(args.td_steps, replay.size - idx, args.td_age_ratio,
                 args.total_timesteps * args.updates_per_env_step)[:, None]         # [B, 1]
    pos = idx[:, None] + np.arange(K + 1)                                           # [B, K+1]
    real = pos < end[:, None]                                                        # inside the game
    posc = np.where(real, pos, idx[:, None])                                         # any in-game index where not real
    obs = replay.stacked(posc) * real[..., None, None]                              # [B, K+1, n, S*d]
    n_agents, A = replay.legal.shape[1:]
    # past the end the model learns an absorbing state: any action, zero reward and value (MuZero)
    actions = np.where(real[:, :K, None], replay.action[posc[:, :K]], rng.integers(0, A, (len(idx), K, n_agents)))
    rewards = np.where(real[:, :K], replay.reward[posc[:, :K]], 0.0)                  # u_{t+k}, k < K

    target_model.eval()
    boot = pos + n < end[:, None]  # can be empty: short games, or a small batch near the games' ends
    boot_value = np.zeros(pos.shape)
    if boot.any():
        with torch.inference_mode():
            _, v_logits, _ = target_model.initial(torch.as_tensor(replay.stacked((pos + n)[boot]), device=device))
        boot_value[boot] = support_to_scalar(v_logits, args.support_size).cpu().numpy()  # v^-(s_{t+n})
    z = value_targets(replay.reward, end, pos, boot_value, n[:, 0], args.gamma)

    out, _ = search(target_model, torch.as_tensor(obs[real], device=device), replay.legal[pos[real]], cfg, rng,
                    add_noise=True, clock=clock, **search_options(args))           # with root noise, as the authors
    Ks = args.num_sampled
    sampled = np.zeros((*real.shape, Ks, replay.action.shape[-1]), np.int64)
    omega, adv, valid = np.zeros((*real.shape, Ks)), np.zeros((*real.shape, Ks)), np.zeros((*real.shape, Ks), bool)
    sampled[real], omega[real], adv[real], valid[real] = out.actions, out.policy, out.advantage, out.valid
    weight = awpo_weights(adv, valid, args.alpha, args.awpo_weight_clip) if args.policy_loss == "awpo" else valid
    t = lambda x, dtype=torch.float32: torch.as_tensor(x, dtype=dtype, device=device)  # noqa: E731
    return dict(idx=idx, is_weight=t(is_weight), obs=t(obs), actions=t(actions, torch.long), real=t(real),
                legal=t(replay.legal[posc], torch.bool),
                rewards=t(rewards), z=t(z), sampled=t(sampled, torch.long), coef=t(omega * weight),
                root_value=float(out.root_value.mean()))


# ---------------------------------------------------------------------------------------------------------------------
# Loss, Eq. 13-14: reward, value and consistency losses over the unroll, AWPO (or BC) policy loss at k = 0..K.
# ---------------------------------------------------------------------------------------------------------------------
def cross_entropy(logits, target):
    return -(target * logits.log_softmax(-1)).sum(-1)


def policy_loss(p_logits, legal, sampled, coef, legal_softmax=True):
    """l_p of Eq. 14: -sum_a coef(a) log pi(a | s_{t,k}), log pi(a) = sum_i log P(a^i | s^i_{t,k}) over the joint
    action; coef = omega(a) exp(A^/alpha) (AWPO) or omega(a) (BC). p_logits, legal [B, n, A], sampled [B, Ks, n].
    legal_softmax: pi is the softmax over the legal actions of s_{t+k}, as the search's root prior: a plain softmax (the
    authors', legal_softmax=False) pushes an attack's logit down in every state where it is illegal, and the search then
    rarely samples it when it is legal (before the bootstrap fix: 3m's training return fell below a random policy's
    within 5k steps). Masked entries get -1e9, not -inf, so that padded slots (coef 0) give 0, not NaN."""
    if legal_softmax:
        p_logits = torch.where(legal, p_logits, -1e9)
    logp = p_logits.log_softmax(-1).gather(2, sampled.transpose(1, 2)).sum(1)  # [B, Ks]
    return -(coef * logp).sum(-1)


def train_step(model, optimizer, b, args):
    """One gradient step on Eq. 13. Returns the logged losses and new priorities |v(s_t) - z_t| (authors' code)."""
    model.train()
    K, S = args.unroll_steps, args.support_size
    s, v_logits, p_logits = model.initial(b["obs"][:, 0])
    with torch.no_grad():  # consistency targets sg(proj(h(o_{t+k}))), k = 1..K, from the online network
        target_z = model.project(model.representation(b["obs"][:, 1:].flatten(0, 1)), False).view(len(s), K, -1)
    priority = (support_to_scalar(v_logits.detach(), S) - b["z"][:, 0]).abs().cpu().numpy() + 1e-6
    l_value = cross_entropy(v_logits, scalar_to_support(b["z"][:, 0], S))
    legal_softmax = args.policy_softmax == "legal"
    l_policy = policy_loss(p_logits, b["legal"][:, 0], b["sampled"][:, 0], b["coef"][:, 0], legal_softmax)
    l_reward = torch.zeros_like(l_value)
    l_consistency = torch.zeros_like(l_value)
    for k in range(1, K + 1):
        s, r_logits, v_logits, p_logits = model.recurrent(s, b["actions"][:, k - 1])
        if args.grad_scale_hook:  # the authors': all of s_{t,k}'s gradient, from its heads and from step k + 1
            s.register_hook(lambda grad: grad * 0.5)
        l_reward = l_reward + cross_entropy(r_logits, scalar_to_support(b["rewards"][:, k - 1], S))
        l_value = l_value + cross_entropy(v_logits, scalar_to_support(b["z"][:, k], S))
        l_policy = l_policy + policy_loss(p_logits, b["legal"][:, k], b["sampled"][:, k], b["coef"][:, k],
                                          legal_softmax)
        cos = F.cosine_similarity(model.project(s, True), target_z[:, k - 1], dim=-1)
        l_consistency = l_consistency - cos * b["real"][:, k]
        if not args.grad_scale_hook:
            s = scale_gradient(s, 0.5)  # MuZero: only the gradient passed on to step k + 1
    w = b["is_weight"]
    losses = dict(reward=(w * l_reward).mean(), value=(w * l_value).mean(), policy=(w * l_policy).mean(),
                  consistency=(w * l_consistency).mean())
    total = (args.reward_loss_coef * losses["reward"] + args.value_loss_coef * losses["value"]
             + args.policy_loss_coef * losses["policy"] + args.consistency_loss_coef * losses["consistency"])
    optimizer.zero_grad()
    (total / K).backward()  # the authors' code scales every gradient by 1 / K
    nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
    optimizer.step()
    losses["total"] = total
    return {k: v.item() for k, v in losses.items()}, priority


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation: decentralised greedy execution (each agent the argmax of its own masked policy head, paper Table 8), or
# with --eval-mcts noise-free search and the most visited joint action.
# ---------------------------------------------------------------------------------------------------------------------
def evaluate(model, env, args, device, cfg=None, rng=None):
    model.eval()
    E, quota = env.num_envs, -(-args.eval_episodes // env.num_envs)  # every env plays `quota` whole episodes
    obs, _, legal = env.reset()
    stack = push_frame(np.zeros((E, args.stacked_observations, *obs.shape[1:]), np.float32), obs, np.ones(E, bool))
    done_count, wins, returns = np.zeros(E, int), [], []
    while (done_count < quota).any():
        x = torch.as_tensor(flatten_stack(stack), device=device)
        if cfg is None:
            with torch.inference_mode():
                logits = model.initial(x)[2].cpu().numpy()
            actions = np.where(legal > 0, logits, -np.inf).argmax(-1)
        else:
            out, _ = search(model, x, legal > 0, cfg, rng, add_noise=False, **search_options(args))
            actions = out.actions[np.arange(E), out.visit_counts.argmax(1)]
        obs, _, legal, _, done, info = env.step(actions)
        for e in np.flatnonzero(done & (done_count < quota)):
            wins.append(float(info["won"][e]))
            returns.append(float(info["episode_return"][e]))
        done_count += done
        push_frame(stack, obs, done)
    return float(np.mean(wins)), float(np.mean(returns)), len(wins)


def parse_args():
    """Two passes: the first finds --preset and --checkpoint, which supply the defaults of the second, so that flags
    given on the command line win and a resumed run keeps its own settings."""
    first = tyro.cli(Args)
    if first.preset not in (None, "cpu"):
        fail(f"unknown preset {first.preset!r}; choose cpu")
    ckpt, default = None, Args(**CPU_PRESET, preset="cpu") if first.preset == "cpu" else Args()
    if first.checkpoint is not None:
        try:
            ckpt = torch.load(first.checkpoint, map_location="cpu", weights_only=False)
        except OSError as e:  # missing, a directory, no permission
            fail(f"cannot read checkpoint {first.checkpoint}: {e.strerror or e}")
        except Exception:  # torch's zip reader, pickle: truncated or not a torch file at all
            fail(f"checkpoint {first.checkpoint} is truncated or not a torch file")
        if not isinstance(ckpt, dict) or ckpt.get("script") != "mazero":
            fail(f"{first.checkpoint} is not a mazero.py checkpoint (script: {ckpt.get('script') if isinstance(ckpt, dict) else None})")
        default = Args(**{**ckpt["args"], "checkpoint": first.checkpoint, "eval_only": False})
    args = tyro.cli(Args, default=default)
    if ckpt is not None and args.map != ckpt["map"]:
        fail(f"checkpoint {args.checkpoint} is for map {ckpt['map']}, not {args.map}")
    if ckpt is not None and not args.eval_only and ckpt["counters"][0] >= args.total_timesteps:
        print(f"nothing to do: {ckpt['run_name']} is at step {ckpt['counters'][0]:,} of {args.total_timesteps:,} "
              f"(raise --total-timesteps to go on, or evaluate it with --eval-only)")
        sys.exit(0)  # its final evaluation is logged already: another one would log step N twice
    return args, ckpt


INFINITE_OK = {"awpo_weight_clip"}  # inf is the paper's unclipped AWPO weight


def validate(args):
    for f in fields(args):  # every float flag: NaN or inf (inf only where it means something) is one line naming it
        value = getattr(args, f.name)
        if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and f.name not in INFINITE_OK)):
            fail(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
    checks = [
        (args.num_sampled >= 1, f"--num-sampled (K) must be >= 1, got {args.num_sampled}"),
        (args.num_simulations >= 1, f"--num-simulations (N) must be >= 1, got {args.num_simulations}"),
        (args.reanalyse_simulations is None or args.reanalyse_simulations >= 1,
         f"--reanalyse-simulations must be >= 1, got {args.reanalyse_simulations}"),
        (0.0 <= args.rho <= 1.0, f"--rho must be in [0, 1], got {args.rho}"),
        (0.0 <= args.lam <= 1.0, f"--lam must be in [0, 1], got {args.lam}"),
        (args.alpha > 0, f"--alpha must be > 0, got {args.alpha}"),
        (args.awpo_weight_clip > 0, f"--awpo-weight-clip must be > 0, got {args.awpo_weight_clip}"),
        (args.action_temperature >= 0, f"--action-temperature must be >= 0, got {args.action_temperature}"),
        (args.temperature_schedule in ("constant", "muzero"),
         f"--temperature-schedule must be constant or muzero, got {args.temperature_schedule!r}"),
        (args.td_age_ratio >= 0, f"--td-age-ratio must be >= 0 (0: off), got {args.td_age_ratio}"),
        (args.num_envs >= 1, f"--num-envs must be >= 1, got {args.num_envs}"),
        (0.0 < args.gamma <= 1.0, f"--gamma must be in (0, 1], got {args.gamma}"),
        (args.policy_loss in ("awpo", "bc"), f"--policy-loss must be awpo or bc, got {args.policy_loss!r}"),
        (args.tree_legal_mask in ("all-nodes", "root"),
         f"--tree-legal-mask must be all-nodes or root, got {args.tree_legal_mask!r}"),
        (args.policy_softmax in ("legal", "all"),
         f"--policy-softmax must be legal or all, got {args.policy_softmax!r}"),
        (args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}"),
        (args.replay_window == 0 or args.replay_window >= args.batch_size,
         f"--replay-window must be 0 (all) or >= --batch-size ({args.batch_size}), got {args.replay_window}"),
        (min(args.unroll_steps, args.td_steps, args.stacked_observations) >= 1,
         "--unroll-steps, --td-steps and --stacked-observations must be >= 1"),
        (args.support_size >= 1 and args.hidden_size >= 8 and args.hidden_size % 8 == 0,
         "--support-size must be >= 1 and --hidden-size a multiple of 8 (8 attention heads)"),
        (min(args.total_timesteps, args.eval_interval, args.eval_episodes, args.checkpoint_interval,
             args.target_update_interval) >= 1,
         "--total-timesteps, --eval-interval, --eval-episodes, --checkpoint-interval, --target-update-interval must be >= 1"),
        (args.learning_rate > 0 and args.updates_per_env_step >= 0, "--learning-rate must be > 0, --updates-per-env-step >= 0"),
        (not args.eval_only or args.checkpoint is not None, "--eval-only needs --checkpoint"),
        (args.video_interval >= 1, f"--video-interval must be >= 1, got {args.video_interval}"),
        (args.map in games.SMAC_MAPS, f"unknown map {args.map!r}; maps available: {', '.join(games.SMAC_MAPS)}"),
    ]
    for ok, msg in checks:
        if not ok:
            fail(msg)


def search_config(args, simulations):
    return ctree_numpy.SearchConfig(
        num_simulations=simulations, num_sampled=args.num_sampled, gamma=args.gamma, rho=args.rho, lam=args.lam,
        os_lambda=args.os_lambda, dirichlet_alpha=args.dirichlet_alpha, dirichlet_fraction=args.dirichlet_fraction)


if __name__ == "__main__":
    args, ckpt = parse_args()
    validate(args)
    try:
        act_cfg = search_config(args, args.num_simulations)
        re_cfg = replace(act_cfg, num_simulations=args.reanalyse_simulations or args.num_simulations)
    except ValueError as e:
        fail(str(e))
    if args.track:
        try:
            import wandb
        except ImportError:
            fail("--track needs wandb: pip install wandb")
    if not args.eval_only:  # the run directory first: a bad one is one line, before any environment is built
        run_name, created_runs = make_run_dir(
            ckpt["run_name"] if ckpt is not None else f"{args.map}__{args.exp_name}__{args.seed}__{int(time.time())}",
            resume=ckpt is not None)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    rng = np.random.default_rng(args.seed)  # search, action sampling, replay sampling
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # small networks on a shared CPU: one thread is fastest (benchmarks/mazero_results.md)

    try:
        eval_env = games.make_starcraft(args.map, args.num_envs, args.seed + 10_000, args.backend)
        env = None if args.eval_only else games.make_starcraft(args.map, args.num_envs, args.seed, args.backend)
    except (ValueError, RuntimeError) as e:
        if not args.eval_only and ckpt is None:  # a new run that cannot start leaves nothing behind
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join("runs", run_name))
                if created_runs:
                    os.rmdir("runs")
        fail(str(e))
    n, A, obs_dim, E = eval_env.n_agents, eval_env.n_actions, eval_env.obs_dim, args.num_envs
    print(f"StarCraft backend: {eval_env.backend}; map {args.map}: {n} agents, {A} actions; device {device}",
          flush=True)

    model = MAZeroNet(n, obs_dim, A, args).to(device)
    target_model = MAZeroNet(n, obs_dim, A, args).to(device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        target_model.load_state_dict(ckpt["target_model"])
    else:
        target_model.load_state_dict(model.state_dict())
    if args.eval_only:
        if args.capture_video:
            eval_env.start_recording()
        win, ret, episodes = evaluate(model, eval_env, args, device, act_cfg if args.eval_mcts else None, rng)
        print(eval_line(ckpt["counters"][0], win, ret, episodes, args.eval_mcts), flush=True)
        if args.capture_video:
            path = os.path.join(os.path.dirname(args.checkpoint), "videos", f"step_{ckpt['counters'][0]}.gif")
            try:
                print(f"video: {eval_env.save_replay(path)}")
            except OSError as e:
                fail(f"cannot write {path}: {e.strerror or e}")
        sys.exit(0)

    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, eps=args.adam_eps,
                                 weight_decay=args.weight_decay)
    replay = Replay(args.total_timesteps + E * env.episode_limit, n, obs_dim, A, args.stacked_observations)
    global_step, updates, episodes, credit, next_eval, next_ckpt = 0, 0, 0, 0.0, 0, args.checkpoint_interval
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        replay.load_state_dict(ckpt.pop("replay"))  # popped: the loaded copy is freed once copied
        global_step, updates, episodes, credit, next_eval, next_ckpt = ckpt["counters"]
        random.setstate(ckpt["rng"]["python"])
        np.random.set_state(ckpt["rng"]["numpy"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        rng.bit_generator.state = ckpt["rng"]["generator"]
        print(f"resuming {run_name} at step {global_step:,} ({updates:,} updates)")
    else:
        print(f"run directory: runs/{run_name}")
    slow_cpu = device.type == "cpu" and args.preset is None
    if slow_cpu:
        print("note: the paper's settings on a CPU are very slow; --preset cpu learns 3m here", flush=True)

    if args.track:
        wandb.init(project=args.wandb_project_name, sync_tensorboard=True, config=vars(args), name=run_name,
                   save_code=True)
    from torch.utils.tensorboard import SummaryWriter

    # A checkpoint at step S is written after everything logged at steps <= S (see the loop), so a resumed run drops
    # only what the interrupted process logged later: steps > S (TensorBoard's purge_step keeps steps < purge_step).
    # Checkpoints of older versions were written before step S's evaluation (their next_ckpt <= S): purge S too.
    purge_step = None if ckpt is None else global_step + 1 if next_ckpt > global_step else global_step
    writer = SummaryWriter(f"runs/{run_name}", purge_step=purge_step)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))

    def save_checkpoint():
        path = f"runs/{run_name}/checkpoint.pt"
        torch.save({"script": "mazero", "map": args.map, "args": asdict(args), "run_name": run_name,
                    "model": model.state_dict(), "target_model": target_model.state_dict(),
                    "optimizer": optimizer.state_dict(), "replay": replay.state_dict(),
                    "counters": (global_step, updates, episodes, credit, next_eval, next_ckpt),
                    "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                            "torch": torch.get_rng_state(), "generator": rng.bit_generator.state}}, path + ".tmp")
        os.replace(path + ".tmp", path)

    evaluations = 0  # in this session; --capture-video records evaluations 0, k, 2k, ... (k = --video-interval)

    def run_evaluation():
        global evaluations
        record = args.capture_video and evaluations % args.video_interval == 0
        if record:
            eval_env.start_recording()  # env 0's first evaluation episode
        win, ret, n_episodes = evaluate(model, eval_env, args, device, act_cfg if args.eval_mcts else None, rng)
        if record:
            eval_env.save_replay(f"runs/{run_name}/videos/step_{global_step}.gif")
        evaluations += 1
        writer.add_scalar("eval/win_rate", win, global_step)
        writer.add_scalar("eval/episodic_return", ret, global_step)
        print(eval_line(global_step, win, ret, n_episodes, args.eval_mcts), flush=True)

    clock = {"env": 0.0, "model": 0.0, "tree": 0.0, "reanalyse_model": 0.0, "reanalyse_tree": 0.0, "train": 0.0}
    clock_str = lambda: ", ".join(f"{k} {v:.0f}" for k, v in clock.items())  # noqa: E731
    total_updates = max(1.0, args.total_timesteps * args.updates_per_env_step)
    start_time, start_step, start_updates = time.time(), global_step, updates
    lines = [(start_time, global_step)]  # (time, step) of the previous progress lines, the last one last
    recent_wins, recent_returns = [], []  # training episodes finished since the previous progress line

    def progress(force=False):
        """A progress line every PROGRESS_SECONDS (called after every env step and every update) and at the end."""
        now = time.time()
        if not force and now - lines[-1][0] < PROGRESS_SECONDS:
            return
        sps = (global_step - lines[-1][1]) / max(now - lines[-1][0], 1e-9)
        # an interval without a finished env step (its updates took longer than the interval: the paper's settings on
        # a CPU) has no rate of its own: the ETA then uses the rate since the last line at an earlier step
        then, step = next(((t, s) for t, s in reversed(lines) if s < global_step), (now, global_step))
        rate = (global_step - step) / max(now - then, 1e-9)
        eta = (args.total_timesteps - global_step) / rate if rate > 0 else None
        print(progress_line(global_step, args.total_timesteps, sps, updates, recent_wins, recent_returns, eta),
              flush=True)
        lines[:] = [*lines[-9:], (now, global_step)]
        recent_wins.clear()
        recent_returns.clear()

    def cpu_note():
        """Once, after the first few updates without --preset on a CPU: what the paper's settings cost here."""
        per_update = (clock["reanalyse_model"] + clock["reanalyse_tree"] + clock["train"]) / (updates - start_updates)
        per_step = (clock["env"] + clock["model"] + clock["tree"]) / max(global_step - start_step, 1)  # acting
        left_updates = max(0, int(total_updates) - updates)
        eta = left_updates * per_update + (args.total_timesteps - global_step) * per_step
        print(f"note: {per_update:.1f} s per update and {per_step:.2f} s of acting per env step measured on this CPU: "
              f"{left_updates:,} updates and {args.total_timesteps - global_step:,} env steps to go take about "
              f"{hms(eta)} (H:MM:SS, {eta / 86_400:.1f} days); faster here: "
              f"python mazero.py --map {args.map} --preset cpu", flush=True)

    obs, _, legal = env.reset()
    stack = push_frame(np.zeros((E, args.stacked_observations, n, obs_dim), np.float32), obs, np.ones(E, bool))
    games_in_progress = [[] for _ in range(E)]  # per env: (frame, legal, action, reward) of the running episode
    while global_step < args.total_timesteps:
        if global_step >= next_eval:
            run_evaluation()
            next_eval += args.eval_interval
        if args.save_model and global_step >= next_ckpt:  # after the evaluation: the checkpoint holds all of step S
            next_ckpt += args.checkpoint_interval
            save_checkpoint()

        # act: one batched search over the E envs, joint action sampled from the visit counts (temperature tau)
        model.eval()
        t0 = time.perf_counter()
        out, _ = search(model, torch.as_tensor(flatten_stack(stack), device=device), legal > 0, act_cfg, rng,
                        add_noise=True, clock=clock, **search_options(args))
        sims_per_second = E * act_cfg.num_simulations / (time.perf_counter() - t0)
        slot = sample_slot(out.visit_counts, action_temperature(args, global_step), rng)  # [E]
        actions = out.actions[np.arange(E), slot]                                   # [E, n]
        t0 = time.perf_counter()
        next_obs, _, next_legal, reward, done, info = env.step(actions)
        clock["env"] += time.perf_counter() - t0
        for e in range(E):
            games_in_progress[e].append((obs[e], legal[e] > 0, actions[e], reward[e]))
            if done[e]:
                frames, legals, acts, rews = map(np.stack, zip(*games_in_progress[e]))
                replay.add_game(frames, acts, rews, legals)
                games_in_progress[e] = []
                episodes += 1
                recent_wins.append(float(info["won"][e]))
                recent_returns.append(float(info["episode_return"][e]))
                writer.add_scalar("charts/episodic_return", info["episode_return"][e], global_step + E)
                writer.add_scalar("charts/win_rate", float(info["won"][e]), global_step + E)
        obs, legal = next_obs, next_legal
        push_frame(stack, obs, done)
        global_step += E
        p = out.policy
        writer.add_scalar("search/root_value", out.root_value.mean(), global_step)
        writer.add_scalar("search/visit_entropy", -(p * np.log(np.where(p > 0, p, 1))).sum(1).mean(), global_step)
        writer.add_scalar("search/simulations_per_second", sims_per_second, global_step)
        progress()

        # learn: the updates these transitions pay for, each on a freshly reanalysed batch
        if replay.size >= max(args.min_replay_size, args.batch_size):
            credit += E * args.updates_per_env_step
        while credit >= 1:
            credit -= 1
            beta = min(1.0, args.priority_beta + (1 - args.priority_beta) * updates / total_updates)
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = args.learning_rate * max(0.0, 1 - updates / total_updates)
            re_clock = {"model": 0.0, "tree": 0.0}
            batch = make_batch(replay, target_model, args, re_cfg, rng, device, beta, re_clock)
            clock["reanalyse_model"] += re_clock["model"]
            clock["reanalyse_tree"] += re_clock["tree"]
            t0 = time.perf_counter()
            losses, priority = train_step(model, optimizer, batch, args)
            clock["train"] += time.perf_counter() - t0
            replay.priority[batch["idx"]] = priority
            updates += 1
            if updates % args.target_update_interval == 0:
                target_model.load_state_dict(model.state_dict())
            for k, v in losses.items():
                writer.add_scalar(f"losses/{k}", v, global_step)
            writer.add_scalar("search/reanalyse_root_value", batch["root_value"], global_step)
            writer.add_scalar("charts/updates", updates, global_step)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            if slow_cpu and updates - start_updates == 3:
                cpu_note()
            progress()
        writer.add_scalar("charts/SPS", (global_step - start_step) / (time.time() - start_time), global_step)

    progress(force=True)
    run_evaluation()
    next_eval, next_ckpt = global_step + args.eval_interval, global_step + args.checkpoint_interval  # both just done
    if args.save_model:
        save_checkpoint()
        print(f"checkpoint: runs/{run_name}/checkpoint.pt")
    print(f"done: {global_step:,} env steps, {updates:,} updates, {time.time() - start_time:.0f} s; "
          f"seconds {clock_str()}", flush=True)
    env.close()
    eval_env.close()
    writer.close()
