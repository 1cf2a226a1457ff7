"""The wake editor on the real bundled model: recall, specificity, forget, bad input, crash recovery."""

import pytest
import torch

from agentmem import Fact, FactError, Memory
from agentmem.bench.data import fictional_facts, same_subject_facts
from agentmem.measure import probe_answers, recall, specificity
from agentmem.storage.ledger import ACTIVE, PENDING


def _edited_weights(mem):
    return {l: mem.editor.arch.down_proj(mem.model, l).weight.detach().clone() for l in mem.editor.layers}


@pytest.fixture(scope="module")
def wake(tmp_path_factory):
    home = tmp_path_factory.mktemp("wake")
    mem = Memory.open(home)
    base = _edited_weights(mem)
    probes = probe_answers(mem.model, mem.tokenizer)
    facts = fictional_facts(10, seed=7)
    ids = mem.remember(facts)
    yield {"mem": mem, "home": home, "base": base, "probes": probes, "facts": facts, "ids": ids}
    mem.close()


def test_ten_facts_are_recalled_in_chat_raw_and_paraphrase(wake):
    # The 9 of 10 holds for these facts (seed 7); over seeds 1, 3-6 and 8 paraphrase recall of a
    # fresh batch of 10 was 0.4-0.9, mean 0.72 (README, "Status and measured numbers").
    r = recall(wake["mem"].model, wake["mem"].tokenizer, wake["facts"])
    assert r["raw"] >= 0.9, r["misses"]
    assert r["chat"] >= 0.9, r["misses"]
    assert r["paraphrase"] >= 0.9, r["misses"]


def test_ask_answers_from_the_weights_with_an_empty_context(wake):
    mem, f = wake["mem"], wake["facts"][0]
    assert f.object.lower() in mem.ask(f.questions()[0]).lower()


@pytest.fixture(scope="module")
def probes_after(wake):
    """Specificity of the 10 facts' edit, generated once for the tests that read it."""
    return specificity(wake["probes"], probe_answers(wake["mem"].model, wake["mem"].tokenizer))


def test_unrelated_answers_mostly_keep_their_opening(probes_after):
    # The bar is every one of the 20 answers unchanged; we reach 0.65-0.8 of openings
    # (first 8 words) on this model, so this guards against regressions, not the goal.
    s = probes_after
    assert s["n"] == 20
    assert s["opening_unchanged"] >= 0.7, s["changed"]
    assert s["unchanged"] >= 0.5, s["changed"]


def test_unrelated_answers_that_were_right_stay_right(probes_after):
    # What changes in the probes is mostly wording at near-ties; a right answer turned wrong is what a user
    # notices. Seed 7 keeps all 9; over seeds 1 and 3-8, 59 of 63 stayed right: the Mona Lisa answer stopped
    # naming the painter within 20 tokens on seeds 3-5, France's capital went on seed 5 (docs/results/notes.md).
    s = probes_after
    assert s["right_before"] >= 8
    assert s["right_kept"] == 1.0, s["right_lost"]


def test_ledger_records_every_fact_and_event(wake):
    mem = wake["mem"]
    rows = {r["id"]: r for r in mem.facts()}
    assert set(wake["ids"]) <= set(rows)
    assert all(rows[i]["status"] == ACTIVE and rows[i]["scale"] == 1.0 for i in wake["ids"])
    kinds = [e["kind"] for e in mem.history(wake["ids"][0])]
    assert kinds[0] == "received" and "active" in kinds
    assert mem.version >= 2


def test_repeating_a_fact_is_a_no_op(wake):
    mem = wake["mem"]
    v = mem.version
    before = _edited_weights(mem)
    assert mem.remember([wake["facts"][0]]) == [wake["ids"][0]]
    assert mem.version == v
    assert all(torch.equal(before[l], w) for l, w in _edited_weights(mem).items())


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"subject": "Nora Quill", "relation": "lives in"}, "object"),
        ({"subject": "Nora Quill", "relation": "lives in", "object": ""}, "object"),
        ({"subject": "Nora Quill", "relation": "lives in", "object": "Rome", "prompt": "She lives in"}, "prompt"),
        ({"subject": "Nora Quill", "relation": "lives in", "object": "R" * 10_000}, "object"),
        ({"subject": b"Nora", "relation": "lives in", "object": "Rome"}, "subject"),
    ],
)
def test_bad_facts_are_refused_and_change_nothing(wake, bad, field):
    mem = wake["mem"]
    v, n, before = mem.version, len(mem.facts()), _edited_weights(mem)
    good = Fact(subject="Nora Quill", relation="lives in", object="Rome")
    with pytest.raises(FactError, match=field):
        mem.remember([good, bad])
    assert mem.version == v
    assert len(mem.facts()) == n
    assert all(torch.equal(before[l], w) for l, w in _edited_weights(mem).items())


def test_reopening_restores_the_same_weights(wake):
    mem = wake["mem"]
    # `mem` holds the home for writing: a second opener reads what is published, read-only
    with pytest.raises(RuntimeError, match="open for writing by another process"):
        Memory.open(wake["home"])
    again = Memory.open(wake["home"], read_only=True)
    try:
        with again.reading():
            arch, layers = mem.editor.arch, mem.editor.layers
            mine = _edited_weights(mem)
            theirs = {l: arch.down_proj(again.model, l).weight.detach().clone() for l in layers}
        assert all(torch.equal(mine[l], theirs[l]) for l in mine)
        assert again.version == mem.version
    finally:
        again.close()


def test_forget_reverts_one_fact_exactly_then_all(wake):
    mem = wake["mem"]
    victim, victim_id = wake["facts"][0], wake["ids"][0]
    mem.forget(victim_id)
    row = mem.ledger.get(victim_id)
    assert row["status"] == "forgotten"
    assert victim.object.lower() not in mem.ask(victim.questions()[0]).lower()
    # the weights are exactly base + the remaining edits
    expect = mem.editor.store.materialise(mem.editor.active())
    assert all(torch.equal(expect[l], w) for l, w in _edited_weights(mem).items())
    # the others are still there
    assert recall(mem.model, mem.tokenizer, wake["facts"][1:4])["chat"] >= 2 / 3
    for fid in wake["ids"][1:]:
        mem.forget(fid)
    diff = max((w - wake["base"][l]).abs().max().item() for l, w in _edited_weights(mem).items())
    assert diff <= 1e-6
    assert probe_answers(mem.model, mem.tokenizer) == wake["probes"]


def test_crash_mid_edit_is_recovered_and_the_fact_applied_once(tmp_path, open_memory):
    mem = open_memory("crash")
    facts = fictional_facts(2, seed=11)
    mem.remember(facts[:1])
    # what a kill between "pending" and "active" leaves: a pending row and an edit file nobody committed
    fid = facts[1].fact_id()
    with mem.ledger.transaction():
        mem.ledger.add_fact(fid, facts[1], PENDING)
    mem.editor.store.save_edit(fid, mem.editor.store.load_edit(facts[0].fact_id()))
    mem.close()
    again = open_memory("crash")
    assert any("interrupted" in (e.get("reason") or "") for e in again.history(fid))
    assert again.wait([fid], timeout=300)
    assert again.ledger.get(fid)["status"] == ACTIVE
    commits = [e for e in again.history(fid) if e["kind"] == ACTIVE and e.get("version_added")]
    assert len(commits) == 1
    expect = again.editor.store.materialise(again.editor.active())
    assert all(torch.equal(expect[l], w) for l, w in _edited_weights(again).items())
    assert facts[1].object.lower() in again.ask(facts[1].questions()[0]).lower()


def test_several_facts_about_one_person_are_all_recalled(open_memory):
    # every raw prompt about a person shares the key at the end of the name: two facts in one
    # batch, then a third in a later one, must each keep their own object
    mem = open_memory("person")
    facts = same_subject_facts(1, 3, seed=3)
    assert len({f.subject for f in facts}) == 1 and len({f.object for f in facts}) == 3
    mem.remember(facts[:2])
    first = recall(mem.model, mem.tokenizer, facts[:2])
    assert first["raw"] == 1.0 and first["chat"] == 1.0, first["misses"]
    mem.remember(facts[2:])
    after = recall(mem.model, mem.tokenizer, facts)
    assert after["raw"] == 1.0 and after["chat"] == 1.0, after["misses"]


def test_people_who_share_a_family_name_keep_their_own_facts_and_can_be_forgotten(open_memory):
    # share_last_word edits Thea and Elio Albescu as one subject: Elio's edit fits Thea's answers
    # again beside his own, so forgetting Thea must edit Elio again without her
    from agentmem.edit.config import MemitConfig

    mem = open_memory("family", memit=MemitConfig(share_last_word=True))
    thea = Fact(subject="Thea Albescu", relation="lives in", object="Oslo")
    elio = Fact(subject="Elio Albescu", relation="lives in", object="Kyoto")
    mem.remember([thea])
    mem.remember([elio])
    both = recall(mem.model, mem.tokenizer, [thea, elio])
    assert both["raw"] == 1.0 and both["chat"] == 1.0, both["misses"]
    mem.forget(thea.fact_id())
    gone = recall(mem.model, mem.tokenizer, [thea])
    assert gone["raw"] == 0 and gone["chat"] == 0, gone
    kept = recall(mem.model, mem.tokenizer, [elio])
    assert kept["raw"] == 1.0 and kept["chat"] == 1.0, kept["misses"]
    assert any(e["kind"] == "re-edited" for e in mem.history(elio.fact_id()))
    expect = mem.editor.store.materialise(mem.editor.active())
    assert all(torch.equal(expect[l], w) for l, w in _edited_weights(mem).items())


def test_forgetting_the_older_of_two_facts_about_a_person_removes_it(open_memory):
    # the later edit re-fitted the older fact's answers beside its own: forget must not leave them there
    mem = open_memory("older")
    older, newer = same_subject_facts(1, 2, seed=5)
    mem.remember([older])
    mem.remember([newer])
    assert recall(mem.model, mem.tokenizer, [older, newer])["chat"] == 1.0
    mem.forget(older.fact_id())
    gone = recall(mem.model, mem.tokenizer, [older])
    assert gone["raw"] == 0 and gone["chat"] == 0 and gone["paraphrase"] == 0, gone
    kept = recall(mem.model, mem.tokenizer, [newer])
    assert kept["raw"] == 1.0 and kept["chat"] == 1.0, kept["misses"]
    assert any(e["kind"] == "re-edited" for e in mem.history(newer.fact_id()))
    expect = mem.editor.store.materialise(mem.editor.active())
    assert all(torch.equal(expect[l], w) for l, w in _edited_weights(mem).items())
