"""Slow, obviously-correct reference for ctree_numpy.search (tests only).

One Node object per tree node, plain Python floats, lists and recursion, nothing vectorised: returns are backed up
leaf-to-root as G <- r + gamma G (as MuZero does), each node keeps every return it has received per relative depth, and
OS(lambda) (MAZero Eq. 5-7) sorts those lists when a value is needed. The tree-wide min-max is recomputed by walking the
whole tree before each selection.

It consumes the same random draws as ctree_numpy.search, in the same order: the Dirichlet noise [B, n, A] (if asked),
the root uniforms [K, B, n], then one [K, B, n] array per simulation; u[:, b] belongs to root b. So the roots advance in
lock-step, one simulation at a time, but each root's work is independent of the others.
"""

import bisect
import itertools
import math

import numpy as np


class Node:
    def __init__(self, reward, value, parent):
        self.reward = reward          # r(parent, a)
        self.value = value            # v(s), model prediction
        self.parent = parent
        self.actions = []             # distinct sampled joint actions (tuples), in first-draw order
        self.prior = []
        self.beta_hat = []
        self.visits = []
        self.children = []            # Node, or None while unexpanded
        self.returns = {0: [value]}   # d -> returns to the expanded nodes d levels below (U_d, Eq. 5)
        self.value_sum = value        # MuZero mean: sum and number of backed-up returns
        self.count = 1


def softmax(row, legal):
    """Root policy: masked softmax in float64."""
    top = max(x for x, ok in zip(row, legal) if ok)
    e = [math.exp(x - top) if ok else 0.0 for x, ok in zip(row, legal)]
    z = sum(e)
    return [x / z for x in e]


def inner_policy(row, tau):
    """Inner nodes: like the tree, exponentiate the logits in float32 (the one NumPy call here, so that the weights
    are bitwise the tree's), then work in float64. For tau = 1 the weights are not normalised: the inverse CDF
    scales u by their sum, and the prior is beta_hat, so only their ratios matter."""
    row = np.asarray(row, np.float32)
    e = [float(x) for x in np.exp(row - row.max())]
    if tau == 1.0:
        return e
    z = sum(e)
    return [x / z for x in e]


def sampling_policy(p, tau):
    """beta_i = p_i^(1/tau), renormalised; p itself when tau == 1."""
    if tau == 1.0:
        return p
    out = []
    for row in p:
        e = [x ** (1.0 / tau) for x in row]
        z = sum(e)
        out.append([x / z for x in e])
    return out


def sample_children(node, p, beta, u, K):
    """K joint draws with replacement (u: K x n uniforms), duplicates merged, Sampled MuZero priors (Eq. 3)."""
    counts = {}
    for k in range(K):
        joint = []
        for i, row in enumerate(beta):
            cdf = list(itertools.accumulate(row))
            joint.append(bisect.bisect_right(cdf[:-1], u[k][i] * cdf[-1]))  # inverse CDF
        joint = tuple(joint)
        counts[joint] = counts.get(joint, 0) + 1  # dicts keep first-insertion order
    for joint, c in counts.items():
        pi = math.prod(p[i][a] for i, a in enumerate(joint))
        be = math.prod(beta[i][a] for i, a in enumerate(joint))
        node.actions.append(joint)
        node.beta_hat.append(c / K)
        node.prior.append(c / K * (pi / be) if beta is not p else c / K)
        node.visits.append(0)
        node.children.append(None)


def node_value(node, cfg):
    """V^rho_lambda (Eq. 7), or the MuZero mean of backed-up returns when os_lambda is off."""
    if not cfg.os_lambda:
        return node.value_sum / node.count
    num = den = 0.0
    for d in sorted(node.returns):
        vals = sorted(node.returns[d], reverse=True)
        k = max(1, math.ceil((1.0 - cfg.rho) * len(vals) - 1e-9))  # top (1 - rho), Eq. 6
        num += cfg.lam ** d * sum(vals[:k])
        den += cfg.lam ** d * k
    return num / den


def advantage(parent, child, cfg):
    """Eq. 8: r + gamma V(child) - v(parent)."""
    return child.reward + cfg.gamma * node_value(child, cfg) - parent.value


def all_advantages(node, cfg):
    for child in node.children:
        if child is not None:
            yield advantage(node, child, cfg)
            yield from all_advantages(child, cfg)


def select_slot(node, is_root, sim, lo, delta, cfg):
    if is_root and sim < len(node.actions):
        return sim  # every sampled root child once, in order
    ns = sum(node.visits)
    c = cfg.c_init + math.log((ns + cfg.c_base + 1.0) / cfg.c_base)
    best, best_score = None, -math.inf
    for k, child in enumerate(node.children):
        adv = advantage(node, child, cfg) if child is not None else 0.0
        value_term = min(max((adv - lo) / delta, 0.0), 1.0)
        score = value_term + node.prior[k] / (1 + node.visits[k]) * (c * math.sqrt(ns))
        if score > best_score:  # strict: the first maximum wins
            best, best_score = k, score
    return best


def simulate(root, sim, model, u, cfg):
    advs = list(all_advantages(root, cfg))
    lo, hi = (min(advs), max(advs)) if advs else (0.0, 0.0)
    delta = max(hi - lo, cfg.value_delta_min)
    path, actions, node = [], [], root
    while True:
        k = select_slot(node, node is root, sim, lo, delta, cfg)
        path.append((node, k))
        actions.append(node.actions[k])
        if node.children[k] is None:
            break
        node = node.children[k]
    reward, value, logits = model(tuple(actions))
    leaf = Node(reward, value, node)
    node.children[k] = leaf
    # backup: the return from the node `dist` levels above the leaf is G <- r + gamma G
    g, below = value, leaf
    for dist, (anc, k) in enumerate(reversed(path), start=1):
        anc.visits[k] += 1
        g = below.reward + cfg.gamma * g
        anc.returns.setdefault(dist, []).append(g)
        anc.value_sum += g
        anc.count += 1
        below = anc
    return leaf, logits


def reference_search(models, root_value, root_logits, legal, rng, cfg, add_noise=True):
    """Same inputs as ctree_numpy.search, except models[b](path) -> (reward, value, logits n x A), where path is the
    tuple of joint actions from root b. Returns the roots (Node objects)."""
    B, n, A = len(root_logits), len(root_logits[0]), len(root_logits[0][0])
    K = cfg.num_sampled
    noise = rng.dirichlet([cfg.dirichlet_alpha] * A, size=(B, n)).tolist() if add_noise else None
    u_root = rng.random((K, B, n)).transpose(1, 0, 2).tolist()
    roots = []
    for b in range(B):
        p = [softmax(list(root_logits[b][i]), list(legal[b][i])) for i in range(n)]
        if add_noise:
            eps = cfg.dirichlet_fraction
            for i in range(n):
                z = [x if ok else 0.0 for x, ok in zip(noise[b][i], legal[b][i])]
                s = sum(z)
                p[i] = [(1.0 - eps) * x + eps * (y / s) for x, y in zip(p[i], z)]
        root = Node(0.0, float(root_value[b]), None)
        sample_children(root, p, sampling_policy(p, cfg.tau), u_root[b], K)
        roots.append(root)
    for sim in range(cfg.num_simulations):
        u = rng.random((K, B, n)).transpose(1, 0, 2).tolist()
        for b in range(B):
            leaf, logits = simulate(roots[b], sim, models[b], u[b], cfg)
            p = [inner_policy(row, cfg.tau) for row in logits]
            sample_children(leaf, p, sampling_policy(p, cfg.tau), u[b], K)
    return roots
