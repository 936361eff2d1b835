# MAZero (ICLR 2024), Sec. 2 and 4.2: batched sampled MCTS with OS(lambda); README section "ctree_numpy.py".
"""Batched Sampled MCTS over joint actions with Optimistic Search Lambda, in NumPy.

One `search` call runs N simulations on B independent roots at once. As in mctx, the trees are a handful of
preallocated arrays shaped [B, nodes], [B, nodes, K] and [B, nodes, K, n]; every step is a NumPy expression over the
batch (no Python loop over roots) and the model is called once per simulation for all B roots. The root is node 0 and
simulation s creates node s + 1, so the caller can keep its latent states in a [B, N + 1, ...] table.

Paper equations (MAZero, arXiv 2405.11778 / ICLR 2024)
  expansion   Sampled MuZero (Sec. 2): at every expanded node K joint actions are drawn with replacement, each agent
              independently from beta_i = pi_i^(1/tau); duplicates are merged (K' <= K children). The prior of a child
              is P(s, a) = beta_hat(a) / beta(a) * pi(a), with pi(a) = prod_i p_i(a_i), beta(a) = prod_i beta_i(a_i) and
              beta_hat = count / K (Eq. 3). At the root, p = (1 - eps) p + eps Dirichlet(alpha) noise when asked.
  selection   pUCT, Eq. 9: argmax_a  A(s, a) + P(s, a) sqrt(sum_b N(s, b)) / (1 + N(s, a)) c(s),
              c(s) = c_init + log((sum_b N(s, b) + c_base + 1) / c_base).
  value       OS(lambda), Eq. 5-8: U_d(s) = {sum_{k<d} gamma^k r_k + gamma^d v(s') : s' expanded at depth dep(s) + d
              below s}; keep its top ceil((1 - rho) |U_d|) values (at least one); V(s) = sum_d lam^d sum_top x /
              sum_d lam^d |top|; A(s, a) = r(s, a) + gamma V(child) - v(s) replaces Q in pUCT.
  os_lambda=False gives the plain mean value of MuZero (the mean of all backed-up n-step returns). That mean is exactly
              OS(lambda) with rho = 0 and lam = 1 (every expanded node of the subtree contributes its one return), and
              this module computes it that way; everything else (advantage baseline, min-max) is unchanged, so the
              ablation isolates OS(lambda).

rho convention: "top (1 - rho)" is kept, as in the paper. The paper's Table 1 uses rho = 0.75 (keep the top 25%),
which is our default and also the authors' config default; the authors' launch script train_smac.sh passes 0.25 (keep
the top 75%). k = max(1, ceil((1 - rho) |U_d| - 1e-9)); the 1e-9 keeps 0.35 * 20 = 7.000000000000001 at 7.

How the tree computes OS(lambda) without per-node multisets. With P(s) the discounted reward sum from the root to s and
W(x) = P(x) + gamma^dep(x) v(x), the return from s to a descendant x is (W(x) - P(s)) / gamma^dep(s), so inside U_d(s)
returns rank like W. Each root keeps its nodes sorted by (depth, -W). When a simulation adds x at depth D, each
ancestor s (depth e) gains x in U_{D-e}(s), whose members are the level-D nodes with ancestor s at depth e; the
change of its top-k sum involves only x and the one member of rank k (if k grew) or k + 1 (if x pushes it out).
So one backup is a few vectorised scans of the ranked level for all (root, ancestor) pairs at once, and
V(s) = num(s) / den(s) is updated incrementally (`_Tree.backup`). Values agree with a direct recursive computation to
~1e-12 relative, not bitwise.

Differences from the authors' C++ tree (liuqh16/MAZero, core/mcts/ctree; see the notes)
  * Legal masks are applied at the root only, as in the authors' code: the model gives no legality inside the tree.
    We mask the root softmax (illegal logits -> -inf) and the Dirichlet noise, but add no 1e-4 floor to legal actions.
  * Children are kept in the order in which the K draws first produce them (the authors' std::map orders them by an
    integer key); slots of duplicate draws are invalid instead of compacted. Dedup keys are exact (no overflow).
  * Ties in pUCT go to the first maximum (deterministic; the authors break ties within 1e-6 at random).
  * Unvisited children have value term normalise(0), i.e. their advantage counts as 0, as the authors do; the min-max
    statistics are tree-wide per root over the advantages of all expanded non-root nodes, range floored at 0.01.
  * At the root every sampled child is visited once, in slot order, before pUCT takes over (as the authors do).
  * Inner-node policies are exponentiated in float32, the network's precision (NumPy vectorises float32 exp but not
    float64 exp on AVX2), then accumulated in float64; the root's policy is float64 throughout.
  * Randomness comes from the numpy Generator passed in, in this order: (1) if add_noise,
    rng.dirichlet([alpha] * A, size=(B, n)); (2) rng.random((K, B, n)), the uniforms for the root's K draws; (3) for
    each simulation, rng.random((K, B, n)) for the new node's draws (u[k, b, i]: draw k, root b, agent i). A draw u
    picks action #{j < A-1 : cdf_j <= u * cdf_{A-1}} (inverse CDF of beta), so zero-probability actions are never
    drawn.
"""

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class SearchConfig:
    num_simulations: int = 100
    """N, simulations per search (paper Table 1: 100)"""
    num_sampled: int = 10
    """K, joint actions sampled at each expanded node (paper Table 1: 10)"""
    gamma: float = 0.99
    """discount (paper Table 1: 0.99)"""
    rho: float = 0.75
    """OS(lambda) quantile: the top (1 - rho) of each U_d is kept (paper Table 1: 0.75; train_smac.sh: 0.25)"""
    lam: float = 0.8
    """OS(lambda) depth decay lambda (paper Table 1: 0.8)"""
    os_lambda: bool = True
    """use V^rho_lambda (Eq. 7); False: the mean of backed-up returns (MuZero), for the ablation"""
    c_init: float = 1.25
    """pUCT c_init (MuZero: 1.25)"""
    c_base: float = 19652.0
    """pUCT c_base (MuZero: 19652)"""
    value_delta_min: float = 0.01
    """floor on the min-max range of the normalised advantage (authors: 0.01)"""
    dirichlet_alpha: float = 0.3
    """root Dirichlet noise alpha (authors: 0.3)"""
    dirichlet_fraction: float = 0.25
    """root noise fraction eps: p' = (1 - eps) p + eps noise (authors: 0.25)"""
    tau: float = 1.0
    """sampling temperature: beta = pi^(1/tau) (authors: 1.0)"""

    def __post_init__(self):
        validate(self)


def validate(config: SearchConfig) -> None:
    """Raise ValueError with a one-line message if a SearchConfig field is out of range."""
    c = config

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    checks = [
        ("num_simulations", c.num_simulations, is_int(c.num_simulations) and c.num_simulations >= 1, "an integer >= 1"),
        ("num_sampled", c.num_sampled, is_int(c.num_sampled) and c.num_sampled >= 1, "an integer >= 1"),
        ("gamma", c.gamma, 0.0 < c.gamma <= 1.0, "in (0, 1]"),
        ("rho", c.rho, 0.0 <= c.rho <= 1.0, "in [0, 1]"),
        ("lam", c.lam, 0.0 <= c.lam <= 1.0, "in [0, 1]"),
        ("c_init", c.c_init, c.c_init >= 0.0, ">= 0"),
        ("c_base", c.c_base, c.c_base > 0.0, "> 0"),
        ("value_delta_min", c.value_delta_min, c.value_delta_min > 0.0, "> 0"),
        ("dirichlet_alpha", c.dirichlet_alpha, c.dirichlet_alpha > 0.0, "> 0"),
        ("dirichlet_fraction", c.dirichlet_fraction, 0.0 <= c.dirichlet_fraction <= 1.0, "in [0, 1]"),
        ("tau", c.tau, c.tau > 0.0, "> 0"),
    ]
    for name, value, ok, want in checks:
        if not ok:  # NaN fails every comparison, so it is caught here too
            raise ValueError(f"SearchConfig.{name} must be {want}, got {value!r}")


@dataclass
class SearchOutput:
    """Root statistics over the K sampled slots; invalid slots (duplicate draws) hold zeros."""
    actions: np.ndarray       # [B, K, n] int64 sampled joint actions at the root, 0 where invalid
    valid: np.ndarray         # [B, K] bool, first occurrence of each distinct joint action
    visit_counts: np.ndarray  # [B, K] int64, sums to N over k
    policy: np.ndarray        # [B, K] visit_counts / N, the search policy omega
    child_reward: np.ndarray  # [B, K] r(s, a), 0 if unvisited
    child_value: np.ndarray   # [B, K] V^rho_lambda(child) (mean value if os_lambda is off), 0 if unvisited
    child_q: np.ndarray       # [B, K] r + gamma * child_value
    advantage: np.ndarray     # [B, K] child_q - v(root) (Eq. 8, for AWPO), 0 where invalid
    root_value: np.ndarray    # [B] V^rho_lambda(root) (mean value if os_lambda is off)
    prior: np.ndarray         # [B, K] beta_hat / beta * pi (Eq. 3)
    beta_hat: np.ndarray      # [B, K] count / K


def _softmax(logits, mask=None):
    """[A, B, n] logits -> probabilities over axis 0; masked entries get exactly 0."""
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    e = np.exp(logits - logits.max(0))
    return e / e.sum(0)


def _sampling_policy(p, tau):
    """[A, B, n] beta = p^(1/tau), renormalised; for tau = 1 it is p itself, so pi(a) / beta(a) is exactly 1."""
    if tau == 1.0:
        return p
    b = (p / p.max(0)) ** (1.0 / tau)  # scaled by the max first, so a small tau cannot underflow every entry
    return b / b.sum(0)


def _cumsum0(x):
    """float64 cumulative sum over axis 0 of [A, ...], the additions of np.cumsum in the same order. NumPy accumulates
    along axis 0 column by column, which for B * n columns costs ~40 ns each; for wide arrays a loop over the A rows
    is many times faster (B = 1536: 1.7 ms -> 0.04 ms per expansion)."""
    c = x.astype(np.float64)
    if c[0].size > 16 * len(c):
        for j in range(1, len(c)):
            c[j] += c[j - 1]
    else:
        np.add.accumulate(c, 0, out=c)
    return c


_INVALID = -1e300
"""prior of invalid (duplicate) slots. Times c(s) sqrt(sum_b N(s, b)) it loses to every valid slot once s has been
visited; before that the exploration term of every slot is 0, all scores tie and the first maximum, slot 0, is always
valid (the first draw is always a first occurrence)."""


class _Tree:
    """B search trees of M = N + 1 nodes as arrays: nodes [B, M], edges [B, M, K]. Most work goes through flat views
    (self.flat[name]) indexed by the flat node index f = b * M + node, or f * K + slot for edges.

    Why the code looks the way it does: for a small batch every NumPy call costs about a microsecond whatever it
    computes, so the per-simulation work is written with few calls. 1-D gathers and scatters are the cheapest calls;
    broadcasting, reductions and np.where cost several times more. So pUCT (Eq. 9) is split into a value term per node
    (refreshed once per simulation, `norm`) and an exploration term per edge (refreshed on the path in `backup`), and a
    descent step is three gathers, an add and an argmax per level."""

    def __init__(self, B, N, K, n, A, config):
        M, cfg = N + 1, config
        self.B, self.M, self.K, self.cfg = B, M, K, cfg
        rho, lam = (cfg.rho, cfg.lam) if cfg.os_lambda else (0.0, 1.0)  # the mean is OS(lambda) with rho=0, lam=1
        counts = np.arange(M + 1)
        self.k_top = np.maximum(1, np.ceil((1.0 - rho) * counts - 1e-9)).astype(np.int64)  # Eq. 6: |top| of |U_d|
        self.k_top[0] = 0
        self.k_next = np.concatenate([[1], self.k_top[:-1] + 1])  # k_next[c] = k_top[c - 1] + 1
        self.gpow = cfg.gamma ** np.arange(M + 1.0)            # gamma^d
        self.gpow_prev = cfg.gamma ** np.arange(-1.0, M)       # gamma^(d - 1)
        self.lpow = lam ** np.arange(M + 1.0)
        # c(s) * sqrt(sum_b N(s, b)) of Eq. 9, by sum_b N(s, b)
        self.explore_tab = (cfg.c_init + np.log((counts + cfg.c_base + 1.0) / cfg.c_base)) * np.sqrt(counts)
        # exact dedup keys: mixed radix A over groups of agents that fit in 52 bits, so that keys = a @ radix is an
        # exact float64 matrix product (BLAS; NumPy's integer matmul is a slow loop)
        per_key = n if A < 2 else max(1, int(52 // math.log2(A)))
        i = np.arange(n)
        self.radix = np.zeros((n, (n - 1) // per_key + 1))
        self.radix[i, i // per_key] = A ** (i % per_key)
        self.draw_ids = np.arange(K)[:, None]
        self.roots = np.arange(B)
        self.boff = self.roots * M       # flat index of each root's node 0
        self.ids = self.boff[:, None] + np.arange(M)  # [B, M] flat index of each node
        self.edge0 = np.arange(B * M) * K  # flat index of each node's slot 0
        self.root_of = np.arange(B * M) // M  # root of each flat node index
        self.positions = np.arange(M)    # positions in a root's ranked order

        self.depth = np.zeros((B, M), np.int64)
        self.n_sum = np.zeros((B, M), np.int64)  # sum_b N(s, b) = N(s) - 1; N(s, a) = N(child)
        self.reward = np.zeros((B, M))
        self.value = np.zeros((B, M))    # v(s), model prediction
        self.prefix = np.zeros((B, M))   # P(s) = sum of gamma^k r_k from the root to s
        self.w = np.zeros((B, M))        # W(s) = P(s) + gamma^dep(s) v(s)
        self.num = np.zeros((B, M))      # V(s) = num / den, Eq. 7
        self.den = np.ones((B, M))       # a new node has U_0 = {v}: num = v, den = 1
        self.v_os = np.zeros((B, M))     # V^rho_lambda(s)
        self.adv = np.zeros((B, M))      # A(parent(s), a) of Eq. 8; the root's stays 0 (see children)
        self.norm = np.zeros((B, M))     # value term of Eq. 9 of each node as a child, this simulation
        self.order = np.zeros((B, M), np.int64)  # flat node indices sorted by (depth, -W): the levels, ranked
        self.order[:, 0] = self.boff
        # anc[e, f] = flat index of the ancestor at depth e < dep(f) <= N of node f. Allocated whole, never grown: a big
        # np.zeros is mapped lazily, so only the rows of depths the trees reach cost memory (growing it by copies cost
        # ~10% of a B = 1536 search)
        self.anc = np.zeros((N, B * M), np.min_scalar_type(B * M))
        self.anc_row = np.arange(N) * (B * M)
        # flat node index of the child; while unexpanded, the root's own index: a child always has a larger index than
        # its parent (so `child > parent` tells expanded edges), and the root's entry of `norm`, computed from A = 0,
        # is then the value term of the unvisited child, as in the authors' code
        self.children = np.repeat(self.boff, M * K).reshape(B, M, K)
        self.prior = np.zeros((B, M, K))
        self.actions = np.zeros((B, M, K, n), np.min_scalar_type(max(A - 1, 0)))
        self.edge_prior = np.zeros((B, M, K))    # P(s, a) / (1 + N(s, a)) (_INVALID for invalid slots)
        self.edge_explore = np.zeros((B, M, K))  # edge_prior * c(s) sqrt(sum_b N(s, b)), the exploration term of
        # Eq. 9; 0 until s is first passed through (sum_b N(s, b) = 0), exactly what the product gives then
        names = ["depth", "n_sum", "reward", "value", "prefix", "w", "num", "den", "v_os", "adv", "norm", "order",
                 "children", "prior", "edge_prior"]
        self.flat = {name: getattr(self, name).reshape(-1) for name in names}
        self.rows = {name: getattr(self, name).reshape(B * M, K) for name in ["children", "edge_prior", "edge_explore"]}
        self.agent_ids = np.arange(n)

    def expand(self, x, p, beta, u):
        """Sample the children of node x in every root (paper Sec. 2, Eq. 3).

        p: [A, B, n] policy pi; beta: [A, B, n] sampling weights (need not sum to one; `beta is p` means tau = 1,
        then the prior is beta_hat exactly and p is not read); u: [K, B, n] uniforms. Actions first and draws first:
        then every comparison below runs along contiguous [B * n] or [B] rows, which is what makes large B cheap.
        Returns valid [B, K] (first occurrence of each joint action) and beta_hat [B, K] = count / K.
        """
        cdf = _cumsum0(beta)                                                    # [A, B, n]
        a = (cdf[:-1, None] <= u * cdf[-1]).view(np.uint8).sum(0, dtype=self.actions.dtype)  # [K, B, n] inverse CDF
        keys = a @ self.radix                                                   # [K, B, C]
        same = keys[:, None, :, 0] == keys[None, :, :, 0]                       # [K, K, B] draw j == draw k
        for c in range(1, keys.shape[2]):
            same &= keys[:, None, :, c] == keys[None, :, :, c]
        # `same` is symmetric; reducing over its leading axis is the fast direction for NumPy
        valid = same.argmax(0) == self.draw_ids                                 # [K, B] first equal draw is k
        beta_hat = valid * same.sum(0) / self.K
        if beta is p:
            prior = beta_hat  # pi(a) / beta(a) == 1 exactly
        else:
            idx = (a, self.roots[:, None], self.agent_ids)                      # p[a_i, b, i], [K, B, n]
            prior = beta_hat * (p[idx].prod(2) / beta[idx].prod(2))
        valid, beta_hat, prior, a = valid.T, beta_hat.T, prior.T, a.transpose(1, 0, 2)  # [B, K], [B, K, n]
        self.actions[:, x] = a
        self.prior[:, x] = prior
        self.edge_prior[:, x] = np.where(valid, prior, _INVALID)
        return valid, beta_hat

    def select(self, sim, root_slots, root_k):
        """Descend every root by pUCT (Eq. 9) to an edge whose child is not expanded yet.

        Returns the edges of all paths as flat arrays over (root b, depth e), ordered by depth: (b, flat index of the
        node at depth e, flat edge index taken there, flat index of the node below, e), where the node below the last
        edge is the new node sim + 1; and leaf [B], the position of each root's last edge in these arrays.
        """
        if sim:  # the value term clip((A - lo) / delta, 0, 1) of every node, tree-wide min-max over expanded non-roots
            adv = self.adv[:, :sim + 1]
            lo = np.minimum.reduce(adv[:, 1:], 1)
            delta = np.maximum(np.maximum.reduce(adv[:, 1:], 1) - lo, self.cfg.value_delta_min)
            norm = self.norm[:, :sim + 1]
            np.subtract(adv, lo[:, None], out=norm)
            np.divide(norm, delta[:, None], out=norm)
            # only node 0 (A = 0, unvisited children) can fall outside [0, 1]: lo <= A <= hi for the others
            unvisited = norm[:, 0]
            np.maximum(unvisited, 0.0, out=unvisited)
            np.minimum(unvisited, 1.0, out=unvisited)
        # (at sim 0 only the roots exist, all in their visit-each-child-once phase: the scores are not used)
        children, explore, norm = self.rows["children"], self.rows["edge_explore"], self.flat["norm"]
        nf = self.boff  # flat index of the current node of every root still descending
        steps = []
        while True:
            slots = children.take(nf, 0)                                                   # [b, K] child nodes
            score = norm.take(slots)                                                       # Eq. 9: value term
            score += explore.take(nf, 0)                                                   # + exploration term
            k = score.argmax(1)                                                            # ties: first maximum
            if not steps and sim < self.K:  # root: each sampled child once, in slot order, before pUCT
                k = np.where(sim < root_k, root_slots[:, sim], k)
            ef = self.edge0[nf] + k                                                        # flat edge index
            child = self.flat["children"][ef]
            steps.append((nf, ef, child))
            down = (child > nf).nonzero()[0]
            if not len(down):
                break
            nf = child[down]
        nf, ef, below = (np.concatenate(z) for z in zip(*steps))
        b, e = self.root_of[nf], self.flat["depth"][nf]
        last = (below <= nf).nonzero()[0]  # one edge per root: the one to the new node
        leaf = np.empty(self.B, np.int64)
        leaf[b[last]] = last
        below[leaf] = self.ids[:, sim + 1]
        return (b, nf, ef, below, e), leaf

    def backup(self, x, path, leaf, r, v):
        """Add node x (reward r [B], value v [B]) at the end of every root's path (both from `select`), then update
        the visit counts and OS(lambda) values (Eq. 5-7) of all its ancestors and the advantages (Eq. 8) on the path."""
        flat = self.flat
        b, nf, ef, below, e = path
        parent, xf, D = nf[leaf], below[leaf], e[leaf] + 1                      # [B]: x's parent, x, x's depth
        flat["children"][ef[leaf]] = xf
        prefix = flat["prefix"][parent] + self.gpow_prev[D] * r  # P(x)
        w = prefix + self.gpow[D] * v                           # W(x)
        self.depth[:, x], self.reward[:, x], self.value[:, x], self.prefix[:, x], self.w[:, x] = D, r, v, prefix, w
        self.num[:, x] = self.v_os[:, x] = v                    # U_0(x) = {v(x)}
        anc, anc_row = self.anc.reshape(-1), self.anc_row[e]   # anc[e, f] is at anc_row + f
        anc[anc_row + xf[b]] = nf

        # visit counts, and the exploration term of every edge out of a node on the path (its c(s) sqrt(sum_b N) moved)
        n_sum = flat["n_sum"]
        n_s = n_sum[nf] + 1
        n_sum[nf] = n_s
        flat["edge_prior"][ef] = flat["prior"][ef] / (2 + n_sum[below])  # 1 + N(s, a), N(s, a) = 1 + n_sum(child)
        self.rows["edge_explore"][nf] = self.rows["edge_prior"].take(nf, 0) * self.explore_tab[n_s][:, None]

        # insert x into its level, kept sorted by W descending (ties: x after the older nodes)
        level = self.depth[:, :x] - D[:, None]                  # [B, x] < 0 above x's level, 0 in it
        above = (level < 0).sum(1)
        in_level = level == 0
        pos = (in_level & (self.w[:, :x] >= w[:, None])).sum(1)  # x's rank in its level
        size = in_level.sum(1) + 1
        ins = above + pos
        row = self.order[:, :x + 1]
        row[:, 1:] = np.where(self.positions[1:x + 1] > ins[:, None], row[:, :-1], row[:, 1:])
        flat["order"][self.boff + ins] = xf

        # Eq. 5-6 for all pairs at once, ragged: pair p = (b, e) scans the level of its root in W order; a level node y
        # is in U_{D-e}(s) iff its ancestor at depth e is s. cum[j] counts the members before scan position j.
        n_p = size[b]
        end = n_p.cumsum()
        first = end - n_p                                                                  # [P] block offsets
        yf = flat["order"][np.arange(end[-1]) + (self.boff[b] + above[b] - first).repeat(n_p)]  # [S] level, ranked
        member = anc[yf + anc_row.repeat(n_p)] == nf.astype(anc.dtype).repeat(n_p)
        cum = np.zeros(end[-1] + 1, np.int64)
        member.cumsum(out=cum[1:])
        base = cum[first]
        count = cum[end] - base                                                            # |U_{D-e}(s)|
        k_new, t = self.k_top[count], self.k_next[count]                                 # k(|U|), k(|U| - 1) + 1
        grew = k_new == t
        in_top = cum[first + pos[b]] - base < k_new                                        # rank of x <= k
        # w_t = W of the member of rank t: the one that enters the top (if k grew) or leaves it (if x enters and k did
        # not grow); the t-th member is where cum[1:] first reaches base + t
        w_t = flat["w"][yf[cum[1:].searchsorted(base + t)]]
        # change of the top-k sum of returns (W - P(s)) / gamma^e: x enters (replacing w_t) and/or k grows by w_t
        d_top = in_top * (w[b] - w_t) + grew * (w_t - flat["prefix"][nf])
        lam_d = self.lpow[D[b] - e]
        num = flat["num"][nf] + lam_d * d_top / self.gpow[e]
        den = flat["den"][nf] + lam_d * grew
        flat["num"][nf], flat["den"][nf], flat["v_os"][nf] = num, den, num / den

        # Eq. 8 for every node below an ancestor (x included): A = r + gamma V(node) - v(ancestor)
        flat["adv"][below] = flat["reward"][below] + self.cfg.gamma * flat["v_os"][below] - flat["value"][nf]


def search(recurrent_fn, root_value, root_logits, legal, rng, config, add_noise=True) -> SearchOutput:
    """Run config.num_simulations simulations of sampled MCTS with OS(lambda) on B roots.

    recurrent_fn(parent, action, node) -> (reward [B], value [B], logits [B, n, A]): parent int64 [B] is the tree index
      of the node being expanded from, action int64 [B, n] the joint action, node the index the new node gets.
    root_value [B], root_logits [B, n, A] (unnormalised), legal [B, n, A] bool (root only), rng a numpy Generator.
    """
    validate(config)
    root_value = np.asarray(root_value, np.float64)
    root_logits = np.asarray(root_logits, np.float64)
    legal = np.asarray(legal, bool)
    if root_logits.ndim != 3 or legal.shape != root_logits.shape or root_value.shape != root_logits.shape[:1]:
        raise ValueError(f"shapes: root_value {root_value.shape}, root_logits {root_logits.shape}, "
                         f"legal {legal.shape}; want [B], [B, n, A], [B, n, A]")
    if not legal.any(-1).all():
        raise ValueError("every agent needs at least one legal action at every root")
    B, n, A = root_logits.shape
    N, K, cfg = config.num_simulations, config.num_sampled, config
    tree = _Tree(B, N, K, n, A, cfg)

    legal = np.ascontiguousarray(legal.transpose(2, 0, 1))
    p = _softmax(np.ascontiguousarray(root_logits.transpose(2, 0, 1)), legal)    # [A, B, n]
    if add_noise:
        noise = rng.dirichlet(np.full(A, cfg.dirichlet_alpha), size=(B, n)).transpose(2, 0, 1) * legal
        noise /= noise.sum(0)
        p = (1.0 - cfg.dirichlet_fraction) * p + cfg.dirichlet_fraction * noise
    tree.value[:, 0] = tree.num[:, 0] = tree.v_os[:, 0] = tree.w[:, 0] = root_value
    valid, beta_hat = tree.expand(0, p, _sampling_policy(p, cfg.tau), rng.random((K, B, n)))
    root_slots = np.argsort(~valid, axis=1, kind="stable")                        # valid root slots first, in order
    root_k = valid.sum(1)

    actions = tree.actions.reshape(-1, n)
    for sim in range(N):
        path, leaf = tree.select(sim, root_slots, root_k)
        parent, edge = path[1][leaf], path[2][leaf]                               # [B] where the new node hangs
        r, v, logits = recurrent_fn(parent - tree.boff, actions.take(edge, 0).astype(np.int64), sim + 1)
        tree.backup(sim + 1, path, leaf, np.asarray(r, np.float64), np.asarray(v, np.float64))
        # pi up to normalisation, [A, B, n]; float32 like the network's logits (NumPy's float32 exp is vectorised)
        logits = np.ascontiguousarray(np.asarray(logits).transpose(2, 0, 1), np.float32)
        z = np.exp(logits - np.maximum.reduce(logits, 0))
        if cfg.tau == 1.0:  # beta = pi: the inverse CDF needs no normalisation and the prior is beta_hat
            tree.expand(sim + 1, z, z, rng.random((K, B, n)))
        else:
            z = z.astype(np.float64)
            p = z / z.sum(0)
            tree.expand(sim + 1, p, _sampling_policy(p, cfg.tau), rng.random((K, B, n)))

    child = tree.children[:, 0]                                                   # [B, K] flat node index
    seen = child > tree.boff[:, None]
    child_reward = np.where(seen, tree.flat["reward"][child], 0.0)
    child_value = np.where(seen, tree.flat["v_os"][child], 0.0)
    child_q = child_reward + cfg.gamma * child_value
    visits = np.where(seen, tree.flat["n_sum"][child] + 1, 0)                   # N(s, a) = N(child)
    return SearchOutput(
        actions=np.where(valid[..., None], tree.actions[:, 0], 0).astype(np.int64),
        valid=np.ascontiguousarray(valid),
        visit_counts=visits,
        policy=visits / N,
        child_reward=child_reward,
        child_value=child_value,
        child_q=child_q,
        advantage=np.where(valid, child_q - root_value[:, None], 0.0),
        root_value=tree.v_os[:, 0].copy(),
        prior=tree.prior[:, 0].copy(),
        beta_hat=np.ascontiguousarray(beta_hat),
    )
