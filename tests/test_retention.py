"""Sequential edits: cross-edit constraints keep the first batch while three more arrive."""

import pytest

from agentmem.benchdata import fictional_facts
from agentmem.evaluate import recall
from agentmem.memit import MemitConfig


def _first_batch_after_four(open_memory, constraints: str) -> dict:
    mem = open_memory(f"retention-{constraints}", memit=MemitConfig(constraints=constraints))
    facts = fictional_facts(32, seed=3)
    for i in range(0, 32, 8):
        mem.remember(facts[i : i + 8])
    return recall(mem.model, mem.tokenizer, facts[:8])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from agentmem import Memory

    out, opened = {}, []

    def opener(name, **kw):
        m = Memory.open(tmp_path_factory.mktemp(name), **kw)
        opened.append(m)
        return m

    for mode in ("nullspace", "none"):
        out[mode] = _first_batch_after_four(opener, mode)
    yield out
    for m in opened:
        m.close()


def test_first_batch_survives_three_more_with_constraints(results):
    r = results["nullspace"]
    assert r["raw"] >= 0.8 and r["chat"] >= 0.8, r["misses"]


def test_constraints_beat_unconstrained_editing(results):
    on, off = results["nullspace"], results["none"]
    assert on["raw"] + on["chat"] + on["paraphrase"] > off["raw"] + off["chat"] + off["paraphrase"], (on, off)
