"""Sequential edits: cross-edit constraints keep the first batch while two more arrive."""

import pytest

from agentmem.benchdata import fictional_facts
from agentmem.evaluate import recall
from agentmem.memit import MemitConfig


def _first_batch_after_three(open_memory, constraints: str) -> dict:
    mem = open_memory(f"retention-{constraints}", memit=MemitConfig(constraints=constraints))
    facts = fictional_facts(18, seed=3)
    for i in range(0, 18, 6):
        mem.remember(facts[i : i + 6])
    return recall(mem.model, mem.tokenizer, facts[:6])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from agentmem import Memory

    out, opened = {}, []

    def opener(name, **kw):
        m = Memory.open(tmp_path_factory.mktemp(name), **kw)
        opened.append(m)
        return m

    for mode in ("nullspace", "none"):
        out[mode] = _first_batch_after_three(opener, mode)
    yield out
    for m in opened:
        m.close()


def test_first_batch_survives_two_more_with_constraints(results):
    r = results["nullspace"]
    assert r["raw"] >= 0.8 and r["chat"] >= 0.8, r["misses"]


def test_constraints_beat_unconstrained_editing(results):
    on, off = results["nullspace"], results["none"]
    assert on["raw"] + on["chat"] + on["paraphrase"] > off["raw"] + off["chat"] + off["paraphrase"], (on, off)
