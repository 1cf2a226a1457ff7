"""Sequential edits: cross-edit constraints keep the first batch while more arrive.

The issue's 5 batches of 10, with AGENTMEM_TEST_FULL=1 (about 11 minutes on 2 cores, over CI's budget).
"""

import pytest

from agentmem.bench.data import fictional_facts
from agentmem.edit.config import MemitConfig
from agentmem.measure import recall


BATCHES, SIZE = 5, 10


def _first_batch_after_the_rest(open_memory, constraints: str) -> dict:
    mem = open_memory(f"retention-{constraints}", memit=MemitConfig(constraints=constraints))
    facts = fictional_facts(BATCHES * SIZE, seed=3)
    for i in range(0, len(facts), SIZE):
        mem.remember(facts[i : i + SIZE])
    return recall(mem.model, mem.tokenizer, facts[:SIZE])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from agentmem import Memory

    out, opened = {}, []

    def opener(name, **kw):
        m = Memory.open(tmp_path_factory.mktemp(name), **kw)
        opened.append(m)
        return m

    for mode in ("nullspace", "none"):
        out[mode] = _first_batch_after_the_rest(opener, mode)
    yield out
    for m in opened:
        m.close()


@pytest.mark.full
def test_first_batch_survives_the_later_batches_with_constraints(results):
    r = results["nullspace"]
    assert r["raw"] >= 0.8 and r["chat"] >= 0.8, r["misses"]


@pytest.mark.full
def test_constraints_beat_unconstrained_editing(results):
    on, off = results["nullspace"], results["none"]
    assert on["raw"] + on["chat"] + on["paraphrase"] > off["raw"] + off["chat"] + off["paraphrase"], (on, off)
