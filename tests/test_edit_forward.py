"""The partial forward passes and compute_z on the bundled model: cached streams equal full forwards, the
optimisation loop predicts what the whole model predicts, and compute_z reaches its target."""

import pytest
import torch

from agentmem.edit.compute_z import _Group, compute_z
from agentmem.edit.config import MemitConfig
from agentmem.edit.forward import SubjectStream, _Upper
from agentmem.edit.requests import Request
from agentmem.edit.sites import Site, build_sites
from agentmem.edit.arch import for_model
from agentmem.serving import model_store


@pytest.fixture(scope="module")
def base_model(model_dir):
    """The unedited model, loaded once for the tests here that only read it."""
    model, tok = model_store.load(model_dir)
    return model, tok, for_model(model)


def _lives_in(subject: str, city: str, answer: str | None = None) -> Request:
    """'{subject} lives in {city}', asked "Where does {subject} live?", answered with the statement by default."""
    return Request(subject, f"{subject} lives in", f" {city}",
                         [(f"Where does {subject} live?", answer or f"{subject} lives in {city}.")])


def _aria_stream(model, tok) -> tuple[list[Site], SubjectStream]:
    """Raw prompts (plain and prefixed) and chat questions of three people, streamed from layer 4."""
    people = [("Aria Castellanos", "Oslo"), ("Bo Li", "Lima"), ("Cem Yilmaz", "Quito")]
    sites = build_sites(tok, [_lives_in(s, c) for s, c in people], ["", "Fun fact: "])
    stream = SubjectStream(model, tok, sites, start=4)
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
        fresh_keys, fresh_outs = SubjectStream(model, tok, sites, start=4).capture(model, [7], [9])
    finally:
        with torch.no_grad():
            w.copy_(saved)
    assert not torch.allclose(outs[9], before[9])
    torch.testing.assert_close(keys[7], fresh_keys[7])
    torch.testing.assert_close(outs[9], fresh_outs[9])


def test_a_group_without_finished_requests_runs_like_one_built_without_them(base_model):
    # compute_z drops the sequences of requests that reached their targets by slicing its cached
    # tensors; the slice must compute what a group built from the remaining sequences computes.
    model, tok, arch = base_model
    people = [("Aria Castellanos", "Oslo"), ("Bo Li", "the small coastal town of Tromsø"), ("Cem Yilmaz", "Lima")]
    reqs = [_lives_in(s, o) for s, o in people]
    sites = build_sites(tok, reqs, [""])
    pad = tok.pad_token_id or 0
    whole = _Group(model, arch, sites, list(range(len(sites))), pad, 9)
    kept = [i for i, s in enumerate(sites) if s.request != 1]
    fresh = _Group(model, arch, sites, kept, pad, 9)
    sliced = whole.subset(torch.tensor([True, False, True]))
    assert sliced.idx == kept
    assert len(sliced.again_rows) > 0  # the answers name the subject again: that path is covered
    for name in ("req", "t_ids", "t_req", "again_rows", "again_spos", "t_rows", "kl_rows"):
        assert torch.equal(getattr(sliced, name), getattr(fresh, name)), name
    torch.testing.assert_close(sliced.kl_ref[torch.float32], fresh.kl_ref[torch.float32])
    delta = torch.randn(3, model.config.hidden_size) * 2
    with torch.no_grad():
        upper = _Upper(model, arch, 10)
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
    sites = build_sites(tok, [_lives_in("Aria Castellanos", "Oslo"), _lives_in("Bo Li", "Lima")], [""])
    group = _Group(model, arch, sites, list(range(len(sites))), tok.pad_token_id or 0, 9)
    delta = torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        looped = model.get_output_embeddings()(group.run(_Upper(model, arch, 10), delta))
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
    sites = build_sites(tok, [_lives_in("Aria Castellanos", "Oslo")], [""])
    group = _Group(model, arch, sites, list(range(len(sites))), tok.pad_token_id or 0, 9)
    delta = torch.randn(1, model.config.hidden_size, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad():
        full, half = (group.run(_Upper(model, arch, 10, dt), delta) for dt in (torch.float32, torch.bfloat16))
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
    cfg = MemitConfig(**over, steps=40)
    sites = build_sites(tok, [_lives_in("Aria Castellanos", "Oslo", "Oslo.")], [""])
    delta, _, stats = compute_z(model, tok, sites, 1, 9, cfg)
    # stopped early: every target token's NLL went under the thresholds
    assert stats["z_steps"] < cfg.steps and stats["z_token_nll_max"] < cfg.z_stop_token_nll, stats
    assert delta.dtype == torch.float32 and delta.norm() > 0
