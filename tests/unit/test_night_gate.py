"""The night gate's judgement, without a model: a night whose share of right answers kept falls too far is
refused even when recall and perplexity pass, and the probes it asks are the development half, spread over it."""

from agentmem.measure import KNOWLEDGE_DEV, KNOWLEDGE_HELDOUT
from agentmem.sleep.config import SleepConfig
from agentmem.sleep.night import _gate, _gate_probes

RECALLED = {"a": True, "b": True}


def _known(before: float, after: float) -> dict:
    return {"right_of": 60, "kept_before": before, "kept_after": after, "lost": ["Who wrote Hamlet?"]}


def test_a_night_that_loses_general_knowledge_is_refused_though_recall_and_perplexity_pass():
    cfg = SleepConfig(max_knowledge_drop=0.05)
    assert _gate(cfg, RECALLED, RECALLED, 10.0, 10.1, _known(0.9, 0.85)) is None  # at the limit: allowed
    assert _gate(cfg, RECALLED, RECALLED, 10.0, 10.1, _known(0.8, 0.95)) is None  # a night may give answers back
    why = _gate(cfg, RECALLED, RECALLED, 10.0, 10.1, _known(0.9, 0.8333))
    assert why == "right answers kept on the knowledge probes fell from 0.9 to 0.8333 (of 60), more than 0.05"
    assert _gate(SleepConfig(max_knowledge_drop=0.0), RECALLED, RECALLED, 10.0, 10.0, _known(0.9, 0.8833))


def test_recall_and_perplexity_are_judged_before_knowledge():
    cfg = SleepConfig()
    lost_one = {"a": True, "b": False}
    assert _gate(cfg, RECALLED, lost_one, 10.0, 10.0, _known(0.9, 0.5)).startswith("chat recall of the 2 audited")
    assert _gate(cfg, RECALLED, RECALLED, 10.0, 11.0, _known(0.9, 0.5)).startswith("perplexity rose")


def test_the_gate_asks_the_development_half_spread_over_it_never_the_held_out_half():
    held_out = {p["ask"] for p in KNOWLEDGE_HELDOUT}
    assert not {p["ask"] for p in KNOWLEDGE_DEV} & held_out
    on = SleepConfig(max_knowledge_drop=0.05)
    assert _gate_probes(on.model_copy(update={"knowledge_probes": 500})) == KNOWLEDGE_DEV  # never more than the half
    assert len(_gate_probes(on)) == 96 and set(map(str, _gate_probes(on))) <= set(map(str, KNOWLEDGE_DEV))
    few = _gate_probes(on.model_copy(update={"knowledge_probes": 20}))
    assert len(few) == 20 == len({p["ask"] for p in few})
    assert {p["raw"] for p in few} == {True, False}  # both chat questions and raw prompts, not the first 20
    assert _gate_probes(on.model_copy(update={"knowledge_probes": 0})) == []


def test_with_the_gate_off_no_probe_is_asked():
    assert SleepConfig().max_knowledge_drop == 1.0 and _gate_probes(SleepConfig()) == []
    assert _gate_probes(SleepConfig(max_knowledge_drop=0.99, knowledge_probes=8))  # any limit below 1 asks them
