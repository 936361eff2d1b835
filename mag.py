# Models as Agents: Optimizing Multi-Step Predictions of Interactive Local Models in Model-Based MARL (AAAI 2024): MAG on a MAMBA world model. README section "mag.py".
"""MAG (Wu, Yu, Chen, Hao, Zhuo; AAAI 2024) end to end, on the MAMBA world model (Egorov & Shpilman 2022).

    python mag.py --map 3m                     # paper sizes and schedule (MAMBA + MAG Appendix B): a GPU run
    python mag.py --map 3m --preset cpu        # small model, fewer updates per episode (CPU_PRESET below)
    python mag.py --map 3m --no-mag --model-lr 2e-4   # the paper's MAMBA baseline (MAMBA's model learning rate)
    python mag.py --map 3m --no-mag            # planning ablated alone: MAMBA's rollouts at MAG's 5e-4
    python mag.py --checkpoint runs/RUN/checkpoint.pt              # resume (its settings; flags override)
    python mag.py --checkpoint runs/RUN/checkpoint.pt --eval-only  # greedy evaluation only
    python mag.py --checkpoint runs/RUN/checkpoint.pt --eval-only --capture-video   # ... and watch it (GIF)

Console: a progress line at least every 30 s and at the end ("updates" are learner steps, one per finished
episode), an evaluation line at step 0, every --eval-interval and at the end (TensorBoard logs, checkpoint and
videos in runs/{map}__{exp_name}__{seed}__{time}, suffixed _2, _3, ... if taken):
    step 12,345/50,000 (25%) | 13.2 env steps/s | 3,086 updates | train win rate 0.31, return 12.40 | ETA 0:47:36
    eval at step 12,345: win rate 0.406, return 15.21 (32 episodes, greedy)

The file follows Algorithm 1 of the paper:
    line 3      collect episodes in the real env with π acting on the world model's posterior features
    line 4      world_model_loss: one-step prediction loss on real sequences from D_e
    line 5      rm_loss: R̂_m regresses the model's per-transition prediction error (Sec. 3.3)
    lines 6-14  imagine + plan_to_predict: for every imagined step, L rollouts of H steps in which the
                local models interact with the current joint policy; keep the first prediction of the
                rollout with the least R̂_m over its predictions (Sec. 3.3 "Planning to predict")
    lines 16-18 ppo_update: PPO actor and attention critic on the imagined data D_m (as MAMBA)

Where this departs from the paper or the authors' code (ZifanWu/MAG, built on jbr-ai-labs/mamba):
- Dead agents and episode ends (`--mag-living-mean`, default; the paper's sum over all agents:
  `--no-mag-living-mean`). A dead agent's observation is all zeros and is predicted almost exactly: under the
  paper's sum, R̂_m's label was 0.28 for dead agents vs 1.64 for living ones on 3m, and the planner picked futures
  with more dead allies and earlier ends (issue 15). Here R̂_m is trained on the agents alive in a real o_{t+1}
  (mask dead agents and transitions into the absorbing row), and the planner's score counts each of its N·H terms
  as R̂_m only in proportion to the model's P(agent alive) · P(no end yet) in the predicted state (legal-action
  and pcont heads) and otherwise as that agent's own mean R̂_m over the start state's scored predictions of the same
  step (`--mag-agent-mean`, default; `--no-mag-agent-mean`: the mean over all agents, this script's earlier form).
  A per-candidate mean would let R̂_m's untrained values decide for a rollout that ends at once, a sum of the scored
  terms alone would keep the bias, and the all-agent mean still favours the death of an agent with an
  above-average R̂_m (one in the fight). Measured with benchmarks/mag_model_error.py's dead_* columns (MAG minus
  MAMBA expected dead allies per imagined step): on one 3m model at 1.6k env steps +0.03 to +0.18 under the sum,
  +0.014 to +0.024 at steps 1-3 with the all-agent mean; on one model at 20k (sweep F's MAG seed 1) +0.020 / +0.095
  / +0.011 at steps 1 / 5 / 10 with the all-agent mean and +0.008 / +0.025 / -0.054 with the agent's own mean
  (s.e. 0.002-0.010): cut by 59-76% at steps 1-6, not to 0. What remains is not the imputation's (a death adds
  exactly 0 to a candidate's score under it); a guess, not measured: the other agents' R̂_m may be lower once an ally
  is dead.
- The best candidate is chosen per start state, as the paper describes. The authors' code takes one
  argmin of the batch-averaged error for all start states at once: `--mag-global-argmin`.
- R̂_m's label is Sec. 3.3's prediction error ||ô^i' - o^i'||_2 + |R̂^i - R| of a prediction *sampled from
  the prior*, and R̂_m's input is the feature of that same sample (one pass). The authors' code labels with
  the posterior's training losses (KL + heads, reconstruction divided down to ~0) and takes the inputs from a
  second, independently sampled pass.
- Heads read the state a transition reaches, s_{t+1} = (h_{t+1}, z_{t+1}), for o_{t+1}, avail(o_{t+1}),
  r_t and 1 - done_t (DreamerV2's layout). MAMBA reads the reward/continuation of step t+1 from
  [z_{t+1}, h_{t+2}], which costs an extra transition per imagined step.
- The reset state is h = 0 with the posterior of the first observation (MAMBA applies one transition from a
  zero state first). Episode starts and row 0 of every window are world-model targets from it, as MAMBA
  predicts them from its zero state (`--no-first-obs-loss`: this script's earlier form, never a target).
- Not kept from MAMBA: its action-prediction ("info") loss and its xavier initialisation.
- R̂_m's gradient norm is clipped at 100 like every other network's; the authors' code does not clip it.
- Two absorbing rows (zero obs, `fake`, done, reward 0) follow a true termination, as MAMBA: the first
  teaches the last reward and the done flag, the second the transition out of the first (a random action,
  as MAMBA), so imagined steps just after a predicted end stay absorbing with zero reward; past the second,
  as in MAMBA, the transition is untrained (λ-returns are cut there by the predicted continuation). The
  imagined data after a predicted end stay in PPO's loss, as MAMBA's; `mag/imagined_running` logs P(no end
  within the horizon). `--absorbing-rows 1`: this script's earlier single row, after which nothing was
  trained (9-20% of PPO's imagined data came after a predicted end). After a time-out the last transition
  has no next observation and is masked out of the model losses.
- The world model acts in eval mode (dropout off) and trains in train mode, as MAMBA (`--act-dropout`: this
  script's earlier form, dropout on while acting).
- Evaluation: greedy (argmax) episodes on separate envs, `eval/win_rate`. The authors had none: they
  report the running win rate of the last 20 stochastic training episodes, logged as `charts/win_rate`.
- Batched envs: one learner step (Algorithm 1 lines 4-18) after every finished episode of any env, as
  MAMBA's parallel workers do; the other envs' running episodes go on with the updated policy.
- L and H: the paper's Appendix B table where the map is in it, otherwise the authors' code's L=4, H=6.
- Model learning rate 5e-4, as the paper (Appendix B) and the authors' code run MAG; MAMBA's is 2e-4, so
  the paper's MAMBA baseline is `--no-mag --model-lr 2e-4` and `--no-mag` alone ablates planning only.
- Checkpoints written before --mag-living-mean, --first-obs-loss, --absorbing-rows and --act-dropout existed
  resume with the earlier forms (LEGACY_ARGS).
- StarCraft is SMAX unless StarCraft II is installed (games.py): results are not SMAC numbers.
"""
import dataclasses
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
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
    """resume from this checkpoint (with --eval-only: just evaluate it)"""
    eval_only: bool = False
    """evaluate --checkpoint and exit"""
    preset: str = "paper"
    """`paper`: MAMBA's sizes and schedule with MAG's Appendix B (for a GPU); `cpu`: CPU_PRESET below"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""

    map: str = "3m"
    """SMAC map, one of games.SMAC_MAPS.
    SMAX or SC2: 3m, 8m, 25m, 2m_vs_1z, 5m_vs_6m, 8m_vs_9m, 10m_vs_11m, 27m_vs_30m, 2s3z, 3s5z, 3s5z_vs_3s6z, 3s_vs_3z,
    3s_vs_4z, 3s_vs_5z, 6h_vs_8z, corridor. SMACv2 on SMAX only: smacv2_5_units, smacv2_10_units, smacv2_20_units.
    StarCraft II only: MMM, MMM2, 1c3s5z, 2c_vs_64zg, so_many_baneling, bane_vs_bane, 2s_vs_1sc, and the SMACv2 maps
    {protoss,terran,zerg}_{5_vs_5,10_vs_10,20_vs_20,10_vs_11,20_vs_23}."""
    backend: str = "auto"
    """StarCraft backend: auto (SC2 if installed, else SMAX), smax or sc2"""
    num_envs: int = 2
    """parallel training envs (MAMBA's README runs 2 workers)"""
    total_timesteps: int = 1_000_000
    """real env steps (authors' train.py: 1e6)"""
    eval_interval: int = 10_000
    """greedy evaluation every this many env steps"""
    eval_episodes: int = 32
    """greedy evaluation episodes (a fixed quota per eval env)"""
    checkpoint_interval: int = 50_000
    """write a checkpoint every this many env steps"""

    # world model (MAMBA's DreamerAgentConfig; MAG keeps it, Appendix B)
    hidden: int = 256
    """width of the MLPs, the observation embedding and the attention (MAMBA: 256)"""
    deter: int = 256
    """size of the GRU state h (MAMBA DETERMINISTIC: 256)"""
    n_categoricals: int = 32
    """categorical variables in the stochastic latent z (MAMBA: 32)"""
    n_classes: int = 32
    """classes per categorical (MAMBA: 32)"""
    attn_layers: int = 3
    """transformer layers across agents in the transition (MAMBA: 3)"""
    attn_heads: int = 8
    """attention heads (MAMBA: 8)"""
    attn_dropout: float = 0.1
    """dropout in the transition's transformer (MAMBA: 0.1)"""
    kl_balance: float = 0.8
    """KL balancing α: α KL(sg(q)||p) + (1-α) KL(q||sg(p)) (MAMBA/DreamerV2: 0.8)"""
    first_obs_loss: bool = True
    """episode starts and row 0 of each window are targets from the reset state h=0 (MAMBA); --no-: earlier form"""
    model_lr: float = 5e-4
    """world-model learning rate (MAG Appendix B: 5e-4; MAMBA: 2e-4, the paper's baseline: --no-mag --model-lr 2e-4)"""
    model_epochs: int = 60
    """world-model updates per learner step (MAMBA MODEL_EPOCHS: 60)"""
    model_batch_size: int = 40
    """sequences per world-model batch (MAMBA: 40)"""
    seq_length: int = 20
    """rows per sequence, i.e. seq_length-1 transitions (MAMBA SEQ_LENGTH: 20)"""
    buffer_capacity: int = 250_000
    """D_e capacity in rows, all envs together (MAMBA: 250,000)"""
    min_buffer_size: int = 500
    """rows in D_e before learning starts (MAMBA: 500)"""
    absorbing_rows: int = 2
    """absorbing rows after a true termination (MAMBA: 2, training the step out of the first; 1: earlier form)"""
    act_dropout: bool = False
    """world-model dropout on while acting (earlier form); MAMBA acts in eval mode, dropout off"""
    grad_clip: float = 100.0
    """gradient-norm clip of every network (MAMBA: 100)"""

    # R̂_m, the model-reward predictor (MAG Sec. 3.3, Appendix B)
    rm_layers: int = 4
    """hidden layers of R̂_m (Appendix B: 4)"""
    rm_hidden: int = 256
    """width of R̂_m (Appendix B: 256)"""
    rm_lr: float = 5e-4
    """R̂_m learning rate (authors' code: 5e-4)"""
    rm_epochs: int = 60
    """R̂_m updates per learner step (authors' code: 60)"""

    # planning to predict (Algorithm 1 lines 6-14)
    mag: bool = True
    """plan the model's predictions (MAG); --no-mag: one-step model rollouts (MAMBA)"""
    mag_l: Optional[int] = None
    """L, parallel rollouts per prediction (Appendix B Table 1 per map, else authors' code: 4)"""
    mag_h: Optional[int] = None
    """H, planning horizon, H <= horizon (Appendix B Table 1 per map, else authors' code: 6)"""
    mag_global_argmin: bool = False
    """one argmin of the batch-averaged error for all start states (authors' code) instead of one per start"""
    mag_living_mean: bool = True
    """R̂_m labels and planner scores over living agents before a predicted end; --no-: the paper's sum over all"""
    mag_agent_mean: bool = True
    """living mean: an unscored term counts at its agent's own mean R̂_m of the step; --no-: all agents' mean"""

    # policy learning on model data (MAMBA)
    horizon: int = 15
    """imagined rollout length k (MAMBA: 15)"""
    imag_batch_size: int = 40
    """sequences whose posterior states start the rollouts, (seq_length) starts each (MAMBA: 40)"""
    agent_epochs: int = 4
    """imagination + PPO rounds per learner step (MAMBA EPOCHS: 4)"""
    ppo_epochs: int = 5
    """PPO passes over the imagined data (MAMBA: 5)"""
    ppo_minibatch: int = 2000
    """imagined samples (each with N agents) per PPO minibatch (MAMBA: 2000)"""
    clip_coef: float = 0.2
    """PPO ratio clip (MAMBA: 0.2)"""
    actor_lr: float = 5e-4
    """actor learning rate (MAMBA: 5e-4)"""
    critic_lr: float = 5e-4
    """critic learning rate (MAMBA: 5e-4)"""
    gamma: float = 0.99
    """discount γ (MAMBA: 0.99)"""
    lam: float = 0.95
    """λ of the λ-returns (MAMBA DISCOUNT_LAMBDA: 0.95)"""
    ent_coef: float = 0.001
    """entropy bonus weight (MAMBA ENTROPY: 0.001)"""
    ent_annealing: float = 0.99998
    """entropy weight multiplier after every actor update (MAMBA: 0.99998)"""


# The CPU preset: the same algorithm, smaller and with fewer updates per episode. Values chosen so a
# 3m run makes progress on a shared 2-core CPU (benchmarks/mag_results.md). Flags still override.
CPU_PRESET = dict(
    hidden=64, deter=64, n_categoricals=8, n_classes=8, attn_layers=1, attn_heads=4,
    model_epochs=8, model_batch_size=16, rm_hidden=64, rm_epochs=8,
    agent_epochs=1, imag_batch_size=8, ppo_epochs=3, ppo_minibatch=500, threads=1,
    num_envs=8, eval_interval=2_000, checkpoint_interval=5_000, total_timesteps=60_000,
)

# MAG Appendix B, Table 1: (L, H) per SMAC map. Maps not in the table use the authors' code's (4, 6).
MAG_LH = {"2s_vs_1sc": (5, 10), "3s_vs_3z": (5, 10), "2s3z": (5, 10), "3s_vs_4z": (4, 10),
          "3s_vs_5z": (5, 7), "2c_vs_64zg": (5, 7), "corridor": (4, 6), "3s5z_vs_3s6z": (4, 7)}
MAG_LH_DEFAULT = (4, 6)


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
    """The console's progress line (the same in all four scripts); wins, returns: training episodes since the last.
    mag.py's updates are learner steps (Algorithm 1 lines 4-18, one per finished episode)."""
    train = (f"train win rate {np.mean(wins):.2f}, return {np.mean(returns):.2f}" if len(wins)
             else "train win rate n/a, return n/a")
    return (f"step {step:,}/{total:,} ({100 * step / total:.0f}%) | {sps:.1f} env steps/s | {updates:,} updates | "
            f"{train} | ETA {'n/a' if eta is None else hms(max(0.0, eta))}")


def eval_line(step, win, ret, episodes):
    return f"eval at step {step:,}: win rate {win:.3f}, return {ret:.2f} ({episodes} episodes, greedy)"


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


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------
def mlp(inp, hidden, out, layers, act=nn.ReLU):
    """`layers` hidden layers of width `hidden`, then a linear output."""
    mods, d = [], inp
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), act()]
        d = hidden
    return nn.Sequential(*mods, nn.Linear(d, out))


def sample_index(logits):
    """A sample of each categorical over the last axis, by inverting its CDF with one uniform number (a
    few times cheaper on a CPU than torch.distributions). u lies in (0, total], so a class of
    probability 0 (a masked action) is never drawn. [..., K] -> [...]"""
    cdf = logits.softmax(-1).cumsum(-1)
    u = (1 - torch.rand(cdf.shape[:-1], device=cdf.device))[..., None] * cdf[..., -1:]
    return (cdf < u).sum(-1)


def sample_onehot(logits):
    return F.one_hot(sample_index(logits), logits.shape[-1]).to(logits.dtype)


def straight_through_sample(logits):
    """A one-hot sample with the gradient of the probabilities (straight-through, DreamerV2/MAMBA)."""
    probs = logits.softmax(-1)
    return sample_onehot(logits) + probs - probs.detach()


def kl_balanced(post_logits, prior_logits, alpha):
    """KL balancing (DreamerV2, MAMBA): α KL(sg(q)||p) trains the prior towards the posterior, (1-α)
    KL(q||sg(p)) regularises the posterior. Each KL is summed over classes and averaged over the
    categoricals. [..., C, K] -> [...]"""
    def kl(q_logits, p_logits):
        return (q_logits.softmax(-1) * (q_logits.log_softmax(-1) - p_logits.log_softmax(-1))).sum(-1).mean(-1)
    return alpha * kl(post_logits.detach(), prior_logits) + (1 - alpha) * kl(post_logits, prior_logits.detach())


class AgentAttention(nn.Module):
    """A transformer encoder whose sequence axis is the agents, after a fixed sinusoidal code of the
    agent index (MAMBA's AttentionEncoder: post-norm, ReLU, feed-forward width d)."""

    def __init__(self, n_agents, d, heads, layers, dropout):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=d, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        pos = torch.arange(n_agents, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
        code = torch.zeros(n_agents, d)
        code[:, 0::2], code[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        self.register_buffer("code", code, persistent=False)

    def forward(self, x):  # [B, N, d]
        return self.encoder(x + self.code)


class WorldModel(nn.Module):
    """MAMBA's RSSM: N local models P̂^i with shared weights. Agent i's latent state is s^i = (h^i, z^i):
    h^i deterministic (GRU), z^i stochastic (C categoricals of K classes). The local models exchange
    information only through the attention across agents in the transition (the paper's
    (f^1..f^N) = Attention(l^1..l^N), Sec. 1), which is what lets one model's error reach the others."""

    def __init__(self, n_agents, obs_dim, n_actions, args):
        super().__init__()
        H, D = args.hidden, args.deter
        self.C, self.K, self.n_actions = args.n_categoricals, args.n_classes, n_actions
        S = self.C * self.K
        self.feat_dim = S + D
        self.encoder = mlp(obs_dim, H, H, 3)  # e(o)
        self.action_latent = nn.Sequential(nn.Linear(n_actions + S, H), nn.ReLU())  # l^i = (z^i, a^i)
        self.attention = AgentAttention(n_agents, H, args.attn_heads, args.attn_layers, args.attn_dropout)
        self.gru = nn.GRUCell(H, D)
        self.prior_net = mlp(D, H, S, 1)  # p(z_{t+1} | h_{t+1})
        self.posterior_net = mlp(D + H, H, S, 1)  # q(z_{t+1} | h_{t+1}, o_{t+1})
        self.decoder = mlp(S + D, H, obs_dim, 3)  # ô_{t+1}
        self.reward = mlp(S + D, H, 1, 2, nn.ELU)  # R̂_t, the team reward, predicted by every local model
        self.pcont = mlp(S + D, H, 1, 2, nn.ELU)  # logit of 1 - done_t
        self.avail = mlp(S + D, H, n_actions, 2, nn.ELU)  # logits of avail(o_{t+1}), Bernoulli per action

    def transition(self, action_onehot, z, h):
        """h_{t+1} = GRU(Attention_i(MLP[a_t, z_t]), h_t) and the prior logits of z_{t+1}.
        action_onehot [B, N, A], z [B, N, C, K], h [B, N, D] -> h [B, N, D], logits [B, N, C, K]."""
        B, N = h.shape[:2]
        x = self.attention(self.action_latent(torch.cat([action_onehot, z.flatten(-2)], -1)))  # [B, N, H]
        h = self.gru(x.reshape(B * N, -1), h.reshape(B * N, -1)).view(B, N, -1)
        return h, self.prior_net(h).view(B, N, self.C, self.K)

    def posterior(self, h, obs):
        """Posterior logits of z_t from h_t and the real o_t. [B, N, D], [B, N, O] -> [B, N, C, K]."""
        return self.posterior_net(torch.cat([h, self.encoder(obs)], -1)).view(*h.shape[:2], self.C, self.K)

    @staticmethod
    def feat(h, z):
        return torch.cat([z.flatten(-2), h], -1)  # [..., C*K + D]


class ModelErrorPredictor(nn.Module):
    """R̂_m (Sec. 3.3, Appendix B: 4 layers of 256): the prediction error expected of a local model that
    has predicted the latent state s^i_{t+1}, i.e. the model-reward R_m of the model MMDP with its sign
    flipped (an error to minimise). One network shared by the agents, on detached features."""

    def __init__(self, feat_dim, hidden, layers):
        super().__init__()
        self.net = mlp(feat_dim, hidden, 1, layers, nn.ELU)

    def forward(self, feat):  # [..., F] -> [...]
        return self.net(feat).squeeze(-1)


class Actor(nn.Module):
    """π^i(a | s^i): an MLP on agent i's own latent feature (MAMBA: 2 layers of 256, shared weights)."""

    def __init__(self, feat_dim, hidden, n_actions):
        super().__init__()
        self.net = mlp(feat_dim, hidden, n_actions, 2)

    def forward(self, feat):  # [..., F] -> [..., A]
        return self.net(feat)


class Critic(nn.Module):
    """V^i(s): agent i's feature, then one attention layer across agents (MAMBA's centralised critic)."""

    def __init__(self, n_agents, feat_dim, hidden, heads):
        super().__init__()
        self.embed = nn.Linear(feat_dim, hidden)
        self.attention = AgentAttention(n_agents, hidden, heads, 1, 0.0)
        self.head = mlp(hidden, hidden, 1, 1)

    def forward(self, feat):  # [B, N, F] -> [B, N]
        x = self.attention(F.relu(self.embed(feat)))
        return self.head(F.relu(x)).squeeze(-1)


def masked_logits(logits, avail):
    """Legal-action mask: unavailable actions get -1e10 (not -inf, so an all-zero mask stays finite)."""
    return logits.masked_fill(avail < 0.5, -1e10)


def policy_step(wm, actor, feat, greedy=False):
    """Line 9 in imagination: avail ~ Bernoulli(the model's avail head), then a^i ~ π^i(.|s^i) over the
    legal actions. feat [..., F] -> action [...], avail [..., A], masked logits [..., A]."""
    avail = torch.bernoulli(torch.sigmoid(wm.avail(feat)))
    logits = masked_logits(actor(feat), avail)
    action = logits.argmax(-1) if greedy else sample_index(logits)
    return action, avail, logits


# ---------------------------------------------------------------------------------------------
# The environment dataset D_e: one row per env step, a stream per env
# ---------------------------------------------------------------------------------------------
def make_buffer(num_envs, capacity, n_agents, obs_dim, n_actions):
    """Row t of env e: o_t, avail(o_t), a_t, r_t, done_t, first_t (o_t starts an episode) and fake_t
    (an absorbing row written after a true termination). Sequences never mix envs."""
    C = capacity // num_envs
    return dict(obs=np.zeros((num_envs, C, n_agents, obs_dim), np.float32),
                avail=np.zeros((num_envs, C, n_agents, n_actions), np.float32),
                action=np.zeros((num_envs, C, n_agents), np.int64),
                reward=np.zeros((num_envs, C), np.float32), done=np.zeros((num_envs, C), np.float32),
                first=np.zeros((num_envs, C), np.float32), fake=np.zeros((num_envs, C), np.float32),
                ptr=np.zeros(num_envs, np.int64), size=np.zeros(num_envs, np.int64))


def buffer_add(buf, e, **row):
    i = buf["ptr"][e]
    for k, v in row.items():
        buf[k][e, i] = v
    buf["ptr"][e] = (i + 1) % buf["obs"].shape[1]
    buf["size"][e] = min(buf["size"][e] + 1, buf["obs"].shape[1])


def buffer_sample(buf, batch_size, length, rng, device):
    """`batch_size` windows of `length` consecutive rows of one env, never across the write pointer.
    Returns tensors shaped [length, batch, ...]."""
    C = buf["obs"].shape[1]
    room = np.maximum(buf["size"] - length + 1, 0)
    envs = rng.choice(len(room), batch_size, p=room / room.sum())
    oldest = np.where(buf["size"] == C, buf["ptr"], 0)[envs]
    starts = oldest + (rng.random(batch_size) * room[envs]).astype(np.int64)
    idx = (starts[:, None] + np.arange(length)) % C  # [B, T]
    out = {k: torch.as_tensor(buf[k][envs[:, None], idx].swapaxes(0, 1)).to(device)
           for k in ("obs", "avail", "action", "reward", "done", "first", "fake")}
    out["action_onehot"] = F.one_hot(out["action"], buf["avail"].shape[-1]).float()
    return out


# ---------------------------------------------------------------------------------------------
# Algorithm 1 line 4: train the local models on D_e via one-step prediction
# ---------------------------------------------------------------------------------------------
def observe(wm, batch):
    """Filter real sequences: posterior states s_t = (h_t, z_t) and prior logits of z_t, t = 0..T. The history
    restarts (h = 0, the reset state the agents act from) at row 0 and at rows that begin an episode; there the
    prior is the reset state's, p(z | h = 0), else the transition's from s_{t-1} and a_{t-1}.
    Returns h [T+1, B, N, D], z [T+1, B, N, C, K], prior and posterior logits [T+1, B, N, C, K]."""
    obs, a, first = batch["obs"], batch["action_onehot"], batch["first"]
    h = torch.zeros(*obs.shape[1:3], wm.gru.hidden_size, device=obs.device)
    reset_prior = wm.prior_net(h).view(*h.shape[:2], wm.C, wm.K)
    post = wm.posterior(h, obs[0])
    hs, zs, priors, posts = [h], [straight_through_sample(post)], [reset_prior], [post]
    for t in range(obs.shape[0] - 1):
        h, prior = wm.transition(a[t], zs[-1], h)
        new = first[t + 1][:, None, None]  # a new episode: no history
        h = h * (1 - new)
        prior = torch.where(new[..., None] > 0, reset_prior, prior)
        post = wm.posterior(h, obs[t + 1])
        hs.append(h), zs.append(straight_through_sample(post)), priors.append(prior), posts.append(post)
    return torch.stack(hs), torch.stack(zs), torch.stack(priors), torch.stack(posts)


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def world_model_loss(wm, batch, kl_balance, first_obs_loss=True):
    """One-step prediction loss (line 4): balanced KL + reconstruction + reward + continuation + avail.
    Transition t (a_t from row t) is scored on the posterior state s_{t+1}; it counts only if row t+1
    continues the same episode, and its observation terms only if o_{t+1} is real (not absorbing).
    first_obs_loss (MAMBA): the rows whose state is the reset state, row 0 of the window and each episode's
    first row, are targets too: KL of their posterior to the reset prior, reconstruction and avail (no reward
    or continuation: no transition leads into them). MAMBA starts every window, and every episode, from a
    zero state and predicts the first observation from it."""
    h, z, prior, post = observe(wm, batch)  # [T+1, ...]
    valid = 1 - batch["first"][1:]  # [T, B]
    reset = torch.cat([torch.ones_like(valid[:1]), batch["first"][1:]])  # [T+1, B]
    rows = torch.cat([torch.zeros_like(valid[:1]), valid]) + (reset if first_obs_loss else 0)  # [T+1, B]
    seen = rows * (1 - batch["fake"])
    feat = wm.feat(h, z)  # [T+1, B, N, F]
    kl = kl_balanced(post, prior, kl_balance).mean(-1)  # [T+1, B], mean over agents
    rec = F.smooth_l1_loss(wm.decoder(feat), batch["obs"], reduction="none").sum(-1).mean(-1)
    av = F.binary_cross_entropy_with_logits(wm.avail(feat), batch["avail"], reduction="none").sum(-1).mean(-1)
    rew = F.smooth_l1_loss(wm.reward(feat[1:]).squeeze(-1), batch["reward"][:-1, :, None].expand_as(feat[1:, ..., 0]),
                           reduction="none").mean(-1)
    pcont = F.binary_cross_entropy_with_logits(wm.pcont(feat[1:]).squeeze(-1),
                                               (1 - batch["done"][:-1, :, None]).expand_as(feat[1:, ..., 0]),
                                               reduction="none").mean(-1)
    losses = dict(model_kl=masked_mean(kl, rows), reconstruction=masked_mean(rec, seen),
                  reward=masked_mean(rew, valid), pcont=masked_mean(pcont, valid), avail=masked_mean(av, seen))
    return sum(losses.values()), losses


# ---------------------------------------------------------------------------------------------
# Algorithm 1 line 5: train R̂_m on D_e (Sec. 3.3 "Approximating R_m")
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def prediction_error(wm, feat, next_obs, reward, seen):
    """Sec. 3.3: the error of local model i on a real transition, ||ô^i' - o^i'||_2 + |R̂^i - R|, where
    (ô^i', R̂^i) are decoded from its predicted state. feat [..., N, F], next_obs [..., N, O],
    reward [...], seen [...] (1: o' is a real observation) -> [..., N]."""
    obs_err = (wm.decoder(feat) - next_obs).norm(dim=-1) * seen[..., None]
    return obs_err + (wm.reward(feat).squeeze(-1) - reward[..., None]).abs()


def alive_in(avail):
    """Agents alive in an observation, from its legal actions: no-op (action 0) is legal only for a dead agent
    (SMAC's layout, games.py). avail [..., N, A] -> [..., N]."""
    return 1 - avail[..., 0]


def rm_label_mask(batch, living):
    """Which (transition t, agent i) R̂_m is trained on (see rm_loss): [T, B, N] from rows [T+1, B, ...]."""
    valid = 1 - batch["first"][1:]  # [T, B]: row t+1 continues row t's episode
    if not living:
        return valid[..., None].expand(*valid.shape, batch["avail"].shape[-2])
    return (valid * (1 - batch["fake"][1:]))[..., None] * alive_in(batch["avail"][1:])


def rm_loss(wm, rm, batch, living=True):
    """R̂_m's input is the feature of a prediction sampled from the prior, s_{t+1} = (h_{t+1}, z ~ p),
    and its label is that same prediction's error against the real transition (one pass, so input
    and label agree; it is also what plan_to_predict scores: prior samples).
    living (--mag-living-mean): only the agents alive in a real o_{t+1} are labelled (no label for a transition
    into the absorbing row, nor for an agent dead in o_{t+1}, whose all-zero observation is predicted almost
    exactly). With every agent labelled (the paper's sum, living=False) R̂_m learns that dead allies are cheap
    (3m: 0.28 vs 1.64 for the living) and the planner prefers futures in which they die; the transition into the
    absorbing row (no o_{t+1}, a reward error only) would likewise teach it that an episode end is cheap."""
    with torch.no_grad():
        h, _, prior, _ = observe(wm, batch)
        z = sample_onehot(prior[1:])
        feat = wm.feat(h[1:], z)  # [T, B, N, F]
        seen = (1 - batch["first"][1:]) * (1 - batch["fake"][1:])
        label = prediction_error(wm, feat, batch["obs"][1:], batch["reward"][:-1], seen)  # [T, B, N]
        mask = rm_label_mask(batch, living)
    loss = F.smooth_l1_loss(rm(feat), label, reduction="none")  # [T, B, N]
    return masked_mean(loss, mask), masked_mean(label, mask)


# ---------------------------------------------------------------------------------------------
# Algorithm 1 lines 6-14: model rollouts, each prediction planned against the current joint policy
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def plan_to_predict(wm, actor, rm, h1, prior_logits, L, H, global_argmin=False, living=True, agent_mean=True):
    """Lines 10-12, random shooting in the model MMDP (Def. 1). The model-state is (s_t, a_t), already
    folded into h_{t+1} and the prior; the local models' joint "model-action" is the prediction z_{t+1}.
    Draw L candidate predictions, continue each for H-1 more steps in which the current joint policy π
    acts as the dynamics (sampled actions and avail masks), score each rollout by R̂_m over agents and its
    H predictions (line 11), and keep the first prediction of the best (line 12). R̂_m is an error, so the
    best rollout is the argmin (the paper's argmax of the model-reward).
    Score: living=False, the paper's sum Σ_k Σ_i R̂_m(s^i_k). living=True (--mag-living-mean), the same N·H
    terms, but each is R̂_m only in proportion w_ki to the chance that it is a prediction R̂_m is trained on
    (rm_loss: agent i alive in s_k, s_k a real observation) and otherwise r̄_ki, agent i's own mean scored R̂_m
    at step k over the L candidates of this start state (agent_mean, --mag-agent-mean; falling back to r̄_k, the
    mean over all agents, where agent i is scored in no candidate, and to all steps' mean where nothing is):
        Σ_k Σ_i [w_ki R̂_m(s^i_k) + (1 - w_ki) r̄_ki],   w_ki = P(i alive in s_k) · Π_{j<=k} P(s_j continues)
    with P(alive) from the model's legal-action head (alive_in) and P(continues) from its pcont head. A dead
    agent's prediction, or one after a predicted end, then counts as an average one of its own: as r̄_ki is the
    w-weighted mean of agent i's step-k terms over the candidates, candidates differ only by Σ w_ki (R̂_m - r̄_ki),
    to which a death or an end adds exactly 0, so a rollout in which an agent with a high R̂_m (one in the fight)
    dies is not preferred for that, and R̂_m is never read where it is not trained. --no-mag-agent-mean imputes
    r̄_k for every agent (this script's earlier form), which still favours the deaths of above-average agents.
    h1 [B, N, D], prior_logits [B, N, C, K] -> z [B, N, C, K], chosen and first-candidate scores [B]."""
    B, N = h1.shape[:2]
    candidates = sample_onehot(prior_logits.expand(L, *prior_logits.shape))  # [L, B, N, C, K]
    h, z = h1.expand(L, *h1.shape).reshape(L * B, N, -1), candidates.reshape(L * B, *candidates.shape[2:])
    running = h1.new_ones(L * B)
    total, weights = 0.0, []  # living: per step, w_ki R̂_m and w_ki of every candidate and agent [L*B, N]
    for k in range(H):
        if k:
            action, _, _ = policy_step(wm, actor, wm.feat(h, z))
            h, logits = wm.transition(F.one_hot(action, wm.n_actions).float(), z, h)
            z = sample_onehot(logits)
        feat = wm.feat(h, z)  # [L*B, N, F]
        r_m = rm(feat)  # [L*B, N]
        if living:
            running = running * torch.sigmoid(wm.pcont(feat).squeeze(-1)).mean(-1)  # P(s_k is a real observation)
            w = alive_in(torch.sigmoid(wm.avail(feat))) * running[:, None]  # [L*B, N]: P(i alive in s_k, s_k real)
            weights.append((w * r_m, w))
        else:
            total = total + r_m.sum(-1)
    if living:  # the unscored share of each term at r̄_ki (agent i's mean scored R̂_m at step k) or r̄_k
        scored, weight = (torch.stack(x).view(H, L, B, N) for x in zip(*weights))
        r_all = scored.sum((0, 1, 3)) / weight.sum((0, 1, 3)).clamp(min=1e-12)  # [B], all steps and agents
        w_k = weight.sum((1, 3))  # [H, B]
        r_bar = torch.where(w_k > 1e-6, scored.sum((1, 3)) / w_k.clamp(min=1e-12), r_all)[..., None]  # [H, B, 1]
        if agent_mean:
            w_ki = weight.sum(1)  # [H, B, N]
            r_bar = torch.where(w_ki > 1e-6, scored.sum(1) / w_ki.clamp(min=1e-12), r_bar)  # [H, B, N]
        total = (scored + (1 - weight) * r_bar[:, None]).sum((0, 3))  # [L, B]
    r_m = total.view(L, B)
    best = r_m.mean(1).argmin().expand(B) if global_argmin else r_m.argmin(0)  # [B]
    arange = torch.arange(B, device=h1.device)
    return candidates[best, arange], r_m[best, arange], r_m[0]


@torch.no_grad()
def imagine(wm, actor, critic, rm, h, z, args, L, H):
    """Lines 6-14: from M real posterior start states (line 7), `horizon` steps in which the agents act
    with π (line 9) and the next joint state is one prior sample (MAMBA, --no-mag) or planned
    (MAG, lines 10-12). Returns the model dataset D_m of this round as flat tensors, plus diagnostics."""
    feats, actions, avails, logps, rewards, conts, chosen, first = [], [], [], [], [], [], [], []
    for _ in range(args.horizon):
        feat = wm.feat(h, z)  # [M, N, F]
        action, avail, logits = policy_step(wm, actor, feat)
        h, prior = wm.transition(F.one_hot(action, wm.n_actions).float(), z, h)
        if args.mag:
            z, score, score_first = plan_to_predict(wm, actor, rm, h, prior, L, H, args.mag_global_argmin,
                                                    args.mag_living_mean, args.mag_agent_mean)
            chosen.append(score), first.append(score_first)
        else:
            z = sample_onehot(prior)
        next_feat = wm.feat(h, z)
        feats.append(feat), actions.append(action), avails.append(avail)
        logps.append(logits.log_softmax(-1).gather(-1, action[..., None]).squeeze(-1))
        rewards.append(wm.reward(next_feat).squeeze(-1).mean(-1))  # team reward: mean over the local models
        conts.append(torch.sigmoid(wm.pcont(next_feat).squeeze(-1)).mean(-1))
    feats.append(wm.feat(h, z))
    values = torch.stack([critic(f) for f in feats])  # [K+1, M, N]
    returns = lambda_returns(torch.stack(rewards), torch.stack(conts), values, args.gamma, args.lam)
    data = dict(feat=torch.stack(feats[:-1]), action=torch.stack(actions), avail=torch.stack(avails),
                logp=torch.stack(logps), ret=returns, adv=returns - values[:-1])
    data = {k: v.flatten(0, 1) for k, v in data.items()}  # [K*M, N, ...]
    diag = dict(imagined_reward=torch.stack(rewards).mean().item(),
                imagined_running=torch.stack(conts).prod(0).mean().item())  # P(no predicted end in `horizon` steps)
    if args.mag:
        diag.update(chosen_rm=torch.stack(chosen).mean().item(), random_rm=torch.stack(first).mean().item())
    return data, diag


def lambda_returns(rewards, conts, values, gamma, lam):
    """R^λ_k = r_k + γ c_k [(1-λ) V(s_{k+1}) + λ R^λ_{k+1}], R^λ_K = V(s_K) (MAMBA, DreamerV2), with c_k
    the predicted probability that the episode continues. rewards, conts [K, M]; values [K+1, M, N]
    -> [K, M, N]."""
    out, ret = [], values[-1]
    for k in reversed(range(rewards.shape[0])):
        ret = rewards[k, :, None] + gamma * conts[k, :, None] * ((1 - lam) * values[k + 1] + lam * ret)
        out.append(ret)
    return torch.stack(out[::-1])


# ---------------------------------------------------------------------------------------------
# Algorithm 1 lines 16-18: PPO on the model data (MAMBA)
# ---------------------------------------------------------------------------------------------
def ppo_update(actor, critic, actor_opt, critic_opt, data, args, ent_coef, rng):
    """Clipped PPO for the actor (old log-probs from the imagination), (R^λ - V)^2 / 2 for the critic,
    alternating on each minibatch. Returns the mean losses and the annealed entropy weight."""
    adv = data["adv"]
    adv = (adv - adv.mean()) / (adv.std() + 1e-4)
    n, stats = adv.shape[0], dict(actor=[], critic=[], entropy=[])
    for _ in range(args.ppo_epochs):
        perm = torch.as_tensor(rng.permutation(n), device=adv.device)
        for mb in perm.split(args.ppo_minibatch):
            logits = masked_logits(actor(data["feat"][mb]), data["avail"][mb]).log_softmax(-1)  # [mb, N, A]
            ratio = torch.exp(logits.gather(-1, data["action"][mb, :, None]).squeeze(-1) - data["logp"][mb])
            pg = -torch.min(ratio * adv[mb], ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef) * adv[mb])
            entropy = -(logits.exp() * logits).sum(-1)
            actor_loss = pg.mean() - ent_coef * entropy.mean()
            actor_opt.zero_grad()
            actor_loss.backward()
            nn.utils.clip_grad_norm_(actor.parameters(), args.grad_clip)
            actor_opt.step()
            ent_coef *= args.ent_annealing

            critic_loss = 0.5 * (critic(data["feat"][mb]) - data["ret"][mb]).pow(2).mean()
            critic_opt.zero_grad()
            critic_loss.backward()
            nn.utils.clip_grad_norm_(critic.parameters(), args.grad_clip)
            critic_opt.step()
            stats["actor"].append(pg.mean().item()), stats["critic"].append(critic_loss.item())
            stats["entropy"].append(entropy.mean().item())
    return {k: float(np.mean(v)) for k, v in stats.items()}, ent_coef


# ---------------------------------------------------------------------------------------------
# Acting in the real environment (line 3) and greedy evaluation
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def filter_step(wm, h, z, action, obs, done):
    """Advance the agents' world-model state by one real step: h_{t+1} from (a_t, z_t, h_t), reset where
    the episode ended, then z_{t+1} from the posterior of the real o_{t+1} (as in `observe`)."""
    h, _ = wm.transition(F.one_hot(action, wm.n_actions).float(), z, h)
    h = h * (1 - done.float())[:, None, None]
    return h, straight_through_sample(wm.posterior(h, obs))


@torch.no_grad()
def act(wm, actor, h, z, avail, greedy):
    """π^i on the posterior feature of agent i (MAMBA: the agents run the world model, attention
    included, on their real observations), masked by the env's legal actions. -> [E, N]"""
    logits = masked_logits(actor(wm.feat(h, z)), avail)
    return logits.argmax(-1) if greedy else sample_index(logits)


def evaluate(wm, actor, env, n_episodes, device):
    """Greedy episodes: every eval env plays the same quota of whole episodes (no bias to short ones).
    Returns the win rate, the mean return and the number of episodes."""
    mode = wm.training
    wm.eval()
    quota = math.ceil(n_episodes / env.num_envs)
    counts, wins, returns = np.zeros(env.num_envs, np.int64), [], []
    obs, _, avail = env.reset()
    obs, avail = torch.as_tensor(obs, device=device), torch.as_tensor(avail, device=device)
    h = torch.zeros(*obs.shape[:2], wm.gru.hidden_size, device=device)
    with torch.no_grad():
        z = straight_through_sample(wm.posterior(h, obs))
    while (counts < quota).any():
        action = act(wm, actor, h, z, avail, greedy=True)
        obs, _, avail, _, done, info = env.step(action.cpu().numpy())
        for e in np.flatnonzero(done & (counts < quota)):
            counts[e] += 1
            wins.append(info["won"][e]), returns.append(info["episode_return"][e])
        obs, avail = torch.as_tensor(obs, device=device), torch.as_tensor(avail, device=device)
        h, z = filter_step(wm, h, z, action, obs, torch.as_tensor(done, device=device))
    wm.train(mode)
    return float(np.mean(wins)), float(np.mean(returns)), len(wins)


# ---------------------------------------------------------------------------------------------
# Arguments and checkpoints
# ---------------------------------------------------------------------------------------------
def load_checkpoint(path):
    if not os.path.isfile(path):
        fail(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except OSError as e:  # no permission, ...
        fail(f"cannot read checkpoint {path}: {e.strerror or e}")
    except Exception:  # torch's zip reader, pickle: truncated or not a torch file at all
        fail(f"checkpoint {path} is truncated or not a torch file")
    if not isinstance(ckpt, dict) or ckpt.get("script") != "mag":
        fail(f"{path} is not a mag.py checkpoint")
    return ckpt


# Checkpoints written before these flags existed ran this script's earlier forms: they resume as they ran.
LEGACY_ARGS = dict(mag_living_mean=False, mag_agent_mean=False, first_obs_loss=False, absorbing_rows=1,
                   act_dropout=True)


def parse_args():
    """tyro, twice where needed: a checkpoint's saved settings (or the CPU preset) become the defaults
    that the command-line flags then override."""
    args = tyro.cli(Args)
    ckpt = None
    if args.checkpoint is not None:
        ckpt = load_checkpoint(args.checkpoint)
        names = {f.name for f in dataclasses.fields(Args)}
        saved = {**LEGACY_ARGS, **{k: v for k, v in ckpt["args"].items() if k in names}}
        base = dataclasses.replace(Args(**saved), checkpoint=None, eval_only=False)
    elif args.preset == "cpu":
        base = dataclasses.replace(Args(), preset="cpu", **CPU_PRESET)
    else:
        return args, None
    return tyro.cli(Args, default=base), ckpt


INFINITE_OK = {"grad_clip"}  # inf: no clipping (the authors' code does not clip R̂_m)


def validate(args, ckpt):
    for f in dataclasses.fields(args):  # every float flag: NaN or inf (inf only where it means something)
        value = getattr(args, f.name)
        if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and f.name not in INFINITE_OK)):
            fail(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
    for name in ("model_lr", "rm_lr", "actor_lr", "critic_lr", "clip_coef", "grad_clip"):
        if not getattr(args, name) > 0:
            fail(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if not 0 <= args.attn_dropout < 1:
        fail(f"--attn-dropout must lie in [0, 1), got {args.attn_dropout}")
    if not (args.ent_coef >= 0 and 0 < args.ent_annealing <= 1):
        fail(f"--ent-coef must be >= 0 and --ent-annealing in (0, 1], got {args.ent_coef} and {args.ent_annealing}")
    if args.video_interval < 1:
        fail(f"--video-interval must be >= 1, got {args.video_interval}")
    if args.preset not in ("paper", "cpu"):
        fail(f"unknown preset {args.preset!r}; choose paper or cpu")
    if args.map not in games.SMAC_MAPS:
        fail(f"unknown map {args.map!r}; maps: {', '.join(games.SMAC_MAPS)}")
    if ckpt is not None and ckpt["map"] != args.map:
        fail(f"checkpoint {args.checkpoint} is for map {ckpt['map']}, not {args.map}")
    if args.eval_only and args.checkpoint is None:
        fail("--eval-only needs --checkpoint")
    if args.horizon < 1:
        fail(f"--horizon must be >= 1, got {args.horizon}")
    if args.mag_l is not None and args.mag_l < 1:
        fail(f"--mag-l (L, rollouts per prediction) must be >= 1, got {args.mag_l}")
    if args.mag_h is not None and args.mag_h < 1:
        fail(f"--mag-h (H, planning horizon) must be >= 1, got {args.mag_h}")
    L, H = MAG_LH.get(args.map, MAG_LH_DEFAULT)
    L, H = args.mag_l or L, args.mag_h or H
    if args.mag and H > args.horizon:  # H is unused by --no-mag
        fail(f"MAG's planning horizon H={H} exceeds the imagination horizon {args.horizon} (paper: H <= k)")
    positive = ("num_envs", "total_timesteps", "eval_interval", "eval_episodes", "checkpoint_interval",
                "hidden", "deter", "n_categoricals", "n_classes", "attn_layers", "attn_heads", "model_epochs",
                "model_batch_size", "rm_layers", "rm_hidden", "imag_batch_size", "ppo_epochs", "ppo_minibatch")
    for name in positive:
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.absorbing_rows not in (1, 2):
        fail(f"--absorbing-rows must be 1 or 2, got {args.absorbing_rows}")
    if args.seq_length < 2:
        fail(f"--seq-length must be >= 2, got {args.seq_length}")
    if args.hidden % args.attn_heads:
        fail(f"--hidden ({args.hidden}) must be divisible by --attn-heads ({args.attn_heads})")
    if args.min_buffer_size < args.num_envs * args.seq_length:
        fail(f"--min-buffer-size must be >= num_envs * seq_length = {args.num_envs * args.seq_length}")
    if args.buffer_capacity // args.num_envs < args.seq_length + 1:
        fail(f"--buffer-capacity {args.buffer_capacity} is too small for {args.num_envs} envs")
    if not (0 <= args.kl_balance <= 1 and 0 <= args.lam <= 1 and 0 <= args.gamma <= 1):
        fail("--kl-balance, --lam and --gamma must lie in [0, 1]")
    return L, H


def save_checkpoint(path, nets, opts, buf, state, args, run_name):
    hi = int(buf["size"].max())  # rows beyond every env's stream are still empty: not saved
    ckpt = dict(script="mag", map=args.map, args=dataclasses.asdict(args), run_name=run_name,
                nets={k: v.state_dict() for k, v in nets.items()}, opts={k: v.state_dict() for k, v in opts.items()},
                buffer={k: torch.from_numpy(np.ascontiguousarray(v[:, :hi]) if v.ndim > 1 else v)
                        for k, v in buf.items()},  # tensors: torch.save pickles an ndarray through copies of it
                rng=dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                         buffer_rng=state["rng"].bit_generator.state),
                **{k: v for k, v in state.items() if k != "rng"})
    tmp = path + ".tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
if __name__ == "__main__":
    args, ckpt = parse_args()
    L, H = validate(args, ckpt)
    if args.track:
        try:
            import wandb
        except ImportError:
            fail("--track needs wandb: pip install wandb")
    if ckpt is not None and not args.eval_only and ckpt["global_step"] >= args.total_timesteps:
        print(f"nothing to do: {ckpt['run_name']} is at step {ckpt['global_step']:,} of {args.total_timesteps:,} "
              f"(raise --total-timesteps to go on, or evaluate it with --eval-only)")
        sys.exit(0)  # its final evaluation is logged already: another one would log step N twice
    if not args.eval_only:  # the run directory first: a bad one is one line, before any environment is built
        run_name, created_runs = make_run_dir(
            ckpt["run_name"] if ckpt is not None else f"{args.map}__{args.exp_name}__{args.seed}__{int(time.time())}",
            resume=ckpt is not None)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    def build_networks(N, O, A):
        wm = WorldModel(N, O, A, args).to(device).train(args.act_dropout)  # the mode it acts in
        rm = ModelErrorPredictor(wm.feat_dim, args.rm_hidden, args.rm_layers).to(device)
        actor = Actor(wm.feat_dim, args.hidden, A).to(device)
        critic = Critic(N, wm.feat_dim, args.hidden, args.attn_heads).to(device)
        opts = dict(world_model=torch.optim.Adam(wm.parameters(), lr=args.model_lr),
                    rm=torch.optim.Adam(rm.parameters(), lr=args.rm_lr),
                    actor=torch.optim.Adam(actor.parameters(), lr=args.actor_lr, weight_decay=1e-5),
                    critic=torch.optim.Adam(critic.parameters(), lr=args.critic_lr))
        return dict(world_model=wm, rm=rm, actor=actor, critic=critic), opts

    if ckpt is not None:  # sizes from the checkpoint: a resume that does not fit is refused before any environment
        N, O = ckpt["buffer"]["obs"].shape[2:]
        A = ckpt["buffer"]["avail"].shape[-1]
        nets, opts = build_networks(N, O, A)
        try:
            for k, net in nets.items():
                net.load_state_dict(ckpt["nets"][k])
            for k, opt in opts.items():
                opt.load_state_dict(ckpt["opts"][k])
        except (RuntimeError, KeyError, ValueError) as e:
            fail(f"checkpoint {args.checkpoint} does not fit these sizes: {str(e).splitlines()[0]}")
        if not args.eval_only and args.num_envs != ckpt["buffer"]["obs"].shape[0]:
            fail(f"checkpoint was written with --num-envs {ckpt['buffer']['obs'].shape[0]}")
    try:
        envs = None if args.eval_only else games.make_starcraft(args.map, args.num_envs, args.seed, args.backend)
        eval_envs = games.make_starcraft(args.map, args.num_envs, args.seed + 10_000, args.backend)
    except (ValueError, RuntimeError, ImportError) as e:
        if not args.eval_only and ckpt is None:  # a new run that cannot start leaves nothing behind
            os.rmdir(os.path.join("runs", run_name))
            if created_runs:
                os.rmdir("runs")
        fail(str(e))
    variant = (f"MAG (L={L}, H={H}{', global argmin' if args.mag_global_argmin else ''}"
               f"{('' if args.mag_agent_mean else ', step mean') if args.mag_living_mean else ', paper sum'})"
               if args.mag else "MAMBA (--no-mag)")
    print(f"StarCraft backend: {eval_envs.backend}; map {args.map}; {variant}", flush=True)
    if ckpt is None:
        N, A, O = eval_envs.n_agents, eval_envs.n_actions, eval_envs.obs_dim
        nets, opts = build_networks(N, O, A)
    wm, rm, actor, critic = nets["world_model"], nets["rm"], nets["actor"], nets["critic"]
    buf = make_buffer(args.num_envs, args.buffer_capacity, N, O, A)
    state = dict(global_step=0, learner_steps=0, episodes=0, ent_coef=args.ent_coef, next_eval=0,
                 next_checkpoint=args.checkpoint_interval, recent_wins=[], rng=np.random.default_rng(args.seed))
    if ckpt is not None and not args.eval_only:
        for k, v in ckpt.pop("buffer").items():  # popped: the loaded copy is freed once copied
            if v.ndim > 1:
                buf[k][:, : v.shape[1]] = v[:, : buf[k].shape[1]]
            else:
                buf[k][:] = v
    if ckpt is not None:
        for k in ("global_step", "learner_steps", "episodes", "ent_coef", "next_eval", "next_checkpoint",
                  "recent_wins"):
            state[k] = ckpt[k]
        random.setstate(ckpt["rng"]["python"])
        np.random.set_state(ckpt["rng"]["numpy"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        state["rng"].bit_generator.state = ckpt["rng"]["buffer_rng"]
    rng = state["rng"]

    if args.eval_only:  # prints only: a second eval/win_rate point at the checkpoint's step would be a duplicate
        if args.capture_video:
            eval_envs.start_recording()
        win_rate, ret, n_episodes = evaluate(wm, actor, eval_envs, args.eval_episodes, device)
        print(eval_line(state["global_step"], win_rate, ret, n_episodes), flush=True)
        if args.capture_video:
            path = os.path.join(os.path.dirname(args.checkpoint), "videos", f"step_{state['global_step']}.gif")
            try:
                print(f"video: {eval_envs.save_replay(path)}")
            except OSError as e:
                fail(f"cannot write {path}: {e.strerror or e}")
        eval_envs.close()
        sys.exit(0)

    if ckpt is not None:
        print(f"resuming {run_name} at step {state['global_step']:,} ({state['learner_steps']:,} updates)", flush=True)
    else:
        print(f"run directory: runs/{run_name}", flush=True)
    if args.track:
        wandb.init(project=args.wandb_project_name, sync_tensorboard=True, config=vars(args), name=run_name,
                   save_code=True)
    # A checkpoint at step S is written after everything logged at steps <= S (the loop evaluates, then saves, then
    # steps), so a resumed run drops only what the interrupted process logged later (purge_step keeps steps below it).
    writer = SummaryWriter(f"runs/{run_name}", purge_step=None if ckpt is None else state["global_step"] + 1)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" +
                    "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))

    lines = [(time.time(), state["global_step"])]  # (time, step) of the previous progress lines, the last one last
    recent_wins, recent_returns = [], []  # training episodes finished since the previous progress line
    evaluations = [0]  # in this session; --capture-video records evaluations 0, k, 2k, ... (k = --video-interval)

    def progress(force=False):
        """A progress line every PROGRESS_SECONDS (called after every env step and every update) and at the end."""
        now, step = time.time(), state["global_step"]
        if not force and now - lines[-1][0] < PROGRESS_SECONDS:
            return
        sps = (step - lines[-1][1]) / max(now - lines[-1][0], 1e-9)
        # an interval spent in one long learner step has no env step and no rate of its own: the ETA then uses the
        # rate since the last line at an earlier step
        then, before = next(((t, s) for t, s in reversed(lines) if s < step), (now, step))
        rate = (step - before) / max(now - then, 1e-9)
        eta = (args.total_timesteps - step) / rate if rate > 0 else None
        print(progress_line(step, args.total_timesteps, sps, state["learner_steps"], recent_wins, recent_returns,
                            eta), flush=True)
        writer.add_scalar("charts/SPS", sps, step)
        lines[:] = [*lines[-9:], (now, step)]
        recent_wins.clear()
        recent_returns.clear()

    def run_evaluation():
        step = state["global_step"]
        record = args.capture_video and evaluations[0] % args.video_interval == 0
        if record:
            eval_envs.start_recording()  # env 0's first evaluation episode
        win_rate, ret, n_episodes = evaluate(wm, actor, eval_envs, args.eval_episodes, device)
        if record:
            eval_envs.save_replay(f"runs/{run_name}/videos/step_{step}.gif")
        evaluations[0] += 1
        writer.add_scalar("eval/win_rate", win_rate, step)
        writer.add_scalar("eval/episodic_return", ret, step)
        print(eval_line(step, win_rate, ret, n_episodes), flush=True)

    MAG_DIAGNOSTICS = ("chosen_rm", "random_rm", "rm_label", "imagined_reward", "imagined_running")

    def learner_step():
        """Algorithm 1 lines 4-18, run after every finished real episode."""
        logs = {}
        wm.train()  # dropout only while the world model learns (MAMBA)
        for _ in range(args.model_epochs):  # line 4
            total, losses = world_model_loss(wm, buffer_sample(buf, args.model_batch_size, args.seq_length,
                                                               rng, device), args.kl_balance, args.first_obs_loss)
            opts["world_model"].zero_grad()
            total.backward()
            nn.utils.clip_grad_norm_(wm.parameters(), args.grad_clip)
            opts["world_model"].step()
            for k, v in losses.items():
                logs.setdefault(k, []).append(v.item())
            progress()
        wm.eval()  # no dropout while labelling and imagining (as the authors)
        if args.mag:
            for _ in range(args.rm_epochs):  # line 5
                loss, label = rm_loss(wm, rm, buffer_sample(buf, args.model_batch_size, args.seq_length, rng, device),
                                      args.mag_living_mean)
                opts["rm"].zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(rm.parameters(), args.grad_clip)
                opts["rm"].step()
                logs.setdefault("rm", []).append(loss.item()), logs.setdefault("rm_label", []).append(label.item())
                progress()
        for _ in range(args.agent_epochs):
            batch = buffer_sample(buf, args.imag_batch_size, args.seq_length, rng, device)
            with torch.no_grad():
                h, z, _, _ = observe(wm, batch)  # line 7: start states are posteriors of real data
            real = batch["fake"].flatten() < 0.5
            data, diag = imagine(wm, actor, critic, rm, h.flatten(0, 1)[real], z.flatten(0, 1)[real], args, L, H)
            stats, state["ent_coef"] = ppo_update(actor, critic, opts["actor"], opts["critic"], data, args,
                                                  state["ent_coef"], rng)
            for k, v in {**stats, **diag}.items():
                logs.setdefault(k, []).append(v)
            progress()
        wm.train(args.act_dropout)  # acting: eval mode (MAMBA) unless --act-dropout
        state["learner_steps"] += 1
        step = state["global_step"]
        for k, v in logs.items():
            ns = "mag" if k in MAG_DIAGNOSTICS else "losses"
            writer.add_scalar(f"{ns}/{k}", float(np.mean(v)), step)
        writer.add_scalar("charts/ent_coef", state["ent_coef"], step)

    # Algorithm 1 line 2: the loop over real episodes
    obs_np, _, avail_np = envs.reset()
    obs, avail = torch.as_tensor(obs_np, device=device), torch.as_tensor(avail_np, device=device)
    h = torch.zeros(args.num_envs, N, args.deter, device=device)
    with torch.no_grad():
        z = straight_through_sample(wm.posterior(h, obs))
    first = np.ones(args.num_envs, np.float32)  # the row after a reset (or a resume) starts an episode
    start_time, start_step = time.time(), state["global_step"]
    while state["global_step"] < args.total_timesteps:
        if state["global_step"] >= state["next_eval"]:  # step 0 first: the untrained policy
            run_evaluation()
            state["next_eval"] = state["global_step"] + args.eval_interval
        if args.save_model and state["global_step"] >= state["next_checkpoint"]:  # after the evaluation of its step
            state["next_checkpoint"] = state["global_step"] + args.checkpoint_interval
            save_checkpoint(f"runs/{run_name}/checkpoint.pt", nets, opts, buf, state, args, run_name)

        action = act(wm, actor, h, z, avail, greedy=False)  # line 3
        a = action.cpu().numpy()
        next_obs, _, next_avail, reward, done, info = envs.step(a)
        state["global_step"] += args.num_envs
        terminal = done & ~info["timeout"]
        for e in range(args.num_envs):
            buffer_add(buf, e, obs=obs_np[e], avail=avail_np[e], action=a[e], reward=reward[e],
                       done=float(terminal[e]), first=first[e], fake=0.0)
            for j in range(args.absorbing_rows if terminal[e] else 0):  # the model learns r and done of the last
                # step from the first absorbing row, and the transition out of it from the second (MAMBA's two)
                out = rng.integers(0, A, N) if j == 0 and args.absorbing_rows > 1 else np.zeros(N, np.int64)
                buffer_add(buf, e, obs=np.zeros((N, O), np.float32), avail=np.zeros((N, A), np.float32),
                           action=out, reward=0.0, done=1.0, first=0.0, fake=1.0)
        first = done.astype(np.float32)
        obs_np, avail_np = next_obs, next_avail
        obs, avail = torch.as_tensor(obs_np, device=device), torch.as_tensor(avail_np, device=device)
        h, z = filter_step(wm, h, z, action, obs, torch.as_tensor(done, device=device))

        for e in np.flatnonzero(done):
            state["episodes"] += 1
            state["recent_wins"] = (state["recent_wins"] + [float(info["won"][e])])[-20:]
            recent_wins.append(float(info["won"][e]))
            recent_returns.append(float(info["episode_return"][e]))
            writer.add_scalar("charts/episodic_return", info["episode_return"][e], state["global_step"])
            writer.add_scalar("charts/episodic_length", info["episode_length"][e], state["global_step"])
            writer.add_scalar("charts/win_rate", np.mean(state["recent_wins"]), state["global_step"])
            if buf["size"].sum() >= args.min_buffer_size:
                learner_step()
        progress()

    progress(force=True)
    run_evaluation()
    state["next_eval"] = state["global_step"] + args.eval_interval  # both just done
    state["next_checkpoint"] = state["global_step"] + args.checkpoint_interval
    if args.save_model:
        save_checkpoint(f"runs/{run_name}/checkpoint.pt", nets, opts, buf, state, args, run_name)
        print(f"checkpoint: runs/{run_name}/checkpoint.pt")
    print(f"done: {state['global_step']:,} env steps, {state['learner_steps']:,} updates, "
          f"{time.time() - start_time:.0f} s", flush=True)
    envs.close()
    eval_envs.close()
    writer.close()
