"""Per-user nights on the real bundled model: each user's facts are consolidated into that user's own adapter, each
night gated and published on its own; a fact forgotten from a consolidated memory goes at once, and the user's
night adapter is trained again without it in the background."""

import json

from agentmem import Fact
from agentmem.sleep import night as nights
from agentmem.sleep.train import Example
from agentmem.storage.published import newest_user, trained_on

from checks import SHORT_NIGHT, agentmem

CITY = {"u1": "Lisbon", "u2": "Nairobi"}
JOB = {"u1": "nurse", "u2": "pilot"}
# these nights test who is served what, not how well a night learns
SHORT = SHORT_NIGHT.model_copy(update={"epochs": 3})


def said(text):
    return [{"role": "user", "content": text}, {"role": "assistant", "content": "Nice to know!"}]


def answers(mem, user):
    """(city answer, job answer) as `user` asks about themselves."""
    return (mem.ask("Where do I live?", user_id=user, max_new_tokens=16).lower(),
            mem.ask("What do I do for a living?", user_id=user, max_new_tokens=16).lower())


def test_each_users_night_is_published_on_its_own_and_a_forgotten_fact_leaves_their_night_at_once(
        open_memory, monkeypatch):
    mem = open_memory(sleep=SHORT)
    for u in CITY:
        mem.observe(said(f"I live in {CITY[u]}. I work as a {JOB[u]}."), user_id=u)
    assert mem.wait(timeout=1200)
    before = {u: newest_user(mem.layout, mem.ledger, u) for u in CITY}

    # u1's night trains at an absurd rate: its gate must fail, and u2's night must not care
    train = nights.train_adapter

    def u1_goes_wrong(model, tok, examples, cfg, *args, **kwargs):
        if any("User u1" in ex.question for ex in examples):
            cfg = cfg.model_copy(update={"learning_rate": 5.0, "epochs": 1})
        return train(model, tok, examples, cfg, *args, **kwargs)

    monkeypatch.setattr(nights, "train_adapter", u1_goes_wrong)
    report = mem.sleep()
    monkeypatch.setattr(nights, "train_adapter", train)
    json.dumps(report)  # the contract: a night's report, the users' nights in it, is JSON
    assert report["outcome"] == "nothing to consolidate"  # no shared facts: the shared base is untouched
    assert report["users"]["u1"]["outcome"].startswith("rolled back"), report["users"]
    assert report["users"]["u2"]["outcome"] == "published", report["users"]
    after = {u: newest_user(mem.layout, mem.ledger, u) for u in CITY}
    assert after["u1"] == before["u1"] and after["u1"].sleep is None  # nothing served to u1 changed
    assert after["u2"].version == before["u2"].version + 1 and after["u2"].sleep is not None
    assert sorted(trained_on(after["u2"].sleep)) == sorted(r["id"] for r in mem.facts(user_id="u2"))
    for u in CITY:
        city, job = answers(mem, u)
        assert CITY[u].lower() in city and JOB[u] in job, (u, city, job)
        other = "u2" if u == "u1" else "u1"
        assert CITY[other].lower() not in city and JOB[other] not in job
    assert CITY["u2"].lower() not in mem.ask("Where does User u2 live?", max_new_tokens=16).lower()
    # a user's night report names no value of theirs
    (saved,) = mem.layout.user_sleep_reports("u2").glob("night-*.json")
    assert "Nairobi" not in saved.read_text() and json.loads(saved.read_text())["outcome"] == "published"
    # what an operator sees of each user's last night, without the model
    for u, outcome in (("u1", "rolled back"), ("u2", "published")):
        seen = json.loads(agentmem("status", "--user", u, "--json", home=mem.home).stdout)
        assert seen["night"]["outcome"].startswith(outcome), seen
        assert sum(seen["facts"].values()) == len(mem.facts(user_id=u)), seen

    # a fact told after the night is edited through the night adapter it will be served with
    mem.observe(said("My favourite colour is teal."), user_id="u2")
    assert mem.wait(timeout=600)
    assert "teal" in mem.ask("What is my favourite colour?", user_id="u2", max_new_tokens=16).lower()
    assert newest_user(mem.layout, mem.ledger, "u2").sleep is not None

    # forgetting a fact the night adapter learned takes the adapter out with it, in the same version
    city_id = next(r["id"] for r in mem.facts(user_id="u2") if Fact.parse(r["fact"]).object == "Nairobi")
    mem.forget(city_id)
    gone = newest_user(mem.layout, mem.ledger, "u2")
    assert gone.sleep is None
    assert all(r["scale"] == 1.0 for r in mem.facts(user_id="u2") if r["status"] == "active")
    city, job = answers(mem, "u2")
    assert "nairobi" not in city and "pilot" in job, (city, job)
    # ... and a night of that user trains it again without the fact, in the background
    assert mem._night is not None
    mem._night.join(timeout=1200)
    again = newest_user(mem.layout, mem.ledger, "u2")
    assert mem.ledger.user_version("u2")["kind"] == "sleep" and again.sleep is not None
    assert city_id not in trained_on(again.sleep)
    city, job = answers(mem, "u2")
    assert "nairobi" not in city and "pilot" in job, (city, job)


def test_a_users_fact_their_night_adapter_breaks_is_edited_again_through_it(open_memory, monkeypatch):
    mem = open_memory(sleep=SHORT)
    mem.observe(said(f"I live in {CITY['u1']}. I work as a {JOB['u1']}."), user_id="u1")
    assert mem.wait(timeout=1200)
    train = nights.train_adapter

    def teaches_another_city(model, tok, examples, cfg, *args, **kwargs):
        """The night adapter learns the wrong city, as if its training pulled the answer elsewhere."""
        examples = [ex if ex.kind != "fact" or CITY["u1"] not in ex.answer else
                    Example(ex.question, ex.answer.replace(CITY["u1"], "Oslo"), ex.kind) for ex in examples]
        return train(model, tok, examples, cfg.model_copy(update={"learning_rate": 3e-3, "epochs": 5}), *args,
                     **kwargs)

    monkeypatch.setattr(nights, "train_adapter", teaches_another_city)
    report = mem.sleep("u1")
    city_id = next(r["id"] for r in mem.facts(user_id="u1") if Fact.parse(r["fact"]).object == CITY["u1"])
    assert report["outcome"] == "published", report["outcome"]
    assert report["stages"][city_id]["recalled_alone"] is False
    repaired = report["repaired"]
    assert city_id in repaired["facts"] and repaired["recalled"] == len(repaired["facts"]), repaired
    city, job = answers(mem, "u1")
    assert CITY["u1"].lower() in city and "oslo" not in city and JOB["u1"] in job, (city, job)
    assert "re-edited" in [e["kind"] for e in mem.history(city_id)]
    assert CITY["u1"].lower() not in mem.ask("Where does User u1 live?", max_new_tokens=16).lower()
