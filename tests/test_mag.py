"""mag.py: the pieces that are easy to get wrong (straight-through sampling, KL balancing, λ-returns,
MAG's candidate choice under the paper's sum and the living-agents score, R̂_m's label mask, the reset-state
targets, the Appendix B L/H table, Sec. 3.3's prediction error, the imagined dataset, eval-mode acting,
Figure 3's start states), bad input (unknown map, L or H < 1, H > the imagination horizon, NaN/inf flags,
foreign and truncated checkpoints, an unwritable run directory), the shared console lines, and end-to-end
smoke runs: MAG trains the model, R̂_m and the policy, evaluates from step 0, checkpoints, resumes without
duplicate TensorBoard steps (purge_step) and writes a GIF per evaluation with --capture-video; --no-mag
trains without R̂_m; --eval-only reads a checkpoint."""
import dataclasses
import glob
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import mag

SCRIPT = str(Path(__file__).resolve().parents[1] / "mag.py")


# ---------------------------------------------------------------- sampling and losses
def test_straight_through_sample_is_one_hot_with_probability_gradient():
    torch.manual_seed(0)
    logits = torch.randn(64, 4, 5, requires_grad=True)
    sample = mag.straight_through_sample(logits)
    onehot = F.one_hot(sample.detach().argmax(-1), 5).float()
    assert torch.allclose(sample.detach(), onehot, atol=1e-6)  # forward: one-hot (up to rounding)
    w = torch.randn(5)
    (grad_st,) = torch.autograd.grad((sample * w).sum(), logits)
    (grad_probs,) = torch.autograd.grad((logits.softmax(-1) * w).sum(), logits)
    assert torch.allclose(grad_st, grad_probs)  # backward: the gradient of the probabilities


def test_sample_index_matches_probabilities_and_never_draws_a_masked_action():
    torch.manual_seed(0)
    logits = mag.masked_logits(torch.tensor([[0.0, 3.0, 1.0, 0.5]]), torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    draws = mag.sample_index(logits.expand(100_000, 4))
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[1] == 0 and freq[3] == 0
    assert torch.allclose(freq, logits.softmax(-1)[0], atol=0.01)
    # all-masked rows (possible with a sampled avail mask) stay finite and legal indices
    assert mag.sample_index(torch.full((10, 4), -1e10)).max() < 4


def test_kl_balancing_value_and_gradient_split():
    torch.manual_seed(0)
    q = torch.randn(3, 4, 6, requires_grad=True)  # [B, C, K] posterior logits
    p = torch.randn(3, 4, 6, requires_grad=True)  # prior logits
    kl = (q.softmax(-1) * (q.log_softmax(-1) - p.log_softmax(-1))).sum(-1).mean(-1)  # [B]
    bal = mag.kl_balanced(q, p, 0.8)
    assert torch.allclose(bal, kl)  # the value is the plain KL(q||p), summed over classes, mean over C
    gq_bal, gp_bal = torch.autograd.grad(bal.sum(), (q, p))
    gq, gp = torch.autograd.grad(kl.sum(), (q, p))
    assert torch.allclose(gp_bal, 0.8 * gp, atol=1e-6)  # the prior moves with weight α = 0.8
    assert torch.allclose(gq_bal, 0.2 * gq, atol=1e-6)  # the posterior with 1 - α


def test_lambda_returns_by_hand():
    r = torch.tensor([[1.0], [2.0]])  # [K=2, M=1]
    c = torch.tensor([[1.0], [0.5]])
    v = torch.tensor([[[10.0]], [[20.0]], [[30.0]]])  # [K+1, M, N=1]
    g, lam = 0.9, 0.5
    r1 = 2.0 + g * 0.5 * ((1 - lam) * 30.0 + lam * 30.0)  # R_K = V_K
    r0 = 1.0 + g * 1.0 * ((1 - lam) * 20.0 + lam * r1)
    out = mag.lambda_returns(r, c, v, g, lam)
    assert torch.allclose(out[:, 0, 0], torch.tensor([r0, r1]))
    td = mag.lambda_returns(r, c, v, g, 0.0)  # λ = 0: one-step targets
    assert torch.allclose(td[:, 0, 0], torch.tensor([1.0 + g * 20.0, 2.0 + g * 0.5 * 30.0]))


# ---------------------------------------------------------------- MAG's candidate choice
class LatentKeepingModel(nn.Module):
    """A world model whose transition keeps the sampled class (prior logits ±1e4 around it) and whose
    features are the latent itself: each candidate's H predictions are all its first one."""
    n_actions, K = 3, 5

    def transition(self, action_onehot, z, h):
        return h, (z - 0.5) * 2e4

    def avail(self, feat):
        return torch.full((*feat.shape[:-1], self.n_actions), 10.0)

    @staticmethod
    def feat(h, z):
        return torch.cat([z.flatten(-2), h], -1)


@pytest.mark.parametrize("global_argmin", [False, True])
def test_plan_to_predict_keeps_the_argmin_of_summed_rm(global_argmin):
    """The paper's score (--no-mag-living-mean): R̂_m summed over agents and the H predictions."""
    wm, L, H, B, N = LatentKeepingModel(), 6, 3, 32, 2
    cost = torch.tensor([3.0, -1.0, 0.5, 2.0, 0.0])  # R̂_m of each class of the single categorical
    rm = lambda feat: feat[..., :5] @ cost  # noqa: E731
    actor = lambda feat: torch.zeros(*feat.shape[:-1], 3)  # noqa: E731
    h1, prior = torch.zeros(B, N, 1), torch.zeros(B, N, 1, 5)  # uniform prior: candidates differ

    torch.manual_seed(3)
    z, chosen, first = mag.plan_to_predict(wm, actor, rm, h1, prior, L, H, global_argmin, living=False)
    torch.manual_seed(3)  # the same draws: the candidates are the function's first samples
    cand = mag.sample_onehot(prior.expand(L, *prior.shape))  # [L, B, N, 1, 5]
    score = H * (cand[..., 0, :] @ cost).sum(-1)  # [L, B]: summed over agents and the H steps
    best = score.mean(1).argmin().expand(B) if global_argmin else score.argmin(0)
    assert torch.equal(z, cand[best, torch.arange(B)])
    assert torch.allclose(chosen, score[best, torch.arange(B)]) and torch.allclose(first, score[0])
    if not global_argmin:
        assert torch.allclose(chosen, score.min(0).values)  # per start state: never worse than any candidate
        assert (chosen < score[0]).any()


class DyingModel(nn.Module):
    """A stub world model with one categorical of 4 classes per agent, kept by the transition: classes 0, 1 are a
    living agent, 2, 3 a dead one (its no-op is legal, SMAC's layout). h counts the steps (h1 = 1: the first
    prediction). The episode ends (pcont) when every agent is dead."""
    n_actions, K = 3, 4

    def __init__(self, avail_logit=30.0, pcont_logit=30.0):
        super().__init__()
        self.avail_logit, self.pcont_logit = avail_logit, pcont_logit

    def transition(self, action_onehot, z, h):
        return h + 1, (z - 0.5) * 2e4

    def dead(self, feat):  # [..., N]
        return feat[..., 2] + feat[..., 3]

    def avail(self, feat):  # no-op logit +a for a dead agent, -a for a living one
        noop = (2 * self.dead(feat) - 1) * self.avail_logit
        return torch.stack([noop, torch.zeros_like(noop), torch.zeros_like(noop)], -1)

    def pcont(self, feat):  # [..., N, 1]: -p when every agent is dead, +p otherwise
        all_dead = self.dead(feat).min(-1, keepdim=True).values.expand_as(feat[..., 0])
        return ((1 - 2 * all_dead) * self.pcont_logit)[..., None]

    @staticmethod
    def feat(h, z):
        return torch.cat([z.flatten(-2), h], -1)


def test_living_score_does_not_prefer_predicted_deaths():
    """Every living agent's prediction costs R̂_m 1.0; a dead agent costs 1.0 at the step it dies and 0.05 later
    (what the paper's label teaches R̂_m, dead observations being all zeros). The paper's sum then prefers the
    candidates with the most deaths; the living score gives every candidate the same N*H, however many agents die,
    including those in which all die and the episode ends."""
    wm, L, H, B, N = DyingModel(), 8, 4, 256, 3
    actor = lambda feat: torch.zeros(*feat.shape[:-1], 3)  # noqa: E731

    def rm(feat):
        dead, first_prediction = wm.dead(feat), (feat[..., -1] == 1).float()
        return (1 - dead) * 1.0 + dead * (first_prediction * 1.0 + (1 - first_prediction) * 0.05)

    h1, prior = torch.ones(B, N, 1), torch.zeros(B, N, 1, 4)  # every agent alive or dead with probability 1/2
    prior[0, :, :, :2] = -1e4  # start 0: every candidate kills every agent and ends the episode at once
    for living in (True, False):
        torch.manual_seed(0)
        z, chosen, first = mag.plan_to_predict(wm, actor, rm, h1, prior, L, H, living=living)
        deaths_chosen, deaths_first = wm.dead(wm.feat(h1, z)).sum(-1), None
        torch.manual_seed(0)
        cand = mag.sample_onehot(prior.expand(L, *prior.shape))
        deaths = wm.dead(cand[..., 0, :]).sum(-1)  # [L, B]
        if living:
            assert torch.allclose(chosen[1:], torch.full((B - 1,), float(N * H)), atol=1e-3)
            assert torch.isfinite(chosen[0]) and chosen[0] == first[0]  # nothing scored: all candidates alike
            assert torch.allclose(first, chosen, atol=1e-3)  # every candidate scores N*H: no preference
        else:
            expected = N + (H - 1) * ((N - deaths) + 0.05 * deaths)  # [L, B]: decreasing in the deaths
            assert torch.allclose(chosen, expected.min(0).values, atol=1e-4)
            assert torch.equal(deaths_chosen, deaths.max(0).values)  # the sum picks the most deaths
            assert deaths_chosen.float().mean() > deaths[0].float().mean() + 1.0


@pytest.mark.parametrize("agent_mean", [True, False])
def test_living_score_matches_a_slow_reference(agent_mean):
    """Soft P(alive) and P(continue), unequal R̂_m: the vectorised score equals a loop over candidates, start
    states, steps and agents of Σ_k Σ_i [w_ki R̂_m + (1 - w_ki) r̄] with r̄ agent i's mean scored R̂_m of step k over
    the candidates (agent_mean) or the start's mean scored R̂_m of step k over all agents (--no-mag-agent-mean)."""
    wm, L, H, B, N = DyingModel(avail_logit=1.5, pcont_logit=0.7), 5, 3, 16, 3
    cost = torch.tensor([1.0, 1.6, 0.2, 0.4])
    rm = lambda feat: feat[..., :4] @ cost + 0.1 * feat[..., -1]  # noqa: E731  (later predictions cost more)
    actor = lambda feat: torch.zeros(*feat.shape[:-1], 3)  # noqa: E731
    torch.manual_seed(1)
    h1, prior = torch.ones(B, N, 1), torch.randn(B, N, 1, 4)
    torch.manual_seed(2)
    z, chosen, first = mag.plan_to_predict(wm, actor, rm, h1, prior, L, H, living=True, agent_mean=agent_mean)
    torch.manual_seed(2)
    cand = mag.sample_onehot(prior.expand(L, *prior.shape))  # [L, B, N, 1, 4]
    score = torch.zeros(L, B)
    for b in range(B):
        scored, weights = torch.zeros(H, L, N), torch.zeros(H, L, N)
        for l in range(L):
            feat0 = wm.feat(h1[b], cand[l, b])  # [N, F]
            running = 1.0
            for k in range(H):
                feat = feat0.clone()
                feat[:, -1] = 1 + k
                running = running * torch.sigmoid(wm.pcont(feat)[:, 0]).mean()
                alive = 1 - torch.sigmoid(wm.avail(feat)[:, 0])
                for i in range(N):
                    w = alive[i] * running
                    scored[k, l, i] += w * rm(feat[i])
                    weights[k, l, i] += w
        for k in range(H):
            for i in range(N):
                r_bar = (scored[k, :, i].sum() / weights[k, :, i].sum() if agent_mean
                         else scored[k].sum() / weights[k].sum())
                score[:, b] += scored[k, :, i] + (1 - weights[k, :, i]) * r_bar
    best = score.argmin(0)
    assert torch.allclose(first, score[0], atol=1e-4) and torch.allclose(chosen, score.min(0).values, atol=1e-4)
    assert torch.equal(z, cand[best, torch.arange(B)])


def test_agent_mean_does_not_prefer_the_death_of_an_agent_with_high_rm():
    """Agent 0 is in the fight (R̂_m 2.0 alive), agent 1 is not (0.5 alive); either may die (its R̂_m is then
    unscored). Imputing the step's mean over all agents (--no-mag-agent-mean) makes agent 0's death save
    w (2.0 - r̄_k) > 0, so the planner picks candidates in which it dies; imputing each agent's own mean (the
    default) scores every candidate alike: no death is preferred."""
    wm, L, H, B, N = DyingModel(), 8, 3, 512, 2
    actor = lambda feat: torch.zeros(*feat.shape[:-1], 3)  # noqa: E731
    alive_cost = torch.tensor([2.0, 0.5])

    def rm(feat):
        return (1 - wm.dead(feat)) * alive_cost + wm.dead(feat) * 0.01  # a dead agent's value is never read

    h1, prior = torch.ones(B, N, 1), torch.zeros(B, N, 1, 4)  # each agent alive or dead with probability 1/2
    deaths = {}
    for agent_mean in (True, False):
        torch.manual_seed(0)
        z, chosen, first = mag.plan_to_predict(wm, actor, rm, h1, prior, L, H, living=True, agent_mean=agent_mean)
        torch.manual_seed(0)
        cand = mag.sample_onehot(prior.expand(L, *prior.shape))
        dead = wm.dead(cand[..., 0, :])  # [L, B, N]: which agents are dead in each candidate
        chosen_dead = wm.dead(wm.feat(h1, z))  # [B, N]
        deaths[agent_mean] = chosen_dead[:, 0].mean().item()
        if agent_mean:
            assert torch.allclose(first, chosen, atol=1e-4)  # every candidate scores alike: no preference
        else:  # where a candidate kills agent 0 only, that one is chosen (r̄_k + 0.5 beats 2.5, 2 + r̄_k, 2 r̄_k)
            some = ((dead[..., 0] == 1) & (dead[..., 1] == 0)).any(0)  # [B]
            assert some.sum() > 400 and (chosen_dead[some] == torch.tensor([1.0, 0.0])).all()
    assert deaths[True] < 0.6 and deaths[False] > 0.85  # ~0.5 (the first candidate's) vs ~1 - (3/4)^L = 0.9


def test_rm_label_counts_living_agents_with_a_real_next_observation():
    """The label mask of rm_loss: an agent dead in o_{t+1} (only its no-op legal) and transitions into the absorbing
    row or into a new episode are not labelled; the paper's form labels every agent of every in-episode transition."""
    T, B, N, A = 4, 1, 2, 3
    avail = torch.tensor([0.0, 1.0, 1.0]).repeat(T, B, N, 1)  # alive: stop and a move legal, no-op not
    avail[1:, 0, 1] = torch.tensor([1.0, 0.0, 0.0])  # agent 1 dead from row 1 on
    batch = dict(avail=avail, first=torch.tensor([[1.0], [0.0], [0.0], [1.0]]),
                 fake=torch.tensor([[0.0], [0.0], [1.0], [0.0]]))
    mask = mag.rm_label_mask(batch, living=True)  # [T-1, B, N]: transitions 0->1, 1->2 (absorbing), 2->3 (new)
    assert mask[:, 0].tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    batch["fake"] = torch.zeros(T, 1)
    assert mag.rm_label_mask(batch, living=True)[:, 0].tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]
    assert mag.rm_label_mask(batch, living=False)[:, 0].tolist() == [[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]


def test_lh_table_is_appendix_b_and_flags_override(monkeypatch):
    paper = {"2s_vs_1sc": (5, 10), "3s_vs_3z": (5, 10), "2s3z": (5, 10), "3s_vs_4z": (4, 10),
             "3s_vs_5z": (5, 7), "2c_vs_64zg": (5, 7), "corridor": (4, 6), "3s5z_vs_3s6z": (4, 7)}
    assert mag.MAG_LH == paper and mag.MAG_LH_DEFAULT == (4, 6)  # Table 1; else the released code's
    for argv, lh in ((["--map", "3s_vs_3z"], (5, 10)), (["--map", "3m"], (4, 6)),
                     (["--map", "3s_vs_3z", "--mag-l", "2", "--mag-h", "3"], (2, 3))):
        monkeypatch.setattr(sys, "argv", ["mag.py", *argv])
        assert mag.validate(*mag.parse_args()) == lh


class StubHeads:
    """decoder(feat) = feat[..., :O], reward(feat) = feat[..., -1:]: errors are known by hand."""
    O = 3

    def decoder(self, feat):
        return feat[..., : self.O]

    def reward(self, feat):
        return feat[..., -1:]


def test_prediction_error_is_the_sec_3_3_formula():
    feat = torch.tensor([[[3.0, 4.0, 0.0, 1.5], [0.0, 0.0, 0.0, 2.0]]])  # [B=1, N=2, F]: ô = feat[:3], R̂ = feat[3]
    next_obs, reward = torch.zeros(1, 2, 3), torch.tensor([1.0])
    err = mag.prediction_error(StubHeads(), feat, next_obs, reward, torch.ones(1))
    assert torch.allclose(err, torch.tensor([[5.0 + 0.5, 0.0 + 1.0]]))  # ||ô^i - o^i||_2 + |R̂^i - R| per agent
    absorbing = mag.prediction_error(StubHeads(), feat, next_obs, reward, torch.zeros(1))
    assert torch.allclose(absorbing, torch.tensor([[0.5, 1.0]]))  # no observation after a termination


def tiny_args(**kw):
    return dataclasses.replace(mag.Args(), hidden=16, deter=16, n_categoricals=4, n_classes=4, attn_layers=1,
                               attn_heads=2, rm_hidden=16, horizon=4, **kw)


def random_batch(T1, B, N, O, A, first, fake=None):
    torch.manual_seed(0)
    action = torch.randint(0, A, (T1, B, N))
    return dict(obs=torch.randn(T1, B, N, O), avail=(torch.rand(T1, B, N, A) < 0.5).float(), action=action,
                action_onehot=F.one_hot(action, A).float(), reward=torch.randn(T1, B), done=torch.zeros(T1, B),
                first=first, fake=torch.zeros(T1, B) if fake is None else fake)


def test_first_observation_is_a_target_from_the_reset_state():
    """Windows in which every row starts an episode: no transition is a target, so without --first-obs-loss
    nothing is learned; with it (MAMBA) each row's KL to the reset prior p(z | h=0), reconstruction and avail
    count, and reward/continuation still do not (no transition leads into a first row)."""
    N, O, A, T1, B = 2, 5, 4, 3, 6
    wm = mag.WorldModel(N, O, A, tiny_args()).eval()
    batch = random_batch(T1, B, N, O, A, first=torch.ones(T1, B))
    _, off = mag.world_model_loss(wm, batch, 0.8, first_obs_loss=False)
    assert all(v.item() == 0 for v in off.values())
    total, on = mag.world_model_loss(wm, batch, 0.8, first_obs_loss=True)
    assert on["model_kl"] > 0 and on["reconstruction"] > 0 and on["avail"] > 0
    assert on["reward"] == 0 and on["pcont"] == 0 and total.requires_grad
    h0 = torch.zeros(B, N, wm.gru.hidden_size)
    reset_prior = wm.prior_net(h0).view(B, N, wm.C, wm.K)
    kl = torch.stack([mag.kl_balanced(wm.posterior(h0, batch["obs"][t]), reset_prior, 0.8).mean() for t in range(T1)])
    assert torch.allclose(on["model_kl"], kl.mean(), atol=1e-6)
    # row 0 of a window in mid-episode is a target too; a later row of that episode only through its transition
    batch = random_batch(T1, B, N, O, A, first=torch.zeros(T1, B), fake=torch.tensor([[1.0] * B, [0.0] * B, [0.0] * B]))
    torch.manual_seed(1)  # the same latent samples in both calls
    _, off = mag.world_model_loss(wm, batch, 0.8, first_obs_loss=False)
    torch.manual_seed(1)
    _, on = mag.world_model_loss(wm, batch, 0.8, first_obs_loss=True)
    for k in ("reward", "pcont", "reconstruction", "avail"):  # row 0 is absorbing here: no observation terms
        assert torch.allclose(on[k], off[k]), k
    assert not torch.allclose(on["model_kl"], off["model_kl"])  # but its KL to the reset prior counts


@pytest.mark.parametrize("use_mag", [True, False])
def test_imagine_builds_the_model_dataset(use_mag):
    """Lines 6-14 wired together on a random model: D_m has K*M samples of N agents, the returns are
    finite, and MAG's chosen rollouts never score worse under R̂_m than the first candidate."""
    torch.manual_seed(0)
    N, O, A, M = 3, 7, 9, 5
    args = tiny_args(mag=use_mag)
    wm = mag.WorldModel(N, O, A, args).eval()
    rm = mag.ModelErrorPredictor(wm.feat_dim, args.rm_hidden, args.rm_layers)
    actor, critic = mag.Actor(wm.feat_dim, args.hidden, A), mag.Critic(N, wm.feat_dim, args.hidden, args.attn_heads)
    h, z = torch.randn(M, N, args.deter), mag.sample_onehot(torch.randn(M, N, args.n_categoricals, args.n_classes))
    data, diag = mag.imagine(wm, actor, critic, rm, h, z, args, L=3, H=2)
    K = args.horizon
    assert data["feat"].shape == (K * M, N, wm.feat_dim) and data["action"].shape == (K * M, N)
    assert data["avail"].shape == (K * M, N, A) and data["ret"].shape == data["adv"].shape == (K * M, N)
    assert all(torch.isfinite(v.float()).all() for v in data.values())
    logp = data["logp"]
    assert (logp <= 0).all() and (logp > -1e9).all()  # the taken action was legal under its sampled mask
    if use_mag:
        assert diag["chosen_rm"] <= diag["random_rm"] + 1e-6
    else:
        assert "chosen_rm" not in diag


def test_figure_3_scores_every_start_and_the_last_transitions():
    """benchmarks/mag_model_error.py: starts at every t0 <= T-2 (short episodes too), step k scored while
    t0 + k <= T-1; --full-windows keeps the earlier t0 <= T-1-K. The true error counts living agents only."""
    import importlib.util
    path = Path(SCRIPT).parent / "benchmarks" / "mag_model_error.py"
    spec = importlib.util.spec_from_file_location("mag_model_error", path)
    fig3 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fig3)
    N, O, A, K = 2, 5, 4, 5
    wm = mag.WorldModel(N, O, A, tiny_args()).eval()
    rng = np.random.default_rng(0)
    episodes = [(rng.normal(size=(n, N, O)).astype(np.float32), rng.integers(0, A, (n, N)),
                 rng.normal(size=n).astype(np.float32), np.tile(np.float32([0, 1, 1, 1]), (n, N, 1))) for n in (3, 12)]
    starts = fig3.start_states(wm, episodes, K, stride=1)
    assert starts["episode"].tolist() == [0] * 2 + [1] * 11
    assert starts["scored"][:2].tolist() == [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]]  # the 3-step episode
    assert starts["scored"][2:].sum(1).tolist() == [5] * 7 + [4, 3, 2, 1]  # its last starts: up to the end
    assert torch.equal(starts["next_obs"][1, 0], torch.as_tensor(episodes[0][0][2]))  # o_{t0+1} of t0 = 1
    full = fig3.start_states(wm, episodes, K, stride=1, full_windows=True)
    assert full["episode"].tolist() == [1] * 7 and bool((full["scored"] == 1).all())

    feat = torch.randn(len(starts["h"]), N, wm.feat_dim)
    all_agents = fig3.true_error(wm, feat, starts, 0, living=False)
    starts["next_avail"][:, 0, 1] = torch.tensor([1.0, 0, 0, 0])  # agent 1 dead in the first real next observation
    err = mag.prediction_error(wm, feat, starts["next_obs"][:, 0], starts["reward"][:, 0], torch.ones(len(feat)))
    alone = err[:, 0]  # agent 0's
    assert torch.allclose(fig3.true_error(wm, feat, starts, 0, living=True), alone)
    assert (all_agents > alone).all()
    rows = [{"step": 1, "n_starts": 9, "true_diff": 0.5}, {"step": 2, "n_starts": 4, "true_diff": -0.25}]
    out = fig3.long_rows(rows, "3m", "planner_living_label_living", 1, 10_000)  # sweep.py's long CSV columns
    assert out == [("mag", "3m", "planner_living_label_living", 1, 10_000, "fig3/n_starts@k1", 9),
                   ("mag", "3m", "planner_living_label_living", 1, 10_000, "fig3/true_diff@k1", 0.5),
                   ("mag", "3m", "planner_living_label_living", 1, 10_000, "fig3/n_starts@k2", 4),
                   ("mag", "3m", "planner_living_label_living", 1, 10_000, "fig3/true_diff@k2", -0.25)]


# ---------------------------------------------------------------- command line
def run(args, cwd, timeout=300):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_bad_map_from_the_command_line(tmp_path):
    out = run(["--map", "4m"], tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown map '4m'")
    assert not (tmp_path / "runs").exists()  # nothing written


def cli_error(monkeypatch, capsys, argv):
    """parse + validate in-process, as the script's first two lines do; returns the stderr lines."""
    monkeypatch.setattr(sys, "argv", ["mag.py", *argv])
    with pytest.raises(SystemExit) as e:
        args, ckpt = mag.parse_args()
        mag.validate(args, ckpt)
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("argv,needle", [
    (["--mag-l", "0"], "--mag-l (L, rollouts per prediction) must be >= 1"),
    (["--mag-h", "0"], "--mag-h (H, planning horizon) must be >= 1"),
    (["--mag-h", "16"], "H=16 exceeds the imagination horizon 15"),
    (["--horizon", "8", "--map", "3s_vs_3z"], "H=10 exceeds"),  # Table 1's H for 3s_vs_3z
    (["--map", "MMM2"], None),  # SC2-only map: passes validation, games.py refuses it (tested below)
    (["--preset", "gpu"], "unknown preset 'gpu'"),
    (["--eval-only"], "--eval-only needs --checkpoint"),
    (["--hidden", "30"], "divisible by --attn-heads"),
    (["--model-lr", "nan"], "--model-lr must be a finite number, got nan"),
    (["--kl-balance", "inf"], "--kl-balance must be a finite number, got inf"),
    (["--actor-lr", "0"], "--actor-lr must be > 0"),
    (["--absorbing-rows", "3"], "--absorbing-rows must be 1 or 2"),
    (["--video-interval", "0"], "--video-interval must be >= 1"),
])
def test_bad_input_one_line_exit_2(monkeypatch, capsys, argv, needle):
    if needle is None:
        monkeypatch.setattr(sys, "argv", ["mag.py", *argv])
        args, ckpt = mag.parse_args()
        mag.validate(args, ckpt)
        with pytest.raises(ValueError, match="needs StarCraft II"):
            mag.games.make_starcraft(args.map, 1, 0, "smax")
        return
    lines = cli_error(monkeypatch, capsys, argv)
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def test_foreign_checkpoint_rejected(tmp_path, monkeypatch, capsys):
    torch.save({"script": "fop", "map": "3m"}, tmp_path / "other.pt")
    lines = cli_error(monkeypatch, capsys, ["--checkpoint", str(tmp_path / "other.pt")])
    assert lines == [f"error: {tmp_path / 'other.pt'} is not a mag.py checkpoint"]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert cli_error(monkeypatch, capsys, ["--checkpoint", str(tmp_path / "junk.pt")]) == [
        f"error: checkpoint {tmp_path / 'junk.pt'} is truncated or not a torch file"]


def test_checkpoint_from_before_the_faithfulness_flags_resumes_with_the_earlier_forms(tmp_path, monkeypatch):
    saved = {k: v for k, v in dataclasses.asdict(mag.Args()).items() if k not in mag.LEGACY_ARGS}
    torch.save({"script": "mag", "map": "3m", "args": saved}, tmp_path / "old.pt")
    monkeypatch.setattr(sys, "argv", ["mag.py", "--checkpoint", str(tmp_path / "old.pt"), "--first-obs-loss"])
    args, _ = mag.parse_args()
    assert (args.mag_living_mean, args.absorbing_rows, args.act_dropout) == (False, 1, True)  # as it ran
    assert args.first_obs_loss  # a flag given on the command line still wins
    monkeypatch.setattr(sys, "argv", ["mag.py"])
    args, _ = mag.parse_args()
    assert (args.mag_living_mean, args.first_obs_loss, args.absorbing_rows, args.act_dropout) == (True, True, 2, False)


class TwoStepEnv:
    """Every episode lasts two steps and is won; 2 envs, 2 agents, 3 actions, observations of 5 numbers."""
    num_envs, n_agents, n_actions, obs_dim = 2, 2, 3, 5

    def reset(self):
        self.t = 0
        return np.ones((2, 2, 5), np.float32), None, np.ones((2, 2, 3), np.float32)

    def step(self, actions):
        self.t += 1
        done = np.full(2, self.t % 2 == 0)
        info = dict(won=done.copy(), episode_return=np.where(done, 20.0, 0.0))
        return np.ones((2, 2, 5), np.float32), None, np.ones((2, 2, 3), np.float32), np.zeros(2), done, info


@pytest.mark.parametrize("mode", [True, False])
def test_evaluate_runs_the_model_in_eval_mode_and_leaves_its_mode_alone(mode):
    wm = mag.WorldModel(2, 5, 3, tiny_args()).train(mode)
    seen = []
    wm.attention.register_forward_hook(lambda module, inp, out: seen.append(module.training))
    win, ret, episodes = mag.evaluate(wm, mag.Actor(wm.feat_dim, 16, 3), TwoStepEnv(), 4, "cpu")
    assert (win, ret, episodes) == (1.0, 20.0, 4) and seen and not any(seen)  # dropout off while acting
    assert wm.training is mode  # as before the evaluation (acting in training comes after it)


def test_cpu_preset_sets_defaults_that_flags_override(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mag.py", "--preset", "cpu", "--hidden", "32"])
    args, _ = mag.parse_args()
    assert args.hidden == 32 and args.deter == mag.CPU_PRESET["deter"] and args.model_epochs == mag.CPU_PRESET["model_epochs"]
    monkeypatch.setattr(sys, "argv", ["mag.py"])
    args, _ = mag.parse_args()
    assert args.hidden == 256 and args.n_categoricals == 32 and args.model_epochs == 60  # the paper's


def test_console_lines_are_the_shared_format():
    line = mag.progress_line(12_345, 50_000, 13.24, 3_086, [0.0, 0.62], [12.0, 12.8], 2856.4)
    assert line == ("step 12,345/50,000 (25%) | 13.2 env steps/s | 3,086 updates | train win rate 0.31, return 12.40 "
                    "| ETA 0:47:36")
    assert PROGRESS.fullmatch(line)
    assert mag.progress_line(8, 50_000, 0.0, 0, [], [], None) == (
        "step 8/50,000 (0%) | 0.0 env steps/s | 0 updates | train win rate n/a, return n/a | ETA n/a")
    assert mag.progress_line(50_016, 50_000, 15.9, 100, [], [], -1.0).endswith("| ETA 0:00:00")  # step past the total
    assert mag.hms(3 * 86_400 + 61) == "72:01:01"
    assert mag.eval_line(12_345, 0.40625, 15.2149, 32) == (
        "eval at step 12,345: win rate 0.406, return 15.21 (32 episodes, greedy)")


def test_run_directory_is_unique_and_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert mag.make_run_dir("3m__mag__1__7", resume=False) == ("3m__mag__1__7", True)
    assert mag.make_run_dir("3m__mag__1__7", resume=False) == ("3m__mag__1__7_2", False)  # same second: its own
    assert mag.make_run_dir("3m__mag__1__7", resume=True) == ("3m__mag__1__7", False)  # a resume reuses its own
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["3m__mag__1__7", "3m__mag__1__7_2"]
    (tmp_path / "runs").rename(tmp_path / "old")
    (tmp_path / "runs").write_text("a file")
    with pytest.raises(SystemExit) as e:
        mag.make_run_dir("x", resume=False)
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: cannot write run directory runs/x: Not a directory\n"


def test_unwritable_runs_is_one_line_before_any_environment(tmp_path):
    (tmp_path / "runs").write_text("a file")
    out = run(["--map", "3m"], tmp_path)
    assert out.returncode == 2 and out.stdout == ""  # no backend line: no environment was built
    assert out.stderr == "error: cannot write run directory runs/" + out.stderr.split("runs/")[1]
    assert out.stderr.count("\n") == 1 and out.stderr.endswith(": Not a directory\n")


# ---------------------------------------------------------------- end to end
TINY = ["--preset", "cpu", "--map", "3m", "--num-envs", "8", "--hidden", "16", "--deter", "16",
        "--n-categoricals", "4", "--n-classes", "4", "--attn-heads", "2", "--rm-hidden", "16",
        "--model-epochs", "2", "--rm-epochs", "2", "--model-batch-size", "4", "--seq-length", "6",
        "--imag-batch-size", "2", "--horizon", "3", "--mag-l", "2", "--mag-h", "2", "--ppo-epochs", "1",
        "--min-buffer-size", "64", "--eval-episodes", "8", "--eval-interval", "100000", "--seed", "3"]
PROGRESS = re.compile(r"step [\d,]+/[\d,]+ \(\d+%\) \| \d+\.\d env steps/s \| [\d,]+ updates \| "
                      r"train win rate (\d\.\d\d, return -?\d+\.\d\d|n/a, return n/a) \| ETA (\d+:\d\d:\d\d|n/a)")
EVAL = re.compile(r"eval at step ([\d,]+): win rate \d\.\d{3}, return -?\d+\.\d\d \(8 episodes, greedy\)")


def scalars(run_dir):
    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # purge_orphaned_data=True: TensorBoard's view
    ea.Reload()
    return {t: [e.step for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def evals(stdout):
    return [m[1] for m in map(EVAL.fullmatch, stdout.splitlines()) if m]


def test_smoke_train_evaluate_checkpoint_resume_purge_video(tmp_path, monkeypatch, capsys):
    """A run to 240 (no --capture-video: no videos/), a resume to 400 with --capture-video, then a second resume from
    a copy of the checkpoint at 240, as if the first resume had died before its checkpoint: TensorBoard (purge_step)
    must show every step once. Also the console lines, a truncated checkpoint and a finished run."""
    from PIL import Image

    out = run([*TINY, "--total-timesteps", "240", "--exp-name", "smoke"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert "StarCraft backend: smax" in lines[0] and "MAG (L=2, H=2)" in lines[0]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("3m__smoke__3__") and f"run directory: runs/{run_dir.name}" in lines
    assert evals(out.stdout) == ["0", "240"]  # before any training, and at the end
    progress = [line for line in lines if PROGRESS.fullmatch(line)]
    assert progress and progress[-1].startswith("step 240/240 (100%)") and progress[-1].endswith(" 0:00:00")
    assert not (run_dir / "videos").exists()
    tags = scalars(run_dir)
    for name in ("model_kl", "reconstruction", "reward", "pcont", "rm", "actor", "critic", "entropy"):
        assert tags.get(f"losses/{name}"), f"losses/{name} missing: no update happened"
    assert tags.get("mag/chosen_rm") and tags.get("mag/imagined_running") and tags.get("charts/win_rate")
    assert tags.get("charts/SPS")
    ckpt_path = run_dir / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    assert ckpt["script"] == "mag" and ckpt["map"] == "3m" and ckpt["global_step"] == 240
    assert ckpt["learner_steps"] >= 1 and ckpt["args"]["hidden"] == 16
    assert ckpt["next_eval"] > 240 and ckpt["next_checkpoint"] > 240
    assert (ckpt["buffer"]["fake"].sum(1) % 2 == 0).all()  # absorbing rows come in pairs (MAMBA's two)
    assert all(isinstance(v, torch.Tensor) for v in ckpt["buffer"].values())  # not ndarrays: see save_checkpoint

    at_240 = tmp_path / "at_240.pt"
    shutil.copy(ckpt_path, at_240)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt_path.read_bytes()[: ckpt_path.stat().st_size // 2])
    assert cli_error(monkeypatch, capsys, ["--checkpoint", str(truncated)]) == [
        f"error: checkpoint {truncated} is truncated or not a torch file"]

    # resume: the saved settings come back (no size flags given), the step counter continues
    out = run(["--checkpoint", str(ckpt_path), "--total-timesteps", "400", "--capture-video"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"resuming {run_dir.name} at step 240 ({ckpt['learner_steps']} updates)" in out.stdout.splitlines()
    assert evals(out.stdout) == ["400"]
    ckpt2 = torch.load(ckpt_path, weights_only=False)
    assert ckpt2["global_step"] == 400 and ckpt2["episodes"] > ckpt["episodes"]
    assert ckpt2["learner_steps"] > ckpt["learner_steps"]
    assert sorted(p.name for p in (run_dir / "videos").iterdir()) == ["step_400.gif"]
    with Image.open(run_dir / "videos" / "step_400.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames > 1

    out = run(["--checkpoint", str(ckpt_path)], tmp_path)  # finished: another final evaluation would log 400 twice
    assert out.returncode == 0 and out.stdout.startswith("nothing to do: "), out.stdout + out.stderr[-2000:]
    out = run(["--checkpoint", str(at_240), "--total-timesteps", "400"], tmp_path)  # the same run dir, from 240 again
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list((tmp_path / "runs").iterdir())) == 1 and len(list(run_dir.glob("events*"))) == 3
    tags = scalars(run_dir)  # the first resume's steps > 240 are dropped
    assert tags["eval/win_rate"] == [0, 240, 400]
    for tag in ("losses/model_kl", "charts/episodic_return", "mag/chosen_rm"):
        steps = tags[tag]
        assert steps == sorted(steps) and max(steps) > 240, tag  # in order, no step of the dead resume kept
    ckpt3 = torch.load(ckpt_path, weights_only=False)
    kl_steps = np.array(tags["losses/model_kl"])  # one point per learner step, each once
    assert (kl_steps <= 240).sum() == ckpt["learner_steps"]
    assert (kl_steps > 240).sum() == ckpt3["learner_steps"] - ckpt["learner_steps"] > 0
    assert sorted(p.name for p in (run_dir / "videos").iterdir()) == ["step_400.gif"]  # the copy: no --capture-video


def test_no_mag_baseline_trains_without_rm_and_eval_only_reads_its_checkpoint(tmp_path):
    out = run([*TINY, "--no-mag", "--total-timesteps", "240", "--exp-name", "nomag"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "MAMBA (--no-mag)" in out.stdout
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "3m__nomag__3__*"))
    tags = scalars(run_dir)
    for name in ("model_kl", "reconstruction", "reward", "pcont", "actor", "critic", "entropy"):
        assert tags.get(f"losses/{name}"), f"losses/{name} missing: no update happened"
    assert "losses/rm" not in tags and "mag/chosen_rm" not in tags  # no R̂_m, no planning
    ckpt = Path(run_dir) / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=False)["args"]["mag"] is False

    events = sorted(glob.glob(run_dir + "/events*"))
    out = run(["--checkpoint", str(ckpt), "--eval-only", "--eval-episodes", "8", "--capture-video"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert evals(out.stdout) == ["240"], out.stdout
    assert out.stdout.splitlines()[-1] == f"video: {Path(run_dir) / 'videos' / 'step_240.gif'}"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 240  # evaluation does not train or save
    assert sorted(glob.glob(run_dir + "/events*")) == events  # nor log a second point at step 240

    # a resume with other network sizes is refused in one line, and nothing is added to the run directory
    out = run(["--checkpoint", str(ckpt), "--hidden", "32", "--horizon", "1",  # --horizon 1 < H: fine for --no-mag
               "--total-timesteps", "400"], tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: checkpoint") and "sizes" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and sorted(glob.glob(run_dir + "/events*")) == events


def test_checkpoint_of_another_map_rejected(tmp_path, monkeypatch, capsys):
    torch.save({"script": "mag", "map": "3m", "args": {"map": "3m"}}, tmp_path / "c.pt")
    lines = cli_error(monkeypatch, capsys, ["--checkpoint", str(tmp_path / "c.pt"), "--map", "8m"])
    assert lines == [f"error: checkpoint {tmp_path / 'c.pt'} is for map 3m, not 8m"]


def test_buffer_windows_stay_inside_one_env_and_behind_the_write_pointer():
    rng = np.random.default_rng(0)
    buf = mag.make_buffer(2, 20, 1, 1, 2)  # 10 rows per env
    for t in range(14):  # env 0 wraps around, env 1 does not
        mag.buffer_add(buf, 0, obs=np.full((1, 1), t, np.float32), avail=np.ones((1, 2)), action=np.zeros(1),
                       reward=0.0, done=0.0, first=0.0, fake=0.0)
    for t in range(7):
        mag.buffer_add(buf, 1, obs=np.full((1, 1), 100 + t, np.float32), avail=np.ones((1, 2)),
                       action=np.zeros(1), reward=0.0, done=0.0, first=0.0, fake=0.0)
    batch = mag.buffer_sample(buf, 500, 4, rng, "cpu")
    seq = batch["obs"][:, :, 0, 0].T.numpy()  # [B, T]
    assert (np.diff(seq, axis=1) == 1).all()  # consecutive rows of one env, never across the pointer
    assert seq.min() >= 4 and {100, 103} <= set(seq[:, 0].tolist()) and 4 in set(seq[:, 0].tolist())
