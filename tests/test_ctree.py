"""Tests for ctree_numpy: agreement with a slow reference, hand-computed OS(lambda) trees, batch independence, masks,
determinism, a bandit, config validation."""

import math

import numpy as np
import pytest

from ctree_numpy import SearchConfig, search, validate
from ctree_reference import node_value, reference_search

# ---------------------------------------------------------------------------------------------------------------------
# A deterministic fake model: reward, value and logits are a hash of (root, joint-action path), so the vectorised
# search (which names nodes by tree index) and the reference (which names them by path) see the same model.

def _mix(z):
    """splitmix64 finaliser on uint64 arrays (wrap-around arithmetic)."""
    z = z.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _unit(z):
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


class PathModel:
    """recurrent_fn for ctree_numpy (keeps each node's path hash in a [B, N + 1] table) and path_fn(b) for the
    reference; rewards and values in [-1, 1), logits in [0, logit_scale)."""

    def __init__(self, B, n, A, N, seed, logit_scale=3.0):
        self.n, self.A, self.scale = n, A, logit_scale
        self.root_keys = _mix(np.arange(B, dtype=np.uint64) + np.uint64(1000 * seed + 7))
        self.keys = np.zeros((B, N + 1), np.uint64)
        self.keys[:, 0] = self.root_keys
        self.radix = (np.uint64(self.A + 1) ** np.arange(n, dtype=np.uint64)).astype(np.uint64)

    def _child(self, key, action):  # key [B], action [B, n]
        code = ((action.astype(np.uint64) + np.uint64(1)) * self.radix).sum(-1, dtype=np.uint64)
        return _mix(key * np.uint64(0x9E3779B97F4A7C15) + code)

    def _outputs(self, key):
        r = 2.0 * _unit(_mix(key ^ np.uint64(1))) - 1.0
        v = 2.0 * _unit(_mix(key ^ np.uint64(2))) - 1.0
        idx = np.arange(self.n * self.A, dtype=np.uint64).reshape(self.n, self.A) + np.uint64(3)
        logits = self.scale * _unit(_mix(key[:, None, None] ^ idx))
        return r, v, logits

    def root(self):
        _, v, logits = self._outputs(self.root_keys)
        return v, logits

    def recurrent_fn(self, parent, action, node):
        key = self._child(self.keys[np.arange(len(parent)), parent], action)
        self.keys[:, node] = key
        return self._outputs(key)

    def path_fn(self, b):
        def model(path):
            key = self.root_keys[b:b + 1]
            for joint in path:
                key = self._child(key, np.array([joint]))
            r, v, logits = self._outputs(key)
            return float(r[0]), float(v[0]), logits[0].tolist()
        return model


def random_legal(rng, B, n, A):
    legal = rng.random((B, n, A)) < 0.6
    legal[np.arange(B)[:, None], np.arange(n)[None, :], rng.integers(0, A, (B, n))] = True  # >= 1 legal per agent
    return legal


# ---------------------------------------------------------------------------------------------------------------------
# Agreement with the reference (tests/ctree_reference.py), fed the same random draws.
# Sampled actions, validity and visit counts must agree exactly. The reference computes the same quantities with its own
# (plain Python float) arithmetic, except the float32 exp of inner-node logits, which it takes from NumPy like the tree;
# so draws could differ only when a uniform lands within rounding of a CDF step, and pUCT choices only on near-exact
# ties, both vanishingly rare with these continuous random models. Values agree to 1e-9 relative (1e-12 absolute): the
# tree ranks and sums returns as (W(x) - P(s)) / gamma^dep(s) and updates V incrementally, the reference sums
# G <- r + gamma G per node and sorts, so they differ by rounding only.

CASES = []
_case_rng = np.random.default_rng(2024)
for i in range(60):
    CASES.append(dict(
        B=int(_case_rng.choice([1, 2, 3])), n=int(_case_rng.choice([1, 2, 3])), A=int(_case_rng.choice([1, 2, 3, 5])),
        K=int(_case_rng.choice([1, 2, 4, 8])), N=int(_case_rng.choice([1, 3, 12, 30])),
        rho=float(_case_rng.choice([0.0, 0.25, 0.5, 0.75, 1.0])), lam=float(_case_rng.choice([0.0, 0.5, 0.8, 1.0])),
        gamma=float(_case_rng.choice([0.9, 0.99, 1.0])), tau=float(_case_rng.choice([1.0, 1.0, 0.5, 2.0])),
        os_lambda=bool(i % 3), add_noise=bool(i % 2), scale=float(_case_rng.choice([0.5, 3.0])), seed=i))


@pytest.mark.parametrize("case", CASES, ids=[f"c{c['seed']}" for c in CASES])
def test_matches_reference(case):
    B, n, A, K, N = case["B"], case["n"], case["A"], case["K"], case["N"]
    cfg = SearchConfig(num_simulations=N, num_sampled=K, gamma=case["gamma"], rho=case["rho"], lam=case["lam"],
                       tau=case["tau"], os_lambda=case["os_lambda"])
    model = PathModel(B, n, A, N, case["seed"], case["scale"])
    root_value, root_logits = model.root()
    legal = random_legal(np.random.default_rng(case["seed"]), B, n, A)
    out = search(model.recurrent_fn, root_value, root_logits, legal, np.random.default_rng(case["seed"]), cfg,
                 add_noise=case["add_noise"])
    roots = reference_search([model.path_fn(b) for b in range(B)], root_value, root_logits, legal,
                             np.random.default_rng(case["seed"]), cfg, add_noise=case["add_noise"])
    close = dict(rtol=1e-9, atol=1e-12)
    for b, root in enumerate(roots):
        slots = np.flatnonzero(out.valid[b])
        assert [tuple(a) for a in out.actions[b, slots]] == root.actions
        np.testing.assert_array_equal(out.visit_counts[b, slots], root.visits)
        np.testing.assert_allclose(out.prior[b, slots], root.prior, rtol=1e-12)
        np.testing.assert_allclose(out.beta_hat[b, slots], root.beta_hat, rtol=0)
        np.testing.assert_allclose(out.root_value[b], node_value(root, cfg), **close)
        values = [node_value(c, cfg) if c else 0.0 for c in root.children]
        rewards = [c.reward if c else 0.0 for c in root.children]
        np.testing.assert_allclose(out.child_value[b, slots], values, **close)
        np.testing.assert_allclose(out.child_reward[b, slots], rewards, rtol=0)
        adv = [r + cfg.gamma * v - root_value[b] for r, v in zip(rewards, values)]
        np.testing.assert_allclose(out.advantage[b, slots], adv, **close)
        assert out.visit_counts[b].sum() == N


def test_matches_reference_many_agents():
    """55 agents with 2 actions: joint-action keys span two 52-bit words; peaked logits make duplicate draws common."""
    B, n, A, K, N = 2, 55, 2, 8, 12
    cfg = SearchConfig(num_simulations=N, num_sampled=K)
    model = PathModel(B, n, A, N, seed=99, logit_scale=100.0)
    root_value, root_logits = model.root()
    legal = np.ones((B, n, A), bool)
    out = search(model.recurrent_fn, root_value, root_logits, legal, np.random.default_rng(1), cfg, add_noise=False)
    roots = reference_search([model.path_fn(b) for b in range(B)], root_value, root_logits, legal,
                             np.random.default_rng(1), cfg, add_noise=False)
    assert (out.valid.sum(1) < K).any()  # some draws were merged
    for b, root in enumerate(roots):
        slots = np.flatnonzero(out.valid[b])
        assert [tuple(a) for a in out.actions[b, slots]] == root.actions
        np.testing.assert_array_equal(out.visit_counts[b, slots], root.visits)
        np.testing.assert_allclose(out.root_value[b], node_value(root, cfg), rtol=1e-9)


def test_mean_value_is_os_lambda_with_rho0_lam1():
    """The identity behind os_lambda=False: the MuZero mean of backed-up returns (value_sum / count) equals OS(lambda)
    with rho = 0 (keep all) and lambda = 1 (no decay), checked on every node of reference trees, where the two are
    computed independently (running sums vs. sorted per-depth lists)."""
    B, n, A, N, K = 3, 2, 4, 40, 6
    mean_cfg = SearchConfig(num_simulations=N, num_sampled=K, os_lambda=False)
    os_cfg = SearchConfig(num_simulations=N, num_sampled=K, rho=0.0, lam=1.0)
    model = PathModel(B, n, A, N, seed=3)
    v, logits = model.root()
    roots = reference_search([model.path_fn(b) for b in range(B)], v, logits, np.ones((B, n, A), bool),
                             np.random.default_rng(0), mean_cfg)
    stack, checked = list(roots), 0
    while stack:
        node = stack.pop()
        assert node_value(node, mean_cfg) == pytest.approx(node_value(node, os_cfg), rel=1e-12, abs=1e-12)
        stack.extend(c for c in node.children if c is not None)
        checked += 1
    assert checked == B * (N + 1)


# ---------------------------------------------------------------------------------------------------------------------
# Hand-built trees. A scripted "rng" fixes the draws: with equal logits over A actions the inverse CDF maps a uniform u
# to action floor(u * A), so the children of every node are chosen by hand; a scripted model gives (reward, value) per
# path. n = 1 agent throughout, so a joint action is a 1-tuple.

class ScriptedRng:
    def __init__(self, picks, A):
        self.picks, self.A = list(picks), A

    def random(self, shape):  # shape (K, B=1, n=1): the next list of actions, as uniforms at bin centres
        acts = self.picks.pop(0) if self.picks else [0] * shape[0]
        return ((np.array(acts, float) + 0.5) / self.A).reshape(shape)


def scripted(values):
    """values: {path tuple of actions: (reward, value)} -> recurrent_fn for B = 1, n = 1."""
    paths = {0: ()}

    def fn(parent, action, node):
        path = paths[int(parent[0])] + (int(action[0, 0]),)
        paths[node] = path
        r, v = values[path]
        return np.array([r]), np.array([v]), np.zeros((1, 1, A_HAND))
    return fn


A_HAND = 4


def run_hand(values, picks, N, K, **cfg):
    config = SearchConfig(num_simulations=N, num_sampled=K, **cfg)
    out = search(scripted(values), np.array([values[()][1]]), np.zeros((1, 1, A_HAND)), np.ones((1, 1, A_HAND), bool),
                 ScriptedRng(picks, A_HAND), config, add_noise=False)
    return out


@pytest.mark.parametrize("rho, k", [(0.75, 1), (0.5, 2), (0.25, 3), (0.0, 3), (1.0, 1)])
def test_hand_one_level_quantile(rho, k):
    """Root with three leaves (visited once each, in order). U_1(root) = {r + gamma v} = {3.5, 2.0, -0.5};
    V(root) = (v0 + lam * sum(top k of U_1)) / (1 + lam * k), k = max(1, ceil((1 - rho) * 3))."""
    g, lam = 0.5, 0.8
    values = {(): (0.0, 1.0), (0,): (1.0, 5.0), (1,): (2.0, 0.0), (2,): (-1.0, 1.0)}
    out = run_hand(values, [[0, 1, 2]], N=3, K=3, gamma=g, lam=lam, rho=rho)
    u1 = sorted([1.0 + g * 5.0, 2.0 + g * 0.0, -1.0 + g * 1.0], reverse=True)  # [3.5, 2.0, -0.5]
    expect = (1.0 + lam * sum(u1[:k])) / (1.0 + lam * k)
    assert out.root_value[0] == pytest.approx(expect, rel=1e-12)
    np.testing.assert_array_equal(out.visit_counts[0], [1, 1, 1])
    np.testing.assert_allclose(out.child_value[0], [5.0, 0.0, 1.0])   # a leaf's V is its own v (U_0 only)
    np.testing.assert_allclose(out.advantage[0], [3.5 - 1.0, 2.0 - 1.0, -0.5 - 1.0])


def test_hand_chain_lambda():
    """K = 1 and one legal action: a chain root -> 1 -> 2 -> 3. Each U_d has one element, the d-step return, so
    V(root) = sum_d lam^d G_d / sum_d lam^d (Eq. 7 with rho irrelevant)."""
    g, lam = 0.9, 0.5
    values = {(): (0.0, 0.5), (0,): (1.0, 2.0), (0, 0): (-1.0, 4.0), (0, 0, 0): (0.5, -3.0)}
    out = run_hand(values, [[0]] * 5, N=3, K=1, gamma=g, lam=lam)
    G = [0.5,                                    # d = 0: v(root)
         1.0 + g * 2.0,                          # d = 1: r1 + g v1
         1.0 + g * (-1.0) + g * g * 4.0,         # d = 2: r1 + g r2 + g^2 v2
         1.0 - g + g * g * 0.5 + g ** 3 * -3.0]  # d = 3
    expect = sum(lam ** d * x for d, x in enumerate(G)) / sum(lam ** d for d in range(4))
    assert out.root_value[0] == pytest.approx(expect, rel=1e-12)
    # V(node 1): its own d = 0, 1, 2 returns
    G1 = [2.0, -1.0 + g * 4.0, -1.0 + g * 0.5 + g * g * -3.0]
    expect1 = sum(lam ** d * x for d, x in enumerate(G1)) / sum(lam ** d for d in range(3))
    assert out.child_value[0, 0] == pytest.approx(expect1, rel=1e-12)
    assert out.visit_counts[0, 0] == 3


def test_hand_two_levels():
    """gamma = 1, lam = 0.5, rho = 0.5 (so k = ceil(|U_d| / 2)). Root (v = 0) children a (v = 10) and b (v = -10);
    a's sampled children a0 = action 2 (r = 1, v = 0) and a1 = action 3 (r = 2, v = 4). The four simulations, by hand
    (c(s) = 1.25 + log((N + 19653) / 19652) ~= 1.25):
      1, 2: the root visits a, then b (each sampled child once). Advantages: a 10, b -10.
      3: root: min-max (-10, 10), value terms a 1, b 0, equal bonuses -> a. At a nothing is visited: every bonus is 0
         and every value term is the unvisited one, a tie -> slot 0 -> a0. Then V(a) = (10 + 0.5 * 1) / 1.5 = 7.
      4: root: advantages {a 7, b -10, a0 -9}: value terms a 1, b 0; bonuses a 0.5 / 3 * c * sqrt(3) ~= 0.36,
         b 0.5 / 2 * c * sqrt(3) ~= 0.54 -> a (1.36 vs 0.54). At a: a0 scores (-9 + 10) / 17 + 0.5 / 2 * c ~= 0.37,
         a1 (unvisited, advantage 0) 10 / 17 + 0.5 * c ~= 1.21 -> a1.
    """
    lam = 0.5
    values = {(): (0.0, 0.0), (0,): (0.0, 10.0), (1,): (0.0, -10.0),
              (0, 2): (1.0, 0.0), (0, 3): (2.0, 4.0)}
    picks = [[0, 1],   # root: children a = action 0, b = action 1
             [2, 3],   # a: children a0 = action 2, a1 = action 3
             [0, 0],   # b (never expanded further)
             [0, 0], [0, 0]]
    out = run_hand(values, picks, N=4, K=2, gamma=1.0, lam=lam, rho=0.5)
    np.testing.assert_array_equal(out.visit_counts[0], [3, 1])
    # V(a): U_0 = {10}; U_1 = {1 + 0, 2 + 4} = {1, 6}, top ceil(2 / 2) = 1 -> {6}
    v_a = (10.0 + lam * 6.0) / (1.0 + lam)
    # V(root): U_0 = {0}; U_1 = {0 + 10, 0 - 10} -> top 1 {10}; U_2 = {0 + 1 + 0, 0 + 2 + 4} -> top 1 {6}
    v_root = (0.0 + lam * 10.0 + lam ** 2 * 6.0) / (1.0 + lam + lam ** 2)
    assert out.child_value[0, 0] == pytest.approx(v_a, rel=1e-12)
    assert out.child_value[0, 1] == pytest.approx(-10.0, rel=1e-12)
    assert out.root_value[0] == pytest.approx(v_root, rel=1e-12)
    np.testing.assert_allclose(out.advantage[0], [v_a - 0.0, -10.0 - 0.0])


# ---------------------------------------------------------------------------------------------------------------------
# Properties.

def _run(B=6, n=3, A=5, N=30, K=6, seed=0, model_seed=0, legal=None, add_noise=True, **cfg):
    model = PathModel(B, n, A, N, model_seed)
    v, logits = model.root()
    legal = np.ones((B, n, A), bool) if legal is None else legal
    config = SearchConfig(num_simulations=N, num_sampled=K, **cfg)
    return search(model.recurrent_fn, v, logits, legal, np.random.default_rng(seed), config, add_noise=add_noise)


def _fields(out):
    return {k: getattr(out, k) for k in out.__dataclass_fields__}


@pytest.mark.parametrize("os_lambda", [True, False])
def test_batch_independence(os_lambda):
    """Root 0's result does not depend on the other roots (their model, values, logits and masks all change)."""
    B, n, A, N, K = 5, 3, 6, 40, 8
    legal = random_legal(np.random.default_rng(1), B, n, A)
    outs = []
    for other_seed in (0, 1):
        model = PathModel(B, n, A, N, seed=0)
        v, logits = model.root()
        other = PathModel(B, n, A, N, seed=10 + other_seed)  # a different model for roots 1..B-1
        v_o, logits_o = other.root()
        v[1:], logits[1:] = v_o[1:], logits_o[1:]
        lg = legal.copy()
        if other_seed:
            lg[1:] = True

        def fn(parent, action, node):
            r, val, lo = model.recurrent_fn(parent, action, node)
            r2, val2, lo2 = other.recurrent_fn(parent, action, node)
            return np.r_[r[:1], r2[1:]], np.r_[val[:1], val2[1:]], np.concatenate([lo[:1], lo2[1:]])
        cfg = SearchConfig(num_simulations=N, num_sampled=K, os_lambda=os_lambda)
        outs.append(search(fn, v, logits, lg, np.random.default_rng(5), cfg))
    for name, a in _fields(outs[0]).items():
        np.testing.assert_array_equal(a[0], getattr(outs[1], name)[0], err_msg=name)
    assert not np.array_equal(outs[0].visit_counts[1:], outs[1].visit_counts[1:])


def test_masks_honoured_and_counts():
    B, n, A, N, K = 8, 4, 7, 25, 10
    legal = random_legal(np.random.default_rng(3), B, n, A)
    out = _run(B, n, A, N, K, legal=legal)
    b, k = np.nonzero(out.valid)
    for i in range(n):
        assert legal[b, i, out.actions[b, k, i]].all()
    np.testing.assert_array_equal(out.visit_counts.sum(1), N)
    np.testing.assert_allclose(out.policy.sum(1), 1.0)
    assert (out.visit_counts[~out.valid] == 0).all() and (out.actions[~out.valid] == 0).all()
    assert (out.advantage[~out.valid] == 0).all()
    # distinct joint actions among valid slots; beta_hat sums to one over them
    for bb in range(B):
        acts = [tuple(a) for a in out.actions[bb, out.valid[bb]]]
        assert len(set(acts)) == len(acts)
    np.testing.assert_allclose(out.beta_hat.sum(1), 1.0)
    np.testing.assert_allclose(out.prior, out.beta_hat)  # tau = 1: prior = beta_hat * pi / beta = beta_hat exactly


def test_deterministic_under_seed():
    a, b, c = _run(seed=11), _run(seed=11), _run(seed=12)
    for name, x in _fields(a).items():
        np.testing.assert_array_equal(x, getattr(b, name), err_msg=name)
    assert not np.array_equal(a.actions, c.actions)


@pytest.mark.parametrize("os_lambda", [True, False])
def test_bandit_concentrates_on_best_arm(os_lambda):
    """One agent, 6 arms, value-revealing model (reward = arm quality, value 0): all arms are sampled (K = 60) and the
    search should spend most of its visits on the best arm."""
    A, N = 6, 60
    quality = np.array([0.1, 0.3, 0.9, 0.2, 0.5, 0.0])

    def fn(parent, action, node):
        r = np.where(parent == 0, quality[action[:, 0]], 0.0)
        return r, np.zeros(len(parent)), np.zeros((len(parent), 1, A))
    cfg = SearchConfig(num_simulations=N, num_sampled=60, os_lambda=os_lambda)
    out = search(fn, np.zeros(2), np.zeros((2, 1, A)), np.ones((2, 1, A), bool), np.random.default_rng(0), cfg,
                 add_noise=False)
    for b in range(2):
        assert out.valid[b].sum() == A
        best = out.actions[b, np.argmax(out.visit_counts[b]), 0]
        assert best == 2
        assert out.visit_counts[b].max() > N / 2


def test_noise_changes_only_the_root_distribution():
    """With a one-hot legal mask per agent the root has a single child whatever the noise."""
    B, n, A = 3, 2, 5
    legal = np.zeros((B, n, A), bool)
    legal[:, :, 2] = True
    out = _run(B, n, A, legal=legal, add_noise=True)
    assert (out.valid.sum(1) == 1).all()
    assert (out.actions[out.valid] == 2).all()


@pytest.mark.parametrize("field, value", [
    ("num_simulations", 0), ("num_sampled", 0), ("num_simulations", 2.5), ("rho", -0.1), ("rho", 1.5), ("lam", 1.01),
    ("gamma", 0.0), ("gamma", 1.2), ("tau", 0.0), ("c_base", 0.0), ("value_delta_min", 0.0),
    ("dirichlet_alpha", 0.0), ("dirichlet_fraction", 1.5), ("rho", math.nan)])
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        SearchConfig(**{field: value})
    cfg = SearchConfig()
    setattr(cfg, field, value)  # fields changed after construction are caught by search's validate
    with pytest.raises(ValueError, match=field):
        validate(cfg)


def test_input_validation():
    with pytest.raises(ValueError, match="legal"):
        _run(B=2, n=2, A=3, legal=np.zeros((2, 2, 3), bool))
    with pytest.raises(ValueError, match="shapes"):
        search(None, np.zeros(2), np.zeros((2, 3)), np.ones((2, 3), bool), np.random.default_rng(0), SearchConfig())
