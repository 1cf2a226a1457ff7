"""The closed-form update and its inputs on synthetic tensors: Woodbury, constraints, AlphaEdit, per-fact
splitting, shrinkage, subject slots, the offsets' optimiser. No model: milliseconds each."""

import pytest
import torch

from agentmem.edit.compute_z import _NormalizedDescent
from agentmem.edit.memit import Edit, EditResult, batch_rounds, merged_stats, owners, split
from agentmem.edit.requests import Request, raw_context, subject_slots
from agentmem.edit.sites import subject_ends, subject_last_token
from agentmem.edit.solve import FixedRows, alphaedit_update, null_space_projector, shrink, woodbury_update

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
    B, A = woodbury_update(chol, K, R, 5)
    direct = torch.linalg.solve((lam * C + K @ K.T).T, (R @ K.T).T).T
    assert torch.allclose(B @ A, direct, atol=1e-10)


def test_zero_residual_rows_keep_old_outputs():
    C = _cov()
    chol = torch.linalg.cholesky(1.0 * C)
    K_old = torch.randn(DFF, 6, dtype=torch.float64)
    K_new = torch.randn(DFF, 3, dtype=torch.float64)
    R = torch.randn(D, 3, dtype=torch.float64)
    B, A = woodbury_update(chol, torch.cat([K_new, K_old], 1), R, 3)
    Bn, An = woodbury_update(chol, K_new, R, 3)
    dW, dW_free = B @ A, Bn @ An
    # constrained: old keys move much less than without constraints
    assert (dW @ K_old).norm() < 0.2 * (dW_free @ K_old).norm()
    # and the low-rank factors have rank <= the number of new keys
    assert B.shape == (D, 3) and A.shape == (3, DFF)


def test_fixed_rows_solved_once_give_the_same_update_as_concatenated_keys():
    C = _cov()
    chol = torch.linalg.cholesky(2.0 * C)
    K_new, K_old, K_fixed = (torch.randn(DFF, n, dtype=torch.float64) for n in (3, 4, 7))
    R = torch.randn(D, 3, dtype=torch.float64)
    B, A = woodbury_update(chol, torch.cat([K_new, K_old, K_fixed], 1), R, 3)
    Bf, Af = woodbury_update(chol, torch.cat([K_new, K_old], 1), R, 3, FixedRows.solve(chol, K_fixed))
    assert torch.allclose(B @ A, Bf @ Af, atol=1e-10)
    Bo, Ao = woodbury_update(chol, K_new, R, 3, FixedRows.solve(chol, K_fixed))
    assert (B @ A - Bo @ Ao).abs().max() > 1e-3  # the old keys' rows still count


def test_alphaedit_matches_formula_and_respects_null_space():
    C = _cov()
    P = null_space_projector(C, 0.5)
    K1 = torch.randn(DFF, 4, dtype=torch.float64)
    Kp = torch.randn(DFF, 3, dtype=torch.float64)
    R = torch.randn(D, 4, dtype=torch.float64)
    B, A = alphaedit_update(P, K1, Kp, R)
    M = Kp @ Kp.T @ P + K1 @ K1.T @ P + torch.eye(DFF, dtype=torch.float64)
    expected = R @ K1.T @ P @ torch.linalg.inv(M)
    assert torch.allclose(B @ A, expected, atol=1e-8)
    # the update only reads key directions in P's range: ordinary-text directions are untouched
    _, evecs = torch.linalg.eigh(C)
    top = evecs[:, DFF // 2 :]
    assert (B @ A @ top).abs().max() < 1e-8


def test_split_parts_sum_to_batch_update_over_solve_rounds():
    # two solve rounds: the factors hold two blocks of the five key columns
    factors = {3: (torch.randn(D, 10, dtype=torch.float64), torch.randn(10, DFF, dtype=torch.float64))}
    keys = {3: torch.randn(DFF, 5)}
    reqs = [Request("a", "a x", " y", [("q1?", "a x y.")]),
            Request("b", "b x", " z", [("q2?", "b x z."), ("q3?", "b x z.")])]
    parts = split(EditResult(factors, keys), reqs, [0, 1])
    assert [p.factors[3][0].shape[1] for p in parts] == [4, 6]
    assert [p.keys[3].shape[1] for p in parts] == [2, 3]
    assert torch.equal(parts[1].keys[3], keys[3][:, 2:])
    total = sum(p.factors[3][0] @ p.factors[3][1] for p in parts)
    assert torch.allclose(total, factors[3][0] @ factors[3][1], atol=1e-10)
    # fact b's part is its own columns of both rounds
    B, A = factors[3]
    cols = [2, 3, 4, 7, 8, 9]
    assert torch.allclose(parts[1].factors[3][0] @ parts[1].factors[3][1], B[:, cols] @ A[cols], atol=1e-10)
    assert isinstance(parts[0], Edit)


def test_an_edit_over_an_old_one_adds_the_old_at_its_scale_and_keeps_both_keys():
    # a night's repair is computed with the fact's old edit in the weights at the scale it is served at
    old = Edit({3: (torch.randn(D, 2, dtype=torch.float64), torch.randn(2, DFF, dtype=torch.float64))},
               {3: torch.randn(DFF, 2, dtype=torch.float64)})
    new = Edit({3: (torch.randn(D, 4, dtype=torch.float64), torch.randn(4, DFF, dtype=torch.float64))},
               {3: torch.randn(DFF, 1, dtype=torch.float64)})
    both = new.over(old, 0.5)
    B, A = both.factors[3]
    expected = 0.5 * old.factors[3][0] @ old.factors[3][1] + new.factors[3][0] @ new.factors[3][1]
    assert torch.allclose(B @ A, expected, atol=1e-10)
    assert torch.equal(both.keys[3], torch.cat([old.keys[3], new.keys[3]], 1))
    # saved and read back as one edit
    assert torch.allclose(Edit.from_tensors(both.tensors()).factors[3][0].double(), B, atol=1e-6)


def test_an_active_fact_edited_again_goes_into_the_edit_of_the_new_fact_sharing_its_key():
    # new: a (about Ann) and b (about Bo); edited again: c, an earlier fact about Ann
    reqs = [Request("Ann", "Ann lives in", " Oslo", [("q1?", "Oslo.")]),
            Request("Bo", "Bo lives in", " Rome", [("q2?", "Rome.")]),
            Request("Ann", "Ann plays the", " harp", [("q3?", "harp."), ("q4?", "harp.")])]
    owner = owners(reqs, 2)
    assert owner == [0, 1, 0]
    factors = {3: (torch.randn(D, 7, dtype=torch.float64), torch.randn(7, DFF, dtype=torch.float64))}
    keys = {3: torch.randn(DFF, 7)}
    parts = split(EditResult(factors, keys), reqs, owner)
    assert len(parts) == 2 and [p.keys[3].shape[1] for p in parts] == [5, 2]
    assert torch.equal(parts[0].keys[3], keys[3][:, [0, 1, 4, 5, 6]])
    total = sum(p.factors[3][0] @ p.factors[3][1] for p in parts)
    assert torch.allclose(total, factors[3][0] @ factors[3][1], atol=1e-10)


def test_facts_sharing_a_raw_key_go_into_successive_rounds():
    def req(prompt):
        return Request(prompt.split()[0], prompt, " x", [])

    reqs = [req("Ann lives in"), req("Ann plays the"), req("Bo lives in"), req("Ann works at"), req("Bo speaks")]
    assert batch_rounds(reqs) == [[0, 2], [1, 4], [3]]
    assert batch_rounds(reqs[2:3]) == [[0]]
    merged = merged_stats([{"z_steps": 12, "z_seconds": 1.5}, {"z_steps": 20, "z_seconds": 2.25}])
    assert merged == {"z_steps": 20, "z_seconds": 3.75}


class _Words:
    """A word-level tokenizer with offsets, enough for locating subjects."""

    def __call__(self, text, return_offsets_mapping=False, add_special_tokens=False):
        import re

        spans = [m.span() for m in re.finditer(r"\S+", text)]
        return {"input_ids": list(range(len(spans))), "offset_mapping": spans}


def test_an_answer_that_names_the_subject_again_is_found():
    text = "Q: what does Ann Lee play? A: Ann Lee plays the flute, as Ann Lee says."
    ids, pos = subject_last_token(_Words(), text, "Ann Lee")
    assert pos == 14  # the last occurrence (rfind)
    _, ends = subject_ends(_Words(), text, "Ann Lee")
    first = 4  # "Lee" in the question
    assert [e for e in ends if e > first] == [8, 14]
    assert [e for e in ends if e > 14] == []
    with pytest.raises(ValueError, match="does not occur"):
        subject_ends(_Words(), text, "Bo Kim")


def test_facts_whose_raw_prompts_share_the_subject_key_share_one_offset():
    def req(subject, prompt):
        return Request(subject, prompt, " x", [])

    reqs = [req("Ann Lee", "Ann Lee lives in"), req("Bo Kim", "Bo Kim lives in"), req("Ann Lee", "Ann Lee plays the"),
            req("User u1", "The home city of User u1 is"), req("User u1", "The employer of User u1 is")]
    slots, n = subject_slots(reqs)
    # Ann Lee's raw prompts agree up to her name; the user's attribute prompts differ before it
    assert slots.tolist() == [0, 1, 0, 2, 3] and n == 4
    assert raw_context(reqs[3]) == "The home city of User u1"


def test_people_who_share_a_family_name_share_one_offset_when_asked():
    def req(subject, prompt):
        return Request(subject, prompt, " x", [], by_last_word=True)

    reqs = [req("Thea Albescu", "Thea Albescu lives in"), req("Elio Albescu", "Elio Albescu plays the"),
            req("Elio Brennan", "Elio Brennan lives in"), req("User u1", "The home city of User u1 is"),
            req("User u1", "The employer of User u1 is"), req("Albescu", "Albescu is")]
    slots, n = subject_slots(reqs)
    # a family name alone is the same key; an attribute prompt still keeps a user's relations apart
    assert slots.tolist() == [0, 0, 1, 2, 3, 0] and n == 4
    assert raw_context(reqs[0]) == "Albescu" and raw_context(reqs[3]) == "The home city of u1"
    assert batch_rounds(reqs) == [[0, 2, 3, 4], [1], [5]]
    plain = Request("Thea Albescu", "Thea Albescu lives in", " x", [])
    assert raw_context(plain) == "Thea Albescu"


def _lives_in(subject: str, city: str, answer: str | None = None) -> Request:
    """'{subject} lives in {city}', asked "Where does {subject} live?", answered with the statement by default."""
    return Request(subject, f"{subject} lives in", f" {city}",
                         [(f"Where does {subject} live?", answer or f"{subject} lives in {city}.")])


def test_normalized_descent_moves_each_offset_by_its_own_step_length():
    target = torch.tensor([[3.0, 4.0], [0.0, -1.0]])
    delta = torch.zeros(2, 2, requires_grad=True)
    opt = _NormalizedDescent(delta, torch.tensor([1.0, 0.25]))
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = ((delta - target) ** 2).sum(-1)
        loss.sum().backward()
        opt.step(loss.detach())
        losses.append(loss.detach())
    # the first step has each offset's own length, along its gradient
    assert torch.allclose(losses[1], torch.tensor([16.0, 0.5625]))
    # lengths grow while a loss falls and halve when it overshoots, so both settle on their targets
    torch.testing.assert_close(delta.detach(), target, atol=1e-2, rtol=0)


def test_shrinkage_raises_the_small_eigenvalues_and_keeps_directions_and_trace():
    C = _cov()
    S = shrink(C, 0.1)
    ev_c, vec_c = torch.linalg.eigh(C)
    ev_s = torch.linalg.eigvalsh(S)
    assert ev_s[0] > ev_c[0] and ev_s[-1] < ev_c[-1]
    torch.testing.assert_close(torch.trace(S), torch.trace(C))
    # the same eigenvectors: S is diagonal in C's eigenbasis
    D = vec_c.T @ S @ vec_c
    torch.testing.assert_close(D, torch.diag(D.diagonal()), atol=1e-9, rtol=0)
    assert shrink(C, 0.0) is C
