"""Checks several model tests share: what a user would find if they looked at the store after a run."""

import torch
from safetensors.torch import load_file

from agentmem.edit.arch import for_model, num_layers
from agentmem.facts import SHARED
from agentmem.storage.ledger import ACTIVE
from agentmem.storage.published import newest_user
from agentmem.storage.weights import WeightStore


def consistent(mem) -> None:
    """Every active fact applied exactly once, the training copy equal to base + the shared facts' edits, and
    each user's newest adapter equal to that user's edits."""
    store = WeightStore(mem.layout, mem.model_dir, for_model(mem.model),
                        for_model(mem.model).default_edit_layers(num_layers(mem.model)))
    rows = mem.ledger.facts(status=ACTIVE)
    active = [(r["id"], r["scale"]) for r in rows]
    assert store.edit_ids() == {fid for fid, _ in active}
    training = load_file(str(mem.home / "store" / "training" / "model.safetensors"))
    shared = [(r["id"], r["scale"]) for r in rows if r["scope"] == SHARED]
    for name, t in store.named(store.materialise(shared)).items():
        assert torch.equal(training[name], t), name
    for scope in {r["scope"] for r in rows} - {SHARED}:
        mine = [(r["id"], r["scale"]) for r in rows if r["scope"] == scope]
        zero = {l: torch.zeros_like(w) for l, w in store.base.items()}
        deltas = dict(newest_user(mem.layout, mem.ledger, scope).deltas())
        for name, t in store.named(store.materialise(mine, onto=zero)).items():
            torch.testing.assert_close(deltas[name], t, atol=1e-5, rtol=1e-4)
    for fid, _ in active:
        commits = [e for e in mem.history(fid) if e["kind"] == ACTIVE and e.get("version_added")]
        assert len(commits) == 1, (fid, mem.history(fid))
