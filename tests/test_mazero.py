"""mazero.py: the pieces most likely to be wrong (h(x), two-hot, n-step targets, AWPO weights, stacking), the model's
ablation variants, a smoke run (update, reanalyse, evaluation, checkpoint, resume) and bad input."""

import csv
import math
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import mazero

SCRIPT = str(Path(__file__).resolve().parents[1] / "mazero.py")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors on a shared 2-core machine: one thread is ~50x faster than two spinning ones (as in the script)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_h_transform_and_inverse():
    x = torch.tensor([-300.0, -20.0, -1.0, -0.01, 0.0, 0.5, 3.0, 20.0, 300.0], dtype=torch.float64)
    y = mazero.h_transform(x)
    assert y[6].item() == pytest.approx(math.sqrt(4.0) - 1 + 0.003)  # h(3) by hand
    assert torch.allclose(mazero.h_inverse(y), x, rtol=1e-9, atol=1e-9)
    assert (torch.sign(y) == torch.sign(x)).all() and (y.diff() > 0).all()


def test_two_hot_round_trip_and_clipping():
    S = 5
    x_mid = mazero.h_inverse(torch.tensor(1.25))  # h(x) = 1.25: 3/4 on atom 1, 1/4 on atom 2
    t = mazero.scalar_to_support(x_mid, S)
    expected = torch.zeros(2 * S + 1)
    expected[S + 1], expected[S + 2] = 0.75, 0.25
    assert torch.allclose(t, expected, atol=1e-5)
    x = torch.tensor([-20.0, -3.0, -0.2, 0.0, 0.7, 2.0, 15.0])
    t = mazero.scalar_to_support(x, S)
    assert torch.allclose(t.sum(-1), torch.ones(len(x)))
    assert torch.allclose(mazero.support_to_scalar(t.log(), S), x, rtol=1e-4, atol=1e-4)
    big = mazero.scalar_to_support(torch.tensor([1e6, -1e6]), S)  # beyond h = +-5: all mass on the end atom
    assert big[0, -1] == 1 and big[1, 0] == 1


def test_value_targets_with_episode_ends():
    # game A: positions 0..3 (end 4), rewards 1 2 3 4; game B: positions 4..6 (end 7), rewards 10 20 30
    reward = np.array([1, 2, 3, 4, 10, 20, 30], np.float32)
    end = np.array([4, 4, 7])
    pos = np.array([[1, 2, 3], [2, 3, 4], [4, 5, 6]])
    boot = np.full(pos.shape, 100.0)  # the target net's value at pos + n, used only where pos + n < end
    g = 0.5
    z = mazero.value_targets(reward, end, pos, boot, n=2, gamma=g)
    want = np.array([
        [2 + g * 3 + g ** 2 * 100, 3 + g * 4, 4],     # position 3: one reward left, nothing to bootstrap
        [3 + g * 4, 4, 0],                            # position 4 is game A's terminal state: 0, and game B is not read
        [10 + g * 20 + g ** 2 * 100, 20 + g * 30, 30],
    ])
    np.testing.assert_allclose(z, want)


def test_value_targets_with_a_horizon_per_row_match_a_loop():
    """n as an array [B] (the off-policy correction): each row equals the scalar-n targets of that row."""
    rng = np.random.default_rng(0)
    reward = rng.normal(size=40).astype(np.float32)
    end = np.repeat([9, 25, 40], [9, 16, 15])
    idx = np.array([0, 5, 9, 20, 30, 37])
    pos = idx[:, None] + np.arange(4)
    boot = rng.normal(size=pos.shape)
    n = np.array([5, 1, 3, 2, 5, 4])
    z = mazero.value_targets(reward, end[idx], pos, boot, n, gamma=0.9)
    for b in range(len(idx)):
        one = mazero.value_targets(reward, end[idx[b:b + 1]], pos[b:b + 1], boot[b:b + 1], int(n[b]), gamma=0.9)
        np.testing.assert_allclose(z[b:b + 1], one, rtol=1e-6)
        for k, t in enumerate(pos[b]):  # and the definition, term by term
            want = 0.0 if t >= end[idx[b]] else sum(0.9 ** i * reward[t + i] for i in range(n[b]) if t + i < end[idx[b]])
            if t + n[b] < end[idx[b]]:
                want += 0.9 ** n[b] * boot[b, k]
            assert z[b, k] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_td_steps_shrink_with_age_as_the_authors_code():
    age = np.array([0, 2_999, 3_000, 6_000, 12_000, 10**6])
    np.testing.assert_array_equal(mazero.td_steps(5, age, 0.0, 10_000), [5] * 6)      # off: the paper's n
    np.testing.assert_array_equal(mazero.td_steps(5, age, 0.3, 10_000), [5, 5, 4, 3, 1, 1])  # 0.3 x 10k = 3k


def test_awpo_weights_standardise_over_valid_and_clip():
    adv = np.array([[1.0, 2.0, 3.0, 100.0]])
    valid = np.array([[True, True, True, False]])
    std = np.std([1.0, 2.0, 3.0])
    w = mazero.awpo_weights(adv, valid, alpha=3.0, clip=3.0)
    np.testing.assert_allclose(w, [[math.exp(-1 / std / 3), 1.0, math.exp(1 / std / 3), 0.0]])
    w = mazero.awpo_weights(adv, valid, alpha=0.5, clip=3.0)  # exp(2 / std) ~ 11.6 is clipped
    np.testing.assert_allclose(w, [[math.exp(-2 / std), 1.0, 3.0, 0.0]])


def test_observation_stacking_resets_per_episode_and_matches_replay():
    S, n, d = 3, 2, 1
    frames = [np.full((1, n, d), float(i + 1), np.float32) for i in range(5)]  # one env, episode A = 1 2 3, B = 4 5
    stack = mazero.push_frame(np.zeros((1, S, n, d), np.float32), frames[0], np.array([True]))
    acting = [mazero.flatten_stack(stack)[0].copy()]
    for i, f in enumerate(frames[1:], start=1):
        mazero.push_frame(stack, f, np.array([i == 3]))  # frame 4 starts episode B
        acting.append(mazero.flatten_stack(stack)[0].copy())
    np.testing.assert_array_equal(acting[2][0], [1, 2, 3])
    np.testing.assert_array_equal(acting[3][0], [0, 0, 4])  # episode A's frames are forgotten
    np.testing.assert_array_equal(acting[4][1], [0, 4, 5])
    replay = mazero.Replay(10, n, d, 4, S)
    legal = np.ones((3, n, 4), bool)
    replay.add_game(np.concatenate(frames[:3]), np.zeros((3, n)), np.zeros(3), legal)
    replay.add_game(np.concatenate(frames[3:]), np.zeros((2, n)), np.zeros(2), legal[:2])
    np.testing.assert_array_equal(replay.stacked(np.arange(5)), np.stack(acting))
    assert replay.end.tolist()[:5] == [3, 3, 3, 5, 5]


def test_replay_window_samples_only_the_most_recent_positions_with_their_priorities():
    n, d, A = 2, 1, 4
    replay = mazero.Replay(100, n, d, A, 1)
    for T in (30, 25, 20):  # three games: positions 0-29, 30-54, 55-74
        replay.add_game(np.zeros((T, n, d)), np.zeros((T, n)), np.zeros(T), np.ones((T, n, A), bool))
    replay.priority[:75] = np.arange(1, 76)
    rng = np.random.default_rng(0)
    seen = np.concatenate([replay.sample(8, 1.0, 1.0, rng, window=10)[0] for _ in range(300)])
    assert seen.min() >= 65 and set(seen.tolist()) == set(range(65, 75))  # the last 10 positions, all of them
    # the importance weights are those of PER over the window alone: (N P(i))^-beta / max with N = 10
    idx, w = replay.sample(10, 1.0, 1.0, rng, window=10)
    p = replay.priority[65:75] / replay.priority[65:75].sum()
    expect = (10 * p[idx - 65]) ** -1.0
    np.testing.assert_allclose(w, expect / expect.max())
    # window 0 and a window larger than the replay sample from everything
    for window in (0, 500):
        seen = np.concatenate([replay.sample(8, 0.0, 1.0, rng, window=window)[0] for _ in range(200)])
        assert set(seen.tolist()) == set(range(75))


def test_policy_loss_is_joint_log_likelihood():
    B, n, A, Ks = 2, 3, 4, 5
    logits = torch.zeros(B, n, A, requires_grad=True)
    sampled = torch.randint(0, A, (B, Ks, n))
    coef = torch.rand(B, Ks)
    legal = torch.ones(B, n, A, dtype=torch.bool)
    loss = mazero.policy_loss(logits, legal, sampled, coef)
    torch.testing.assert_close(loss, coef.sum(-1) * n * math.log(A))
    loss.sum().backward()  # d/dlogit_j = sum_k coef_k (softmax_j - [a_k^i = j])
    hits = torch.nn.functional.one_hot(sampled, A).float()  # [B, Ks, n, A]
    want = coef.sum(-1)[:, None, None] / A - (coef[:, :, None, None] * hits).sum(1)
    torch.testing.assert_close(logits.grad, want)
    legal[:, :, 0] = False  # an illegal action takes no probability: log pi over the A - 1 others
    sampled = torch.where(sampled == 0, 1, sampled)
    loss = mazero.policy_loss(torch.zeros(B, n, A), legal, sampled, coef)
    torch.testing.assert_close(loss, coef.sum(-1) * n * math.log(A - 1))
    padded = mazero.policy_loss(torch.zeros(B, n, A), legal, torch.zeros_like(sampled), torch.zeros_like(coef))
    assert torch.equal(padded, torch.zeros(B))  # padded slots (action 0, coef 0) give 0, not NaN
    # --policy-softmax all (the authors'): the illegal action keeps its probability and its logit is pushed down
    logits = torch.zeros(B, n, A, requires_grad=True)
    loss = mazero.policy_loss(logits, legal, sampled, coef, legal_softmax=False)
    torch.testing.assert_close(loss, coef.sum(-1) * n * math.log(A))
    loss.sum().backward()
    torch.testing.assert_close(logits.grad[:, :, 0], (coef.sum(-1) / A)[:, None].expand(B, n))


@pytest.mark.parametrize("variant", [{}, {"communication": False}, {"flattened_model": True}])
def test_model_variants_shapes_residual_and_gradients(variant):
    args = mazero.Args(**variant)
    n, d, A, B = 3, 7, 9, 4
    torch.manual_seed(0)
    model = mazero.MAZeroNet(n, d, A, args)
    s, v, p = model.initial(torch.randn(B, n, args.stacked_observations * d))
    assert s.shape == (B, n, 128) and v.shape == (B, 11) and p.shape == (B, n, A)
    assert torch.allclose(mazero.support_to_scalar(v, 5), torch.zeros(B), atol=1e-6)  # zero-initialised heads
    s2, r, v2, p2 = model.recurrent(s, torch.randint(0, A, (B, n)))
    assert s2.shape == s.shape and r.shape == (B, 11)
    outputs = (r, v2, p2, model.project(s2, True))  # random weights: a LayerNorm output's plain sum is constant
    sum((x * torch.randn_like(x)).sum() for x in outputs).backward()
    changed = [name for name, q in model.named_parameters() if q.grad is not None and q.grad.abs().sum() > 1e-3]
    assert any(name.startswith("dynamics") for name in changed) and any(name.startswith("representation") for name in changed)
    assert any(name.startswith("comm") for name in changed) == (not variant)


def tiny_setup(seed, lengths=(5, 7), **kw):
    """A 2-agent model and a replay of two short games (of `lengths` positions), no environment."""
    torch.manual_seed(seed)
    args = mazero.Args(**{**dict(hidden_size=16, batch_size=6, num_sampled=4, num_simulations=6, unroll_steps=3,
                                 td_steps=2, stacked_observations=2), **kw})
    n, d, A = 2, 5, 4
    model, target = mazero.MAZeroNet(n, d, A, args), mazero.MAZeroNet(n, d, A, args)
    target.load_state_dict(model.state_dict())
    replay = mazero.Replay(32, n, d, A, args.stacked_observations)
    rng = np.random.default_rng(seed)
    for T in lengths:
        legal = rng.random((T, n, A)) < 0.7
        legal[..., 1] = True
        replay.add_game(rng.normal(size=(T, n, d)), rng.integers(0, A, (T, n)), rng.random(T), legal)
    return args, model, target, replay, rng


@pytest.mark.parametrize("policy", ["awpo", "bc"])
def test_reanalyse_targets_and_determinism(policy):
    losses = []
    for _ in range(2):
        args, model, target, replay, rng = tiny_setup(0, policy_loss=policy)
        cfg = mazero.search_config(args, args.num_simulations)
        b = mazero.make_batch(replay, target, args, cfg, rng, torch.device("cpu"), 0.4, {"model": 0.0, "tree": 0.0})
        real = b["real"].bool()
        coef = b["coef"].sum(-1)
        assert torch.all(coef[~real] == 0) and torch.all(b["obs"][~real] == 0)
        if policy == "bc":  # omega: visit counts / N over the sampled joint actions of every real root
            torch.testing.assert_close(coef[real], torch.ones(int(real.sum())), check_dtype=False)
        sampled_legal = torch.gather(b["legal"], 3, b["sampled"].permute(0, 1, 3, 2))  # [B, K+1, n, Ks]
        assert sampled_legal.permute(0, 1, 3, 2)[b["coef"] > 0].all()  # searched actions are legal at their root
        pos = b["idx"][:, None] + np.arange(args.unroll_steps + 1)
        assert torch.all(b["z"][torch.as_tensor(pos >= replay.end[b["idx"]][:, None])] == 0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        out, priority = mazero.train_step(model, opt, b, args)
        assert np.isfinite(list(out.values())).all() and priority.shape == (args.batch_size,)
        losses.append(out)
    assert losses[0] == losses[1]  # same seed, same batch, same update


@pytest.mark.parametrize("ratio", [0.0, 0.3])
def test_reanalyse_bootstraps_from_the_position_n_steps_ahead(monkeypatch, ratio):
    """z_t = sum_{i<n} gamma^i u_{t+i} + gamma^n v^-(s_{t+n}): the target network must see s_{t+n}, not s_t; with
    --td-age-ratio 0.3 and 10 updates in all, n = clip(2 - age // 3, 1, 2) per sampled position."""
    args, _, target, replay, rng = tiny_setup(0, td_age_ratio=ratio, total_timesteps=20, updates_per_env_step=0.5)
    seen = []
    initial = target.initial
    def spy(obs):
        seen.append(obs.clone())
        return initial(obs)
    monkeypatch.setattr(target, "initial", spy)
    cfg = mazero.search_config(args, args.num_simulations)
    b = mazero.make_batch(replay, target, args, cfg, rng, torch.device("cpu"), 0.4, {"model": 0.0, "tree": 0.0})
    pos = b["idx"][:, None] + np.arange(args.unroll_steps + 1)
    n = np.clip(2 - (replay.size - b["idx"][:, None]) // 3, 1, 2) if ratio else args.td_steps
    assert ratio == 0 or set(n.ravel()) == {1, 2}  # old and fresh positions in the batch
    ahead = (pos + n)[pos + n < replay.end[b["idx"]][:, None]]
    assert len(ahead) > 0
    torch.testing.assert_close(seen[0], torch.as_tensor(replay.stacked(ahead)))  # the first call is the bootstrap


@pytest.mark.parametrize("lengths, batch_size", [((2, 3), 5), ((1, 1, 1), 2)])
def test_reanalyse_when_no_position_can_bootstrap(lengths, batch_size):
    """Games no longer than n = td_steps: no sampled position has pos + n < end, so nothing is bootstrapped and the
    targets are the plain discounted reward sums to the end (this used to crash reshaping an empty array)."""
    args, model, target, replay, rng = tiny_setup(0, lengths, td_steps=4, batch_size=batch_size)
    assert mazero.flatten_stack(np.zeros((0, 2, 3, 5))).shape == (0, 3, 10)
    cfg = mazero.search_config(args, args.num_simulations)
    b = mazero.make_batch(replay, target, args, cfg, rng, torch.device("cpu"), 0.4, {"model": 0.0, "tree": 0.0})
    pos = b["idx"][:, None] + np.arange(args.unroll_steps + 1)
    end = replay.end[b["idx"]][:, None]
    want = [[sum(args.gamma ** i * replay.reward[p + i] for i in range(e - p)) if p < e else 0.0
             for p, e in zip(row, np.broadcast_to(end_row, row.shape))] for row, end_row in zip(pos, end)]
    np.testing.assert_allclose(b["z"].numpy(), want, rtol=1e-5, atol=1e-6)
    out, priority = mazero.train_step(model, torch.optim.Adam(model.parameters(), lr=1e-3), b, args)
    assert np.isfinite(list(out.values())).all() and priority.shape == (batch_size,)


@pytest.mark.parametrize("tree_legal_mask", ["all-nodes", "root"])
def test_search_keeps_root_legal_actions_inside_the_tree(tree_legal_mask):
    """all-nodes: no node below the root samples an action illegal at the root; root (the authors'): the policy, which
    prefers action 0 (illegal at every root), makes the nodes below the root sample it."""
    args, model, _, _, rng = tiny_setup(1, tree_legal_mask=tree_legal_mask)
    model.eval()
    with torch.no_grad():  # a policy head that prefers action 0 everywhere
        model.policy[1].bias.copy_(torch.tensor([8.0, 0.0, 0.0, 0.0]))
    B, n, A = 5, 2, 4
    legal = np.ones((B, n, A), bool)
    legal[:, :, 0] = False
    legal[0, 1] = [False, False, True, False]  # root 0, agent 1 (say, dead): one legal action
    taken = []
    recurrent = model.recurrent
    model.recurrent = lambda s, a: (taken.append(a.clone()), recurrent(s, a))[1]
    obs = torch.randn(B, n, args.stacked_observations * 5)
    cfg = mazero.search_config(args, 20)
    out, _ = mazero.search(model, obs, legal, cfg, rng, add_noise=True, **mazero.search_options(args))
    taken = torch.stack(taken).numpy()  # [N, B, n]: the action expanded at every simulation, any depth
    assert len(taken) == 20 and out.visit_counts.sum(1).tolist() == [20] * B
    assert legal[np.arange(B)[:, None, None], np.arange(n), out.actions][out.valid].all()  # root children: legal
    if tree_legal_mask == "all-nodes":
        assert (taken != 0).all() and (taken[:, 0, 1] == 2).all()
    else:
        assert (taken == 0).mean() > 0.3 and (taken[:, 0, 1] != 2).any()


@pytest.mark.parametrize("prior_floor", [0.0, mazero.AUTHORS_PRIOR_FLOOR])
def test_root_prior_floor_is_the_authors(monkeypatch, prior_floor):
    """--policy-softmax all: the root prior ctree computes (softmax over the legal actions of the logits it is given)
    is the authors' (softmax over all actions x legal + 1e-4 x legal) / sum; without the floor it is the legal softmax
    of the policy head."""
    args, model, _, _, rng = tiny_setup(2)
    with torch.no_grad():
        model.policy[1].bias.copy_(torch.tensor([0.0, 12.0, -3.0, 0.0]))
    seen = []
    ctree_search = mazero.ctree_numpy.search
    monkeypatch.setattr(mazero.ctree_numpy, "search", lambda fn, v, logits, *a, **kw: (
        seen.append(np.asarray(logits)), ctree_search(fn, v, logits, *a, **kw))[1])
    B, n, A = 6, 2, 4
    legal = np.random.default_rng(0).random((B, n, A)) < 0.6
    legal[..., 2] = True
    obs = torch.randn(B, n, args.stacked_observations * 5)
    mazero.search(model, obs, legal, mazero.search_config(args, 4), rng, add_noise=False, prior_floor=prior_floor)
    ctree_prior = torch.where(torch.as_tensor(legal), torch.as_tensor(seen[0]), -torch.inf).softmax(-1).numpy()
    with torch.no_grad():
        logits = model.initial(obs)[2]
    if prior_floor:
        want = (logits.softmax(-1).numpy() + 1e-4) * legal
        want /= want.sum(-1, keepdims=True)
        assert ctree_prior[legal].min() > 0.9e-4  # every legal action keeps some prior, however small its logit
    else:
        want = torch.where(torch.as_tensor(legal), logits, -torch.inf).softmax(-1).numpy()
    np.testing.assert_allclose(ctree_prior, want, rtol=1e-4, atol=1e-9)


def test_search_reuses_and_grows_its_latent_table():
    """The [B, N + 1, n, H] table is one buffer across searches, grown when a search needs more; what an earlier,
    larger search left in it does not leak into a later one."""
    args, model, _, _, _ = tiny_setup(3)
    model.eval()
    n, A = 2, 4
    legal = np.ones((5, n, A), bool)
    obs = torch.randn(5, n, args.stacked_observations * 5)
    mazero._latent_buffers.clear()

    def run(B, N):
        out, _ = mazero.search(model, obs[:B], legal[:B], mazero.search_config(args, N), np.random.default_rng(0), True)
        (buf,) = mazero._latent_buffers.values()
        return out, buf

    first, buf = run(3, 6)
    assert buf.numel() == 3 * 7 * n * args.hidden_size
    _, bigger = run(5, 12)
    assert bigger.numel() == 5 * 13 * n * args.hidden_size
    again, same = run(3, 6)
    assert same is bigger  # not reallocated for a smaller search
    for name in ("actions", "visit_counts", "child_value", "root_value"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))


@pytest.mark.parametrize("tau", [1.0, 0.5, 0.0])
def test_self_play_action_follows_visit_counts_to_the_power_one_over_tau(tau):
    visits = np.array([[60, 30, 10, 0], [0, 0, 100, 0], [50, 50, 0, 0]])
    rng, draws = np.random.default_rng(0), 20_000
    freq = np.zeros(visits.shape)
    for _ in range(draws):
        freq[np.arange(3), mazero.sample_slot(visits, tau, rng)] += 1
    if tau == 0:
        expected = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]], float)  # most visited, first on ties
    else:
        expected = visits ** (1 / tau) / (visits ** (1 / tau)).sum(1, keepdims=True)
    np.testing.assert_allclose(freq / draws, expected, atol=0.015)
    assert freq[visits == 0].sum() == 0  # an unvisited child is never played


def test_temperature_schedule_is_muzeros_halving_at_50_and_75_percent():
    args = mazero.Args(total_timesteps=1000, action_temperature=0.8)
    assert {mazero.action_temperature(args, s) for s in (0, 600, 999)} == {0.8}  # constant: the authors' default
    args = replace(args, temperature_schedule="muzero")
    taus = [mazero.action_temperature(args, s) for s in (0, 499, 500, 749, 750, 999, 1200)]
    assert taus == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.2])


def test_reward_head_input_follows_reward_from_next_state():
    """Eq. 4 (default): R(s_{t,k}, a); --reward-from-next-state (the authors'): R(s_{t,k+1}, a)."""
    for flag in (False, True):
        args = mazero.Args(hidden_size=16, reward_from_next_state=flag)
        torch.manual_seed(0)
        model = mazero.MAZeroNet(2, 5, 4, args).eval()
        seen = []
        model.reward.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
        s, a = torch.randn(3, 2, 16), torch.randint(0, 4, (3, 2))
        with torch.no_grad():
            s_next = model.recurrent(s, a)[0]
        onehot = torch.nn.functional.one_hot(a, 4).float()
        torch.testing.assert_close(seen[0], torch.cat([s_next if flag else s, onehot], -1).flatten(1))
        assert not torch.allclose(s_next, s)


def test_grad_scale_hook_halves_the_gradient_of_the_states_own_heads():
    """K = 1: ours halves only what s_{t,1} passes on to step 2 (none here), so nothing changes; the authors' hook
    halves all of s_{t,1}'s gradient, so the dynamics (reached only through s_{t,1}) get exactly half, the heads the
    same gradient, and the representation a different one."""
    grads = {}
    for hook in (False, True):
        args, model, target, replay, rng = tiny_setup(0, unroll_steps=1, grad_scale_hook=hook, max_grad_norm=math.inf)
        cfg = mazero.search_config(args, args.num_simulations)
        b = mazero.make_batch(replay, target, args, cfg, rng, torch.device("cpu"), 0.4, {"model": 0.0, "tree": 0.0})
        torch.manual_seed(5)  # the same dropout masks
        mazero.train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), b, args)
        grads[hook] = {k: q.grad.clone() for k, q in model.named_parameters() if q.grad is not None}
    for name, g in grads[False].items():
        h = grads[True][name]
        if name.startswith(("dynamics", "comm")):
            torch.testing.assert_close(h, 0.5 * g)
        elif name.startswith(("value", "policy", "reward", "projection", "predictor")):
            torch.testing.assert_close(h, g)
    rep = [name for name in grads[False] if name.startswith("representation")]
    assert any(not torch.allclose(grads[True][k], grads[False][k]) for k in rep)
    assert any(g.abs().sum() > 0 for k, g in grads[False].items() if k.startswith("dynamics"))


def test_scale_gradient():
    x = torch.ones(3, requires_grad=True)
    y = mazero.scale_gradient(x, 0.5)
    y.sum().backward()
    assert torch.equal(y, x.detach()) and torch.allclose(x.grad, torch.full((3,), 0.5))


DIAGNOSE = Path(SCRIPT).parent / "benchmarks" / "mazero_diagnose.py"


def load_diagnose():
    import importlib.util
    spec = importlib.util.spec_from_file_location("mazero_diagnose", DIAGNOSE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StepModel:
    """A stand-in model whose latent is the position t in the concatenated episodes (the first observation entry holds
    the episode's start): v(s_t) decodes to values[t] and the reward predicted from s_{t,k} (latent t + k) to
    rewards[t + k + shift]."""
    S = 5

    def __init__(self, values, rewards, shift=0):
        self.values, self.rewards, self.shift = torch.as_tensor(values), torch.as_tensor(rewards), shift

    def logits(self, x):
        return torch.log(mazero.scalar_to_support(x.float(), self.S) + 1e-12)

    def initial(self, x):
        t = x[:, 0, 0].long() + torch.arange(len(x))
        return t, self.logits(self.values[t]), None

    def recurrent(self, s, a):
        return s + 1, self.logits(self.rewards[(s + self.shift).clamp(max=len(self.rewards) - 1)]), None, None


def test_diagnose_aligns_values_with_returns_and_unrolled_rewards_with_real_ones():
    """benchmarks/mazero_diagnose.py: v(s_t) against G_t = sum_i gamma^i u_{t+i} within the episode, and the reward the
    model predicts at unroll step k from s_{t,0} against u_{t+k-1}; a model one step off is caught."""
    diag, gamma, rng = load_diagnose(), 0.9, np.random.default_rng(0)
    rewards = [rng.uniform(-2, 3, T).astype(np.float32) for T in (7, 3)]
    returns = [[sum(gamma ** i * r[t + i] for i in range(len(r) - t)) for t in range(len(r))] for r in rewards]
    starts = np.cumsum([0, len(rewards[0])])
    episodes = [(np.full((len(r), 3, 4), t0, np.float32), np.zeros((len(r), 3), int), r, 1.0)
                for t0, r in zip(starts, rewards)]
    values, flat_rewards = np.concatenate(returns), np.concatenate(rewards)

    exact = diag.model_accuracy(StepModel(values, flat_rewards), episodes, gamma)
    assert exact["value_corr"] == pytest.approx(1, abs=1e-4) and abs(exact["value_bias"]) < 1e-3
    assert all(exact[f"reward_rmse_k{k}"] < 1e-3 for k in range(1, 6)), exact
    assert diag.model_accuracy(StepModel(values + 1, flat_rewards), episodes, gamma)["value_bias"] == \
        pytest.approx(1.0, abs=1e-3)
    assert diag.model_accuracy(StepModel(values, flat_rewards, shift=1), episodes, gamma)["reward_rmse_k1"] > 0.5
    assert all(abs(exact[f"reward_bias_k{k}"]) < 1e-3 for k in range(1, 6)), exact
    assert diag.model_accuracy(StepModel(values, flat_rewards + 0.5), episodes, gamma)["reward_bias_k1"] == \
        pytest.approx(0.5, abs=1e-3)


REWARD_INFO = Path(SCRIPT).parent / "benchmarks" / "reward_information.py"


def test_reward_information_stacks_frames_as_mazero_and_writes_its_rows(tmp_path, capfd):
    """benchmarks/reward_information.py: features are the S latest frames (zeros before the start, oldest first, as
    Replay.stacked) and the one-hot joint action; a tiny run writes one row per metric, frame count and seed; a map
    SMAX does not play is a one-line error."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("reward_information", REWARD_INFO)
    ri = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ri)
    n, d, A, S = 2, 3, 4, 3
    o = np.arange(4)[:, None, None] + 10 * np.arange(n)[None, :, None] + np.zeros((1, 1, d))  # frame t, agent i: 10i+t
    a = np.array([[0, 1], [2, 3], [1, 1], [3, 0]])
    x = ri.features((o, a, np.zeros(4, np.float32), True), S, A)
    assert x.shape == (4, n * S * d + n * A)
    replay = mazero.Replay(10, n, d, A, S)
    replay.add_game(o, a, np.zeros(4), np.ones((4, n, A), bool))
    np.testing.assert_array_equal(x[:, :n * S * d], replay.stacked(np.arange(4)).reshape(4, -1))
    np.testing.assert_array_equal(x[:, n * S * d:].reshape(4, n, A).argmax(-1), a)
    out = tmp_path / "ri"
    assert ri.main(["--seeds", "0", "1", "--num-envs", "4", "--steps", "40", "--iterations", "20",
                    "--out", str(out)]) == 0
    with open(f"{out}.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["seed"], r["metric"]) for r in rows} == {
        (seed, f"reward_{m}_{S}") for seed in ("0", "1") for m in ("r2", "corr", "rmse", "corr_nowin") for S in (1, 4)}
    assert all(np.isfinite(float(r["value"])) for r in rows if r["metric"] != "reward_corr_nowin_1")
    capfd.readouterr()
    with pytest.raises(SystemExit) as e:
        ri.main(["--map", "MMM2", "--out", str(out)])
    assert e.value.code == 2 and "unknown SMAX map" in capfd.readouterr().err


def run(args, cwd, timeout=240):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


TINY = ["--num-envs", "8", "--num-simulations", "4", "--reanalyse-simulations", "2", "--batch-size", "8",
        "--min-replay-size", "40", "--updates-per-env-step", "0.05", "--eval-episodes", "8", "--eval-interval", "200",
        "--checkpoint-interval", "200", "--target-update-interval", "2", "--hidden-size", "16"]  # no preset: CPU note
PROGRESS = re.compile(r"step [\d,]+/[\d,]+ \(\d+%\) \| \d+\.\d env steps/s \| [\d,]+ updates \| "
                      r"train win rate (\d\.\d\d, return -?\d+\.\d\d|n/a, return n/a) \| ETA (\d+:\d\d:\d\d|n/a)")
EVAL = re.compile(r"eval at step ([\d,]+): win rate \d\.\d{3}, return -?\d+\.\d\d \(8 episodes, greedy\)")


def test_smoke_update_reanalyse_eval_checkpoint_resume_purge_video(tmp_path, monkeypatch, capsys):
    """A run to 200 (no --capture-video: no videos/), a resume to 400 with --capture-video, then a second resume from
    the checkpoint at 200, as if the first resume had died before its checkpoint: TensorBoard (purge_step) must show
    every evaluation once. Also the console lines, the CPU note, a truncated checkpoint, --eval-only, and
    benchmarks/mazero_diagnose.py on the checkpoint."""
    import shutil

    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = run([*TINY, "--total-timesteps", "200"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    lines = r.stdout.splitlines()
    assert [m[1] for m in map(EVAL.fullmatch, lines) if m] == ["0", "200"], r.stdout
    progress = [line for line in lines if PROGRESS.fullmatch(line)]
    assert progress and progress[-1].startswith("step 200/200 (100%)") and " 0:00:00" in progress[-1], r.stdout
    note = [line for line in lines if " s per update " in line]
    assert len(note) == 1 and note[0].endswith("faster here: python mazero.py --map 3m --preset cpu"), r.stdout
    assert f"run directory: runs/{run_dir.name}" in lines and not (run_dir / "videos").exists()
    ckpt_path = run_dir / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    step, updates, _, _, next_eval, next_ckpt = ckpt["counters"]
    assert ckpt["script"] == "mazero" and ckpt["map"] == "3m" and step == 200 and updates >= 3
    assert next_eval > step and next_ckpt > step  # the next evaluation and checkpoint are ahead, not behind
    assert ckpt["replay"]["reward"].shape[0] > 0 and ckpt["replay"]["obs"].dtype == torch.float16
    assert all(isinstance(v, torch.Tensor) for v in ckpt["replay"].values())  # not ndarrays: see Replay.state_dict

    ea = EventAccumulator(str(run_dir)).Reload()
    tags = set(ea.Tags()["scalars"])
    for tag in ["losses/total", "losses/reward", "losses/value", "losses/policy", "losses/consistency",
                "eval/win_rate", "eval/episodic_return", "charts/SPS", "search/root_value",
                "search/visit_entropy", "search/simulations_per_second", "search/reanalyse_root_value"]:
        assert tag in tags, tag
    assert all(np.isfinite(e.value) for e in ea.Scalars("losses/total"))
    assert ea.Scalars("charts/updates")[-1].value == updates  # every update reanalysed its batch first
    assert {round(e.value, 9) for e in ea.Scalars("charts/learning_rate")} == {1e-4}  # constant without --anneal-lr

    at_200 = tmp_path / "at_200.pt"
    shutil.copy(ckpt_path, at_200)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt_path.read_bytes()[: ckpt_path.stat().st_size // 2])
    with pytest.raises(SystemExit) as e:
        parse(monkeypatch, ["--checkpoint", str(truncated)])
    assert e.value.code == 2
    assert capsys.readouterr().err == f"error: checkpoint {truncated} is truncated or not a torch file\n"

    r = run(["--checkpoint", str(ckpt_path), "--total-timesteps", "400", "--capture-video"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming {run_dir.name} at step 200 ({updates} updates)" in r.stdout.splitlines()
    assert [m[1] for m in map(EVAL.fullmatch, r.stdout.splitlines()) if m] == ["400"], r.stdout
    resumed = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert resumed["counters"][0] == 400 and resumed["counters"][1] > updates
    assert sorted(p.name for p in (run_dir / "videos").iterdir()) == ["step_400.gif"]
    with Image.open(run_dir / "videos" / "step_400.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames > 1

    with pytest.raises(SystemExit) as e:  # finished: another final evaluation would log step 400 twice
        parse(monkeypatch, ["--checkpoint", str(ckpt_path)])
    assert e.value.code == 0 and capsys.readouterr().out.startswith(f"nothing to do: {run_dir.name} is at step 400 ")
    r = run(["--checkpoint", str(at_200), "--total-timesteps", "400"], tmp_path)  # the same run dir, from 200 again
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((tmp_path / "runs").iterdir())) == 1
    ea = EventAccumulator(str(run_dir)).Reload()  # purge_orphaned_data: the first resume's steps > 200 are dropped
    assert [e.step for e in ea.Scalars("eval/win_rate")] == [0, 200, 400]
    steps = [e.step for e in ea.Scalars("charts/updates")]
    assert steps == sorted(set(steps)) and steps[-1] > 300  # each step once (an update every 2.5 env steps)
    assert sorted(p.name for p in (run_dir / "videos").iterdir()) == ["step_400.gif"]  # the copy: no --capture-video

    r = run(["--checkpoint", str(ckpt_path), "--eval-only", "--eval-episodes", "8"], tmp_path)
    assert r.returncode == 0 and EVAL.fullmatch(r.stdout.splitlines()[-1]), r.stdout + r.stderr[-2000:]

    diag = subprocess.run([sys.executable, str(DIAGNOSE), str(ckpt_path), "--episodes", "4", "--out",
                           str(tmp_path / "diag")], capture_output=True, text=True, timeout=240)
    assert diag.returncode == 0, diag.stderr[-2000:]
    rows = {r["metric"]: r for r in csv.DictReader(open(tmp_path / "diag.csv"))}
    assert {"diag/value_corr", "diag/reward_rmse_k5", "diag/greedy_sampled", "diag/search_win_rate",
            "diag/selfplay_win_rate_tau1", "diag/selfplay_win_rate_tau0.25", "diag/selfplay_tau1_value_corr",
            "diag/selfplay_tau1_reward_bias_k1"} <= set(rows)
    assert all(r["map"] == "3m" and r["variant"] == "mazero" and r["seed"] == "1" and r["step"] == "400"
               for r in rows.values())
    assert 0 <= float(rows["diag/search_agrees"]["value"]) <= float(rows["diag/greedy_sampled"]["value"]) <= 1
    timeouts = float(rows["diag/greedy_timeout_rate"]["value"])
    length = float(rows["diag/greedy_episode_length"]["value"])
    assert 0 <= timeouts <= 1 - float(rows["diag/greedy_win_rate"]["value"]) and 1 <= length <= 60
    assert (timeouts == 1) == (length == 60)  # 3m's limit: every episode a time-out iff all are 60 steps long
    # an earlier diagnosis's CSV stands in for a run whose checkpoint is gone: seed 2 (rows made up here) joins seed 1
    seed2 = [dict(r, seed="2", value="0.5" if r["metric"] == "diag/greedy_sampled" else r["value"])
             for r in csv.DictReader(open(tmp_path / "diag.csv"))]
    with open(tmp_path / "seed2.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(seed2[0]))
        writer.writeheader()
        writer.writerows(seed2)
    both = subprocess.run([sys.executable, str(DIAGNOSE), str(tmp_path / "diag.csv"), str(tmp_path / "seed2.csv"),
                           "--out", str(tmp_path / "both")], capture_output=True, text=True, timeout=60)
    assert both.returncode == 0, both.stderr[-2000:]
    summary = {(r["seed"], r["metric"]): float(r["value"]) for r in csv.DictReader(open(tmp_path / "both_summary.csv"))}
    sampled = float(rows["diag/greedy_sampled"]["value"])
    assert summary[("seeds", "diag/greedy_sampled")] == 2
    assert summary[("mean", "diag/greedy_sampled")] == pytest.approx((sampled + 0.5) / 2, abs=1e-5)


def test_anneal_lr_decays_linearly_to_zero_over_the_runs_updates(tmp_path):
    """--anneal-lr: update u (0-based) uses lr x (1 - u / total updates), total = --total-timesteps x
    --updates-per-env-step (here 200 x 0.05 = 10, of which 4 happen after min replay)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = run([*TINY, "--total-timesteps", "200", "--anneal-lr", "--learning-rate", "1e-3", "--no-save-model"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    lrs = [e.value for e in EventAccumulator(str(run_dir)).Reload().Scalars("charts/learning_rate")]
    assert len(lrs) >= 3
    assert lrs == pytest.approx([1e-3 * (1 - u / 10) for u in range(len(lrs))], rel=1e-5)


def test_console_lines_are_the_shared_format():
    line = mazero.progress_line(12_345, 50_000, 13.24, 3_086, [0.0, 0.62], [12.0, 12.8], 2856.4)
    assert line == ("step 12,345/50,000 (25%) | 13.2 env steps/s | 3,086 updates | train win rate 0.31, return 12.40 "
                    "| ETA 0:47:36")
    assert PROGRESS.fullmatch(line)
    line = mazero.progress_line(8, 50_000, 0.0, 0, [], [], None)
    assert line == "step 8/50,000 (0%) | 0.0 env steps/s | 0 updates | train win rate n/a, return n/a | ETA n/a"
    assert mazero.hms(3 * 86_400 + 61) == "72:01:01"
    # the last vectorised step overshoots the total (50,016 of 50,000 with 32 envs): ETA 0, not -1:59:59
    assert mazero.progress_line(50_016, 50_000, 15.9, 12_360, [], [], -1.0).endswith("| ETA 0:00:00")
    assert mazero.eval_line(12_345, 0.40625, 15.2149, 32, False) == (
        "eval at step 12,345: win rate 0.406, return 15.21 (32 episodes, greedy)")
    assert mazero.eval_line(0, 1.0, 20.0, 64, True).endswith("(64 episodes, search)")


def test_run_directory_is_unique_and_checked_first(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert mazero.make_run_dir("3m__mazero__1__100", resume=False) == ("3m__mazero__1__100", True)
    assert mazero.make_run_dir("3m__mazero__1__100", resume=False) == ("3m__mazero__1__100_2", False)  # same second
    assert mazero.make_run_dir("3m__mazero__1__100", resume=False) == ("3m__mazero__1__100_3", False)
    assert mazero.make_run_dir("3m__mazero__1__100", resume=True) == ("3m__mazero__1__100", False)  # resume: reused
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "3m__mazero__1__100", "3m__mazero__1__100_2", "3m__mazero__1__100_3"]
    monkeypatch.chdir(tmp_path / "runs" / "3m__mazero__1__100")
    Path("runs").write_text("a file where the run directories should go")
    with pytest.raises(SystemExit) as e:
        mazero.make_run_dir("x", resume=False)
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: cannot write run directory runs/x: Not a directory\n"


def parse(monkeypatch, argv):
    """Run the script's own argument handling in-process (a subprocess costs ~5-10 s of imports here)."""
    monkeypatch.setattr(sys, "argv", ["mazero.py", *argv])
    args, _ = mazero.parse_args()
    mazero.validate(args)
    return args


@pytest.mark.parametrize("argv, message", [
    (["--num-sampled", "0"], "--num-sampled"),
    (["--num-simulations", "0"], "--num-simulations"),
    (["--rho", "1.5"], "--rho"),
    (["--rho", "-0.1"], "--rho"),
    (["--lam", "-0.1"], "--lam"),
    (["--lam", "1.5"], "--lam"),
    (["--alpha", "0"], "--alpha"),
    (["--alpha", "-1"], "--alpha"),
    (["--awpo-weight-clip", "0"], "--awpo-weight-clip"),
    (["--reanalyse-simulations", "0"], "--reanalyse-simulations"),
    (["--num-envs", "0"], "--num-envs"),
    (["--action-temperature", "-1"], "--action-temperature"),
    (["--td-age-ratio", "-0.3"], "--td-age-ratio"),
    (["--temperature-schedule", "cosine"], "--temperature-schedule"),
    (["--hidden-size", "60"], "--hidden-size"),
    (["--policy-loss", "ppo"], "--policy-loss"),
    (["--tree-legal-mask", "leaf"], "--tree-legal-mask"),
    (["--policy-softmax", "none"], "--policy-softmax"),
    (["--preset", "gpu"], "preset"),
    (["--eval-only"], "--eval-only needs --checkpoint"),
    (["--video-interval", "0"], "--video-interval"),
    (["--replay-window", "8"], "--replay-window"),  # below the default --batch-size 256
    (["--gamma", "nan"], "--gamma must be a finite number, got nan"),
    (["--learning-rate", "inf"], "--learning-rate must be a finite number, got inf"),
    (["--awpo-weight-clip", "nan"], "--awpo-weight-clip"),
    (["--dirichlet-alpha", "-inf"], "--dirichlet-alpha"),
])
def test_bad_arguments_one_line_exit_2(monkeypatch, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        parse(monkeypatch, argv)
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


def test_defaults_are_the_papers_table_1():
    a = mazero.Args()
    table_1 = dict(stacked_observations=4, gamma=0.99, batch_size=256, learning_rate=1e-4, adam_eps=1e-5,
                   weight_decay=0.0, max_grad_norm=5.0, priority_alpha=0.6, priority_beta=0.4, eval_episodes=32,
                   min_replay_size=300, target_update_interval=200, unroll_steps=5, td_steps=5, num_sampled=10,
                   num_simulations=100, rho=0.75, lam=0.8, alpha=3.0)
    assert {k: getattr(a, k) for k in table_1} == table_1
    assert (a.hidden_size, a.support_size, a.policy_loss, a.os_lambda, a.communication, a.flattened_model) == (
        128, 5, "awpo", True, True, False)  # Appendix B.1; the full method
    assert a.reanalyse_simulations is None and a.preset is None
    assert (a.tree_legal_mask, a.policy_softmax, a.grad_scale_hook, a.reward_from_next_state) == (
        "all-nodes", "legal", False, False)  # the behaviour before these flags existed
    assert not a.anneal_lr  # Table 1's learning rate is constant


def test_unclipped_awpo_weight_is_the_papers_eq_10(monkeypatch):
    assert parse(monkeypatch, ["--awpo-weight-clip", "inf"]).awpo_weight_clip == math.inf
    adv, valid = np.array([[1.0, 2.0, 3.0]]), np.ones((1, 3), bool)
    w = mazero.awpo_weights(adv, valid, alpha=0.5, clip=math.inf)
    np.testing.assert_allclose(w, np.exp((adv - 2.0) / np.std([1.0, 2.0, 3.0]) / 0.5))


def test_presets_and_checkpoint_defaults(monkeypatch, tmp_path, capsys):
    args = parse(monkeypatch, ["--preset", "cpu", "--num-simulations", "7"])
    assert args.num_simulations == 7 and args.reanalyse_simulations == mazero.CPU_PRESET["reanalyse_simulations"]
    assert parse(monkeypatch, []).num_simulations == 100  # the paper's Table 1
    saved = vars(mazero.Args(map="8m", rho=0.25))
    torch.save({"script": "mazero", "map": "8m", "args": saved, "counters": (0, 0, 0, 0.0, 0, 10_000)},
               tmp_path / "mz.pt")
    args = parse(monkeypatch, ["--checkpoint", str(tmp_path / "mz.pt")])
    assert args.map == "8m" and args.rho == 0.25  # a resumed run keeps its settings
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    torch.save([1, 2], tmp_path / "list.pt")
    for argv, message in [(["--checkpoint", str(tmp_path / "mz.pt"), "--map", "3m"], "is for map 8m, not 3m"),
                          (["--checkpoint", str(tmp_path / "missing.pt")], "cannot read checkpoint"),
                          (["--checkpoint", str(tmp_path / "garbage.pt")], "is truncated or not a torch file"),
                          (["--checkpoint", str(tmp_path / "list.pt")], "not a mazero.py checkpoint")]:
        with pytest.raises(SystemExit) as e:
            parse(monkeypatch, argv)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_bad_map_and_foreign_checkpoint_exit_2_and_write_nothing(tmp_path):
    torch.save({"script": "fop", "map": "3m"}, tmp_path / "fop.pt")
    for argv, message in [(["--map", "4m"], "unknown map"), (["--checkpoint", str(tmp_path / "fop.pt")],
                                                             "not a mazero.py checkpoint"),
                          (["--map", "MMM2", "--backend", "smax"], "needs StarCraft II")]:
        r = run(argv, tmp_path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.stderr
    assert not (tmp_path / "runs").exists()  # MMM2 got a run directory before the env failed: it is removed


def test_unwritable_run_directory_one_line_before_any_env(tmp_path):
    (tmp_path / "runs").write_text("not a directory")
    r = run([], tmp_path)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr.startswith("error: cannot write run directory runs/3m__mazero__1__") and r.stderr.endswith(
        ": Not a directory\n") and r.stderr.count("\n") == 1, r.stderr


def test_help_names_the_maps_and_says_authors_code_and_paper(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as e:
        parse(monkeypatch, ["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--tree-legal-mask" in out
    text = " ".join(out.split())
    assert all(m in text for m in ("games.SMAC_MAPS", "games.SMAX_MAPS", "3m,", "2s3z,", "corridor,", "MMM2,")), text
    assert not re.search(r"\(C[:;, )]|\(P[:;, )]|\bC:|\bP:|; C\b|; P\b", out), out  # "authors' code", "paper"
