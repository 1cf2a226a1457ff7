"""The closed-form update on its own: Woodbury, constraints, AlphaEdit, per-fact splitting."""

import torch

from agentmem import memit
from agentmem.editor import _split
from agentmem.store import Edit

torch.manual_seed(0)
D, DFF = 12, 40


def _cov(n=400):
    X = torch.randn(n, DFF, dtype=torch.float64) * torch.linspace(0.2, 2, DFF, dtype=torch.float64)
    return X.T @ X / n


def test_woodbury_equals_direct_solve():
    C = _cov()
    lam = 3.0
    K = torch.randn(DFF, 5, dtype=torch.float64)
    R = torch.randn(D, 5, dtype=torch.float64)
    chol = torch.linalg.cholesky(lam * C)
    B, A = memit.woodbury_update(chol, K, R, 5)
    direct = torch.linalg.solve((lam * C + K @ K.T).T, (R @ K.T).T).T
    assert torch.allclose(B @ A, direct, atol=1e-10)


def test_zero_residual_rows_keep_old_outputs():
    C = _cov()
    chol = torch.linalg.cholesky(1.0 * C)
    K_old = torch.randn(DFF, 6, dtype=torch.float64)
    K_new = torch.randn(DFF, 3, dtype=torch.float64)
    R = torch.randn(D, 3, dtype=torch.float64)
    B, A = memit.woodbury_update(chol, torch.cat([K_new, K_old], 1), R, 3)
    Bn, An = memit.woodbury_update(chol, K_new, R, 3)
    dW, dW_free = B @ A, Bn @ An
    # constrained: old keys move much less than without constraints
    assert (dW @ K_old).norm() < 0.2 * (dW_free @ K_old).norm()
    # and the low-rank factors have rank <= the number of new keys
    assert B.shape == (D, 3) and A.shape == (3, DFF)


def test_alphaedit_matches_formula_and_respects_null_space():
    C = _cov()
    P = memit.null_space_projector(C, 0.5)
    K1 = torch.randn(DFF, 4, dtype=torch.float64)
    Kp = torch.randn(DFF, 3, dtype=torch.float64)
    R = torch.randn(D, 4, dtype=torch.float64)
    B, A = memit.alphaedit_update(P, K1, Kp, R)
    M = Kp @ Kp.T @ P + K1 @ K1.T @ P + torch.eye(DFF, dtype=torch.float64)
    expected = R @ K1.T @ P @ torch.linalg.inv(M)
    assert torch.allclose(B @ A, expected, atol=1e-8)
    # the update only reads key directions in P's range: ordinary-text directions are untouched
    _, evecs = torch.linalg.eigh(C)
    top = evecs[:, DFF // 2 :]
    assert (B @ A @ top).abs().max() < 1e-8


def test_split_parts_sum_to_batch_update():
    factors = {3: (torch.randn(D, 5, dtype=torch.float64), torch.randn(5, DFF, dtype=torch.float64))}
    keys = {3: torch.randn(DFF, 5)}
    reqs = [memit.Request("a", "a x", " y", ["q1?"], "a x y."), memit.Request("b", "b x", " z", ["q2?", "q3?"], "b x z.")]
    parts = _split(memit.EditResult(factors, keys), reqs)
    assert [p.factors[3][0].shape[1] for p in parts] == [2, 3]
    total = sum(p.factors[3][0] @ p.factors[3][1] for p in parts)
    assert torch.allclose(total, factors[3][0] @ factors[3][1], atol=1e-10)
    assert isinstance(parts[0], Edit)
