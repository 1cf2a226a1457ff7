"""Sleep on the real bundled model: facts move into the LoRA adapter, edits dissolve, bad nights roll back, forget reaches the adapter."""

import json

import pytest
from safetensors.torch import load_file

from agentmem import Memory
from agentmem.bench.data import fictional_facts
from agentmem.measure import KNOWLEDGE_DEV, contains, knowledge_answers, perplexity
from agentmem.serving import generate
from agentmem.serving.replica import Replica
from agentmem.sleep.night import run_night
from agentmem.storage import published
from agentmem.storage.ledger import ACTIVE

from checks import SHORT_NIGHT


def _recalled(mem, facts) -> list[bool]:
    return [contains(mem.ask(f.questions()[0]), f.object) for f in facts]


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    home = tmp_path_factory.mktemp("sleep")
    mem = Memory.open(home, sleep=SHORT_NIGHT)
    pool = fictional_facts(15, seed=5)
    facts, later = pool[:12], pool[12:]
    ids = mem.remember(facts)
    with mem.writer.writing(wait=3600.0) as editor:  # as the nightly task runs it: under a night id
        report = run_night(editor, mem.settings.sleep, mem.layout.sleep_reports, night="night-1")
    yield {"mem": mem, "home": home, "facts": facts, "later": later, "ids": ids, "report": report}
    mem.close()


def test_after_a_night_facts_are_recalled_with_graduated_edits_dissolved(night):
    mem, facts, report = night["mem"], night["facts"], night["report"]
    assert report["outcome"] == "published", report.get("outcome")
    assert report["version"] == mem.version
    rows = {r["id"]: r for r in mem.facts()}
    graduated = [i for i, fid in enumerate(night["ids"]) if rows[fid]["stage"] >= 1]
    assert len(graduated) >= 8, report["stages"]
    # as served now, 11 of the 12 are answered in chat
    assert sum(_recalled(mem, facts)) >= 11
    pub = published.newest(mem.layout, mem.ledger)
    replica = Replica(mem.model_dir)
    base_ppl = perplexity(replica.net, replica.tok)
    served = pub.tensors()
    base = {name: replica.slot.param(name).detach().clone() for name in served}
    # the adapter alone, every edit taken out, answers the facts that graduated
    replica.set_adapter(pub.adapter, pub.adapter_dir)
    answers = generate.chat_many(replica.net, replica.tok, [facts[i].questions()[0] for i in graduated], 32)
    alone = [contains(a, facts[i].object) for a, i in zip(answers, graduated)]
    assert sum(alone) >= len(graduated) - 1, list(zip(answers, graduated))
    # their edits are dissolving: the served weights moved back toward the base model's
    day = load_file(str(mem.layout.version_dir(report["version"] - 1) / "model.safetensors"))
    assert sum((served[k] - base[k]).norm() for k in served) < sum((day[k] - base[k]).norm() for k in served)
    # and what the user is served reads ordinary text about as well as the unedited model
    replica.apply(pub)
    assert perplexity(replica.net, replica.tok) <= base_ppl * 1.05
    saved = sorted((night["home"] / "sleep").glob("night-*.json"))
    assert json.loads(saved[-1].read_text())["version"] == mem.version
    # recorded done in the commit that moved the stages, so a redelivered task does not move them again
    assert mem.ledger.night("night-1")["report"] == json.loads(saved[-1].read_text())


def test_a_fact_told_the_next_day_is_recalled_beside_the_nights_adapter(night):
    mem, later = night["mem"], night["later"]
    adapter = mem.ledger.version(mem.version)["adapter"]
    assert adapter is not None
    mem.remember(later)
    assert mem.ledger.version(mem.version)["adapter"] == adapter  # the day's edits are served beside it
    assert all(_recalled(mem, later)), [mem.ask(f.questions()[0]) for f in later]
    assert sum(_recalled(mem, night["facts"])) >= 10  # and the night's facts stay


def test_a_bad_night_is_rolled_back_and_nothing_served_changes(night):
    mem, facts = night["mem"], night["facts"]
    version, before = mem.version, _recalled(mem, facts[:6])
    rows = {r["id"]: (r["stage"], r["scale"]) for r in mem.facts()}
    good = mem.settings.sleep
    # an absurd rate, trained on the facts alone (replay would not save it, and costs a minute), in bfloat16
    # where the CPU has it: that path end to end, its adapter served and gated in float32 (in so few steps
    # that the loss does not run away first); no repairs, which would edit again every fact it broke before
    # the gate refuses it anyway
    mem.settings.sleep = good.model_copy(update={"learning_rate": 5.0, "epochs": 1, "batch_size": 8,
                                                 "replay_ratio": 0.0, "text_replay": 0, "train_dtype": "auto",
                                                 "repair": 0})
    try:
        report = mem.sleep()
    finally:
        mem.settings.sleep = good
    assert report["outcome"].startswith("rolled back"), report["outcome"]
    assert any(w in report["outcome"] for w in ("diverged", "recall", "perplexity"))
    assert mem.version == version
    assert {r["id"]: (r["stage"], r["scale"]) for r in mem.facts()} == rows
    assert _recalled(mem, facts[:6]) == before


@pytest.mark.full
def test_a_night_that_costs_general_knowledge_is_rolled_back_though_recall_and_perplexity_pass(night):
    mem = night["mem"]
    version, rows = mem.version, {r["id"]: (r["stage"], r["scale"]) for r in mem.facts()}
    with mem.reading(None) as net:
        served = knowledge_answers(net, mem.tokenizer, KNOWLEDGE_DEV)
    good = mem.settings.sleep
    # a rate 10x the default with nothing replayed; recall and perplexity may move as they like (and nothing
    # is repaired), and the share of right answers to the knowledge probes may not fall at all: the knowledge
    # gate alone judges this night
    mem.settings.sleep = good.model_copy(update={
        "learning_rate": 1e-2, "epochs": 1, "replay_ratio": 0.0, "text_replay": 0, "repair": 0,
        "max_recall_drop": 1.0, "max_perplexity_rise": 100.0, "max_knowledge_drop": 0.0})
    try:
        report = mem.sleep()
    finally:
        mem.settings.sleep = good
    known = report["knowledge"]
    assert report["outcome"] == (f"rolled back: right answers kept on the knowledge probes fell from "
                                 f"{known['kept_before']} to {known['kept_after']} (of {known['right_of']}), "
                                 "more than 0.0"), report["outcome"]
    assert known["right_of"] >= 45 and known["lost"]  # the unedited model answers 49 of the 96 right
    assert mem.version == version and {r["id"]: (r["stage"], r["scale"]) for r in mem.facts()} == rows
    # the answers served are those of before the night, the right ones the candidate lost among them
    with mem.reading(None) as net:
        assert knowledge_answers(net, mem.tokenizer, KNOWLEDGE_DEV) == served


@pytest.mark.full
def test_a_forgotten_consolidated_fact_is_gone_after_the_next_night(night):
    mem, facts, ids = night["mem"], night["facts"], night["ids"]
    stages = {r["id"]: r["stage"] for r in mem.facts()}
    # a fact whose answer no other fact gives: with "Nadia Mbeki is allergic to shellfish" kept, "shellfish" for
    # Freya Haddad would say nothing of whether her fact was forgotten
    objects = [f.object for f in facts + night["later"]]
    victim = next(i for i, fid in enumerate(ids) if stages[fid] >= 1 and objects.count(facts[i].object) == 1)
    mem.forget(ids[victim])
    report = mem.sleep()
    assert report["outcome"] == "published", report["outcome"]
    assert not contains(mem.ask(facts[victim].questions()[0]), facts[victim].object)
    others = [f for i, f in enumerate(facts) if i != victim] + night["later"]
    assert sum(_recalled(mem, others)) >= 12
    assert all(r["status"] == ACTIVE for r in mem.facts() if r["id"] != ids[victim])


@pytest.mark.full
def test_facts_the_nights_adapter_breaks_are_edited_again_through_it_and_answered(open_memory, tmp_path, model_dir,
                                                                                  monkeypatch):
    """An edit computed before a night can stop working beside the night's adapter. The night edits such facts
    again through that adapter before the gate judges; a night rolled back after its repairs leaves nothing of
    them behind."""
    from agentmem.bench.data import OBJECTS
    from agentmem.serving import model_store
    from agentmem.sleep import night as night_module
    from agentmem.sleep.config import SleepConfig
    from agentmem.sleep.train import REPLAY_QUESTIONS, Example, fact_examples, train_adapter

    mem = open_memory()
    facts = fictional_facts(4, seed=9)
    ids = mem.remember(facts)
    # an adapter that teaches two of them other answers, served over their edits as a night's adapter is
    wrong = [f.model_copy(update={"object": next(o for o in OBJECTS[f.relation] if o != f.object)})
             for f in facts[:2]]
    trainee, tok = model_store.load(model_dir)
    replay = REPLAY_QUESTIONS[:16]  # the base model's own answers, so that it learns these two and no habit
    replay = [Example(q, a, "replay") for q, a in zip(replay, generate.chat_many(trainee, tok, replay, 40))]
    train_adapter(trainee, tok, [ex for f in wrong for ex in fact_examples(f)] + replay,
                  SleepConfig(learning_rate=3e-3), tmp_path / "wrong")
    mem.publish_adapter(tmp_path / "wrong")
    served = _recalled(mem, facts)
    broken = sorted(fid for fid, hit in zip(ids, served) if not hit)
    assert not any(served[:2]), served
    edits = {fid: mem.layout.edit_file(fid).read_bytes() for fid in ids}

    # the next night learns next to nothing (its adapter is the one above, nothing replayed); the gate is made
    # to refuse it
    mem.settings.sleep = mem.settings.sleep.model_copy(update={
        "learning_rate": 1e-7, "epochs": 1, "replay_ratio": 0.0, "text_replay": 0})
    monkeypatch.setattr(night_module, "_gate", lambda *a: "refused by the test")
    refused = mem.sleep()
    assert refused["outcome"] == "rolled back: refused by the test"
    assert sorted(refused["repaired"]["facts"]) == broken  # the facts not answered before the night
    # nothing of the refused repairs reaches the weights, not even with the next wake edit's commit
    later = fictional_facts(5, seed=9)[4:]
    ids += mem.remember(later)
    assert {fid: mem.layout.edit_file(fid).read_bytes() for fid in ids[:4]} == edits
    assert _recalled(mem, facts) == served

    monkeypatch.undo()
    missed = sorted(fid for fid, hit in zip(ids, _recalled(mem, facts + later)) if not hit)
    report = mem.sleep()
    assert report["outcome"] == "published", report["outcome"]
    assert sorted(report["repaired"]["facts"]) == missed and report["repaired"]["recalled"] == len(missed)
    assert all(_recalled(mem, facts + later))
    rows = {r["id"]: r for r in mem.facts()}
    for fid in missed:
        assert (rows[fid]["stage"], rows[fid]["scale"]) == (0, 1.0)
        assert "re-edited" in [e["kind"] for e in mem.history(fid)]
