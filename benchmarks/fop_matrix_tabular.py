"""Why FOP's matrix game depends on the weight network: FOP's critic loss in tabular form.

One state, so Q_i are 3-entry tables and the mixer sees only the joint action. Full-batch regression of
Q_jt(u) = sum_i lambda_i(u) [Q_i(u_i) - V_i] + sum_i V_i + V_phi onto the payoff, every cell weighted equally (uniform
data), V_i = alpha logsumexp(Q_i / alpha) detached, alpha annealed 1 -> 0.01, gradients as the authors' code
(dQ_jt/dQ_i = 1; --grad paper: lambda_i). Two weight networks:
  c:         lambda_i(u) = sum_k |key_k| sigmoid(agent_k)_i sigmoid(w_k,i . [onehot(u_1), onehot(u_2)] + b_k,i)
             (the authors' QPLEX-style weights, fop.py's default on SMAC maps, with a constant state)
  attention: lambda_i(u) = sum_k exp(c tanh(theta_{u,i,k} / c)), one free logit per joint action, agent and head
             (the tabular limit of fop.py's --lambda-attention-bound c)
Success = greedy joint action (A, A) and Q_jt(A, A) within 1 of 8.

    python benchmarks/fop_matrix_tabular.py --weights c --lr 1e-2
    python benchmarks/fop_matrix_tabular.py --weights attention --lr 1e-2
"""
import argparse
import itertools

import torch
import torch.nn.functional as F

PAYOFF = torch.tensor([[8.0, -12, -12], [-12, 0, 0], [-12, 0, 0]])


def run(seed, weights, grad, lr, steps, heads=4, bound=1.0, alpha_end=0.01):
    g = torch.Generator().manual_seed(seed)
    uniform = lambda *shape, scale: ((torch.rand(*shape, generator=g) * 2 - 1) * scale).requires_grad_()
    q = (torch.randn(2, 3, generator=g) * 0.1).requires_grad_()
    key, agent = uniform(heads, scale=0.7), uniform(heads, 2, scale=0.7)
    w, b = uniform(heads, 2, 6, scale=0.4), uniform(heads, 2, scale=0.4)
    theta = (torch.randn(9, 2, heads, generator=g) * 0.3).requires_grad_()
    v_phi = torch.zeros(1, requires_grad=True)
    opt = torch.optim.RMSprop([q, key, agent, w, b, theta, v_phi], lr=lr, alpha=0.99, eps=1e-5)
    u = torch.tensor(list(itertools.product(range(3), range(3))))                        # the 9 joint actions
    onehot = torch.cat([F.one_hot(u[:, 0], 3), F.one_hot(u[:, 1], 3)], 1).float()       # [9, 6]
    for t in range(steps):
        alpha = max(alpha_end, 1 - (1 - alpha_end) * t / steps)
        v = (alpha * torch.logsumexp(q / alpha, 1)).detach()                             # V_i, [2]
        if weights == "c":
            act = torch.sigmoid(torch.einsum("kiu,cu->kci", w, onehot) + b[:, None, :])  # [K, 9, 2]
            lam = ((key.abs() + 1e-10)[:, None, None] * torch.sigmoid(agent)[:, None, :] * act).sum(0)
        else:
            lam = (bound * torch.tanh(theta / bound)).exp().sum(-1)                      # [9, 2]
        q_taken = torch.stack([q[0, u[:, 0]], q[1, u[:, 1]]], 1)                         # [9, 2]
        if grad == "authors":
            q_jt = ((lam - 1) * (q_taken - v).detach() + q_taken).sum(1) + v_phi
        else:
            q_jt = (lam * (q_taken - v) + v).sum(1) + v_phi
        loss = ((q_jt - PAYOFF.flatten()) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    greedy = (q[0].argmax().item(), q[1].argmax().item())
    return greedy, q_jt.detach().view(3, 3), loss.item()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", choices=["c", "attention"], default="c")
    p.add_argument("--grad", choices=["authors", "paper"], default="authors")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--seeds", type=int, default=10)
    a = p.parse_args()
    wins = 0
    for seed in range(1, a.seeds + 1):
        greedy, q_jt, loss = run(seed, a.weights, a.grad, a.lr, a.steps)
        ok = greedy == (0, 0) and abs(q_jt[0, 0].item() - 8) < 1
        wins += ok
        print(f"seed {seed}: greedy {'ABC'[greedy[0]]}{'ABC'[greedy[1]]}, Q_jt(A, A) {q_jt[0, 0].item():6.2f}, "
              f"final loss {loss:7.3f}, success {int(ok)}")
    print(f"weights {a.weights}, gradient {a.grad}, lr {a.lr}, {a.steps} steps: {wins}/{a.seeds} reach the optimum")
