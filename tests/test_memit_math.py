"""The closed-form update and its inputs on their own: Woodbury, constraints, AlphaEdit, per-fact splitting, shrinkage, cached sequences."""

import pytest
import torch

from agentmem import memit
from agentmem.editor import _merged, _owners, _rounds, _split
from agentmem.store import Edit

torch.manual_seed(0)
D, DFF = 12, 40


@pytest.fixture(scope="module")
def base_model(model_dir):
    """The unedited model, loaded once for the tests here that only read it."""
    from agentmem import model_store
    from agentmem.arch import for_model

    model, tok = model_store.load(model_dir)
    return model, tok, for_model(model)


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


def test_fixed_rows_solved_once_give_the_same_update_as_concatenated_keys():
    C = _cov()
    chol = torch.linalg.cholesky(2.0 * C)
    K_new, K_old, K_fixed = (torch.randn(DFF, n, dtype=torch.float64) for n in (3, 4, 7))
    R = torch.randn(D, 3, dtype=torch.float64)
    B, A = memit.woodbury_update(chol, torch.cat([K_new, K_old, K_fixed], 1), R, 3)
    Bf, Af = memit.woodbury_update(chol, torch.cat([K_new, K_old], 1), R, 3, memit.FixedRows.solve(chol, K_fixed))
    assert torch.allclose(B @ A, Bf @ Af, atol=1e-10)
    Bo, Ao = memit.woodbury_update(chol, K_new, R, 3, memit.FixedRows.solve(chol, K_fixed))
    assert (B @ A - Bo @ Ao).abs().max() > 1e-3  # the old keys' rows still count


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


def test_split_parts_sum_to_batch_update_over_solve_rounds():
    # two solve rounds: the factors hold two blocks of the five key columns
    factors = {3: (torch.randn(D, 10, dtype=torch.float64), torch.randn(10, DFF, dtype=torch.float64))}
    keys = {3: torch.randn(DFF, 5)}
    reqs = [memit.Request("a", "a x", " y", [("q1?", "a x y.")]),
            memit.Request("b", "b x", " z", [("q2?", "b x z."), ("q3?", "b x z.")])]
    parts = _split(memit.EditResult(factors, keys), reqs, [0, 1])
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


def test_an_active_fact_edited_again_goes_into_the_edit_of_the_new_fact_sharing_its_key():
    # new: a (about Ann) and b (about Bo); edited again: c, an earlier fact about Ann
    reqs = [memit.Request("Ann", "Ann lives in", " Oslo", [("q1?", "Oslo.")]),
            memit.Request("Bo", "Bo lives in", " Rome", [("q2?", "Rome.")]),
            memit.Request("Ann", "Ann plays the", " harp", [("q3?", "harp."), ("q4?", "harp.")])]
    owners = _owners(reqs, 2)
    assert owners == [0, 1, 0]
    factors = {3: (torch.randn(D, 7, dtype=torch.float64), torch.randn(7, DFF, dtype=torch.float64))}
    keys = {3: torch.randn(DFF, 7)}
    parts = _split(memit.EditResult(factors, keys), reqs, owners)
    assert len(parts) == 2 and [p.keys[3].shape[1] for p in parts] == [5, 2]
    assert torch.equal(parts[0].keys[3], keys[3][:, [0, 1, 4, 5, 6]])
    total = sum(p.factors[3][0] @ p.factors[3][1] for p in parts)
    assert torch.allclose(total, factors[3][0] @ factors[3][1], atol=1e-10)


def test_facts_sharing_a_raw_key_go_into_successive_rounds():
    def req(prompt):
        return memit.Request(prompt.split()[0], prompt, " x", [])

    reqs = [req("Ann lives in"), req("Ann plays the"), req("Bo lives in"), req("Ann works at"), req("Bo speaks")]
    assert _rounds(reqs) == [[0, 2], [1, 4], [3]]
    assert _rounds(reqs[2:3]) == [[0]]
    merged = _merged([{"z_steps": 12, "z_seconds": 1.5}, {"z_steps": 20, "z_seconds": 2.25}])
    assert merged == {"z_steps": 20, "z_seconds": 3.75}


class _Words:
    """A word-level tokenizer with offsets, enough for locating subjects."""

    def __call__(self, text, return_offsets_mapping=False, add_special_tokens=False):
        import re

        spans = [m.span() for m in re.finditer(r"\S+", text)]
        return {"input_ids": list(range(len(spans))), "offset_mapping": spans}


def test_an_answer_that_names_the_subject_again_is_found():
    text = "Q: what does Ann Lee play? A: Ann Lee plays the flute, as Ann Lee says."
    ids, pos = memit.subject_last_token(_Words(), text, "Ann Lee")
    assert pos == 14  # the last occurrence (rfind)
    _, ends = memit.subject_ends(_Words(), text, "Ann Lee")
    first = 4  # "Lee" in the question
    assert [e for e in ends if e > first] == [8, 14]
    assert [e for e in ends if e > 14] == []
    with pytest.raises(ValueError, match="does not occur"):
        memit.subject_ends(_Words(), text, "Bo Kim")


def test_facts_whose_raw_prompts_share_the_subject_key_share_one_offset():
    def req(subject, prompt):
        return memit.Request(subject, prompt, " x", [])

    reqs = [req("Ann Lee", "Ann Lee lives in"), req("Bo Kim", "Bo Kim lives in"), req("Ann Lee", "Ann Lee plays the"),
            req("User u1", "The home city of User u1 is"), req("User u1", "The employer of User u1 is")]
    slots, n = memit.subject_slots(reqs)
    # Ann Lee's raw prompts agree up to her name; the user's attribute prompts differ before it
    assert slots.tolist() == [0, 1, 0, 2, 3] and n == 4
    assert memit.raw_context(reqs[3]) == "The home city of User u1"


def test_people_who_share_a_family_name_share_one_offset_when_asked():
    def req(subject, prompt):
        return memit.Request(subject, prompt, " x", [], by_last_word=True)

    reqs = [req("Thea Albescu", "Thea Albescu lives in"), req("Elio Albescu", "Elio Albescu plays the"),
            req("Elio Brennan", "Elio Brennan lives in"), req("User u1", "The home city of User u1 is"),
            req("User u1", "The employer of User u1 is"), req("Albescu", "Albescu is")]
    slots, n = memit.subject_slots(reqs)
    # a family name alone is the same key; an attribute prompt still keeps a user's relations apart
    assert slots.tolist() == [0, 0, 1, 2, 3, 0] and n == 4
    assert memit.raw_context(reqs[0]) == "Albescu" and memit.raw_context(reqs[3]) == "The home city of u1"
    assert _rounds(reqs) == [[0, 2, 3, 4], [1], [5]]
    plain = memit.Request("Thea Albescu", "Thea Albescu lives in", " x", [])
    assert memit.raw_context(plain) == "Thea Albescu"


def _lives_in(subject: str, city: str, answer: str | None = None) -> memit.Request:
    """'{subject} lives in {city}', asked "Where does {subject} live?", answered with the statement by default."""
    return memit.Request(subject, f"{subject} lives in", f" {city}",
                         [(f"Where does {subject} live?", answer or f"{subject} lives in {city}.")])


def _aria_stream(model, tok) -> tuple[list[memit.Site], memit.SubjectStream]:
    """Raw prompts (plain and prefixed) and chat questions of three people, streamed from layer 4."""
    people = [("Aria Castellanos", "Oslo"), ("Bo Li", "Lima"), ("Cem Yilmaz", "Quito")]
    sites = memit.build_sites(tok, [_lives_in(s, c) for s, c in people], ["", "Fun fact: "])
    stream = memit.SubjectStream(model, tok, sites, start=4)
    # the chat questions begin with the same template opening, run once per layer: that path is covered
    assert any(b.opening and all(sites[i].kind == "question" for i in b.idx) for b in stream.buckets)
    return sites, stream


def test_keys_from_the_cached_lower_layers_equal_a_full_forward(base_model):
    # The stream runs layers below the edit once, on sequences cut after the subject;
    # the keys and outputs must be those of the whole sequence run from the embeddings.
    model, tok, arch = base_model
    sites, stream = _aria_stream(model, tok)
    keys, outs = stream.capture(model, [4, 6], [9])
    for i, s in enumerate(sites):
        got = {}
        hooks = [arch.down_proj(model, l).register_forward_hook(
            lambda m, inp, out, l=l: got.__setitem__(l, inp[0][0, s.pos])) for l in (4, 6)]
        hooks.append(arch.layer(model, 9).register_forward_hook(
            lambda m, inp, out: got.__setitem__("out", (out[0] if isinstance(out, tuple) else out)[0, s.pos])))
        with torch.no_grad():
            model(input_ids=torch.tensor([s.ids]), use_cache=False)
        for h in hooks:
            h.remove()
        for l in (4, 6):
            torch.testing.assert_close(keys[l][i], got[l], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(outs[9][i], got["out"], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="below 4"):
        stream.capture(model, [3], [9])


def test_a_capture_after_an_edited_layer_equals_one_from_a_fresh_stream(base_model):
    # The stream keeps what enters each layer and restarts from the highest entry still valid;
    # after a layer's weights change, what it captures must be what a new stream captures.
    model, tok, arch = base_model
    sites, stream = _aria_stream(model, tok)
    _, before = stream.capture(model, [4], [9])
    w = arch.down_proj(model, 6).weight
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w += 0.05 * torch.randn_like(w)
        stream.edited(6)
        keys, outs = stream.capture(model, [7], [9])
        fresh_keys, fresh_outs = memit.SubjectStream(model, tok, sites, start=4).capture(model, [7], [9])
    finally:
        with torch.no_grad():
            w.copy_(saved)
    assert not torch.allclose(outs[9], before[9])
    torch.testing.assert_close(keys[7], fresh_keys[7])
    torch.testing.assert_close(outs[9], fresh_outs[9])


def test_normalized_descent_moves_each_offset_by_its_own_step_length():
    target = torch.tensor([[3.0, 4.0], [0.0, -1.0]])
    delta = torch.zeros(2, 2, requires_grad=True)
    opt = memit._NormalizedDescent(delta, torch.tensor([1.0, 0.25]))
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


def test_a_group_without_finished_requests_runs_like_one_built_without_them(base_model):
    # compute_z drops the sequences of requests that reached their targets by slicing its cached
    # tensors; the slice must compute what a group built from the remaining sequences computes.
    model, tok, arch = base_model
    people = [("Aria Castellanos", "Oslo"), ("Bo Li", "the small coastal town of Tromsø"), ("Cem Yilmaz", "Lima")]
    reqs = [_lives_in(s, o) for s, o in people]
    sites = memit.build_sites(tok, reqs, [""])
    pad = tok.pad_token_id or 0
    whole = memit._Group(model, arch, sites, list(range(len(sites))), pad, 9)
    kept = [i for i, s in enumerate(sites) if s.request != 1]
    fresh = memit._Group(model, arch, sites, kept, pad, 9)
    sliced = whole.subset(torch.tensor([True, False, True]))
    assert sliced.idx == kept
    assert len(sliced.again_rows) > 0  # the answers name the subject again: that path is covered
    for name in ("req", "t_ids", "t_req", "again_rows", "again_spos", "t_rows", "kl_rows"):
        assert torch.equal(getattr(sliced, name), getattr(fresh, name)), name
    torch.testing.assert_close(sliced.kl_ref[torch.float32], fresh.kl_ref[torch.float32])
    delta = torch.randn(3, model.config.hidden_size) * 2
    with torch.no_grad():
        upper = memit._Upper(model, arch, 10)
        a, b = sliced.run(upper, delta), fresh.run(upper, delta)
    torch.testing.assert_close(a[sliced.t_rows, sliced.t_spos], b[fresh.t_rows, fresh.t_spos], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a[sliced.kl_rows, sliced.kl_spos], b[fresh.kl_rows, fresh.kl_spos], rtol=1e-4, atol=1e-4)
    assert whole.subset(torch.ones(3, dtype=torch.bool)) is whole
    assert whole.subset(torch.zeros(3, dtype=torch.bool)) is None


def test_the_loop_predicts_each_target_token_as_a_full_forward_with_the_offset_does(base_model):
    # compute_z's loop runs only the tokens from the subject on, above the edited layer, without each
    # target's last token; its predictions must be the whole model's with the offset added at the
    # subject (and wherever an answer names the subject again)
    model, tok, arch = base_model
    sites = memit.build_sites(tok, [_lives_in("Aria Castellanos", "Oslo"), _lives_in("Bo Li", "Lima")], [""])
    group = memit._Group(model, arch, sites, list(range(len(sites))), tok.pad_token_id or 0, 9)
    delta = torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        looped = model.get_output_embeddings()(group.run(memit._Upper(model, arch, 10), delta))
    assert len(group.again_rows) > 0
    for j, i in enumerate(group.idx):
        site = sites[i]

        def add(module, inputs, out, site=site):
            h = out[0] if isinstance(out, tuple) else out
            for t in (site.pos, *site.repeats):
                h[0, t] += delta[site.request]

        hook = arch.layer(model, 9).register_forward_hook(add)
        try:
            with torch.no_grad():
                full = model(input_ids=torch.tensor([site.ids]), use_cache=False).logits[0]
        finally:
            hook.remove()
        rows = group.t_rows == j
        got = looped[j, group.t_spos[rows]]
        want = full[group.t_spos[rows] + site.pos]
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)


def test_bfloat16_upper_layers_are_copies_that_compute_what_the_model_computes(base_model):
    model, tok, arch = base_model
    sites = memit.build_sites(tok, [_lives_in("Aria Castellanos", "Oslo")], [""])
    group = memit._Group(model, arch, sites, list(range(len(sites))), tok.pad_token_id or 0, 9)
    delta = torch.randn(1, model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad():
        full, half = (group.run(memit._Upper(model, arch, 10, dt), delta) for dt in (torch.float32, torch.bfloat16))
    assert half.dtype == torch.float32
    rows = (group.t_rows, group.t_spos)
    full, half = full[rows], half[rows]
    # the same next tokens, from final hidden states within bfloat16's error over 20 layers (4-9 % here)
    head = model.get_output_embeddings()
    assert torch.equal(head(full).argmax(-1), head(half).argmax(-1))
    assert 0 < ((half - full).norm(dim=-1) / full.norm(dim=-1)).max() < 0.15
    # the model itself stays float32 with its own attention
    assert model.config._attn_implementation == "sdpa"
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("over", [{"z_dtype": "bfloat16"}, {"z_optimizer": "normalized"}])
def test_compute_z_reaches_the_target(base_model, over):
    model, tok, arch = base_model
    # the short answer halves the bfloat16 case's time on CPUs that emulate it (98 -> 55 s on an AVX2 EPYC)
    cfg = memit.MemitConfig(**over, steps=40)
    sites = memit.build_sites(tok, [_lives_in("Aria Castellanos", "Oslo", "Oslo.")], [""])
    delta, _, stats = memit.compute_z(model, tok, sites, 1, 9, cfg)
    # stopped early: every target token's NLL went under the thresholds
    assert stats["z_steps"] < cfg.steps and stats["z_token_nll_max"] < cfg.z_stop_token_nll, stats
    assert delta.dtype == torch.float32 and delta.norm() > 0


def test_shrinkage_raises_the_small_eigenvalues_and_keeps_directions_and_trace():
    from agentmem.covariance import shrink

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
