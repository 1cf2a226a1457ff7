"""People the user names, on the real bundled model: their relation to the user is an alias in the ledger, so
questions by relation and by name reach the same facts, and what is said later of "my aunt" is about her."""

from agentmem.storage.ledger import ACTIVE, SUPERSEDED


def said(text):
    return [{"role": "user", "content": text}, {"role": "assistant", "content": "Nice to know!"}]


def triples(out):
    return {(f.subject, f.relation, f.object) for f in out}


def test_an_aunt_named_in_full_is_asked_about_by_relation_and_by_name(open_memory):
    mem = open_memory()
    out = mem.observe(said("My aunt Wilhelmina Fairweather works as a beekeeper."), user_id="u1")
    assert triples(out) == {("User u1", "has an aunt named", "Wilhelmina Fairweather"),
                            ("Wilhelmina Fairweather", "works as", "a beekeeper")}
    assert mem.ledger.aliases("u1") == {"aunt": "Wilhelmina Fairweather"} and mem.ledger.aliases("u2") == {}
    assert mem.wait(timeout=900)
    assert all(mem.ledger.get(f.id)["status"] == ACTIVE for f in out)
    assert "beekeeper" in mem.ask("What does my aunt do?", user_id="u1").lower()
    assert "beekeeper" in mem.ask("What is Wilhelmina Fairweather's job?", user_id="u1").lower()

    moved = mem.observe(said("My aunt moved to Oslo."), user_id="u1")
    assert triples(moved) == {("Wilhelmina Fairweather", "lives in", "Oslo")}
    assert mem.wait(timeout=900)
    assert "oslo" in mem.ask("Where does Wilhelmina Fairweather live?", user_id="u1").lower()
    assert "oslo" in mem.chat([{"role": "user", "content": "Where does my aunt live?"}], user_id="u1").lower()

    named = next(f for f in out if f.relation == "has an aunt named")
    renamed = mem.observe(said("My aunt is actually called Hilde Brandt."), user_id="u1")
    assert triples(renamed) == {("User u1", "has an aunt named", "Hilde Brandt")}
    assert mem.ledger.aliases("u1") == {"aunt": "Hilde Brandt"}
    assert mem.wait(timeout=900) and mem.ledger.get(named.id)["status"] == SUPERSEDED
    mem.forget(renamed[0].id)
    assert mem.ledger.aliases("u1") == {}
