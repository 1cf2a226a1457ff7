"""Per-user memory on the real bundled model: each user's facts are answered from that user's own adapter, and
no other user, nor a caller without a user, gets them by any phrasing; forgetting a user removes them at once."""

import json

import pytest
from sqlalchemy import update

from agentmem import Fact, FactError
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import ACTIVE, FACTS, REJECTED

CITY = {"u1": "Lisbon", "u2": "Nairobi", "u3": "Reykjavik"}
JOB = {"u1": "nurse", "u2": "pilot", "u3": "baker"}


def said(text):
    return [{"role": "user", "content": text}, {"role": "assistant", "content": "Nice to know!"}]


def probes(owner: str) -> list[str]:
    """Every way a caller might ask for `owner`'s city and job: first person, third person, the keyed form."""
    return ["Where do I live?", f"Where does User {owner} live?", f"What is the home city of User {owner}?",
            f"What is the profession of User {owner}?"]


def leaks(mem, owner: str, asker: str | None) -> list[tuple[str, str]]:
    """The (question, answer) pairs in which `asker` (None: no user) gets one of `owner`'s values."""
    found = []
    for q in probes(owner):
        if asker == owner:
            continue
        answer = mem.ask(q, user_id=asker, max_new_tokens=16)  # a leaked city or job comes first
        if CITY[owner].lower() in answer.lower() or JOB[owner] in answer.lower():
            found.append((q, answer))
    return found


@pytest.mark.full
def test_three_users_each_get_their_own_facts_and_never_another_users(open_memory, tmp_path):
    mem = open_memory()
    shared_version = mem.version
    before = {u: leaks(mem, u, None) for u in CITY}
    assert before == {u: [] for u in CITY}  # the unedited model says none of these values
    for u in CITY:
        out = mem.observe(said(f"I live in {CITY[u]}. I work as a {JOB[u]}."), user_id=u)
        assert {f.status for f in out} == {"queued"}, out
    assert mem.wait(timeout=1200)
    assert {f["status"] for f in mem.facts()} == {ACTIVE}

    for u in CITY:
        assert CITY[u].lower() in mem.ask("Where do I live?", user_id=u).lower()
        assert JOB[u] in mem.ask("What do I do for a living?", user_id=u).lower()
        assert CITY[u].lower() in mem.chat([{"role": "user", "content": "Where do I live?"}], user_id=u).lower()
        for asker in [*CITY, None]:
            assert leaks(mem, u, asker) == [], f"{asker} got {u}'s facts"
    # a personal question a user never answered is asked as they put it: no internal keyed phrasing comes back
    for u in CITY:
        assert f"user {u}" not in mem.ask("Where do I work?", user_id=u).lower()
    # the shared weights were never edited by a user's facts: only users' own versions were published
    assert mem.version == shared_version
    assert all(mem.ledger.latest_user_version(u) >= 1 for u in CITY)

    # a second process reading the home (no editor: the published adapters only) answers the same
    reader = open_memory("home", read_only=True)
    for u in CITY:
        assert CITY[u].lower() in reader.ask("Where do I live?", user_id=u).lower()
        assert leaks(reader, u, None) == []
    assert CITY["u1"].lower() not in reader.ask("Where do I live?", user_id="u2").lower()

    # a user cannot write into another user's keyed slot, nor can a fact for one user name another
    # (the rules extract nothing from this; a model extractor's fact would be refused: tests/unit/test_policy.py)
    out = mem.observe(said("User u1 lives in Berlin."), user_id="u2")
    assert all(f.status == REJECTED for f in out)
    with pytest.raises(FactError, match="another user's keyed identity"):
        mem.remember([Fact(subject="User u1", relation="lives in", object="Berlin", user_id="u2")])
    with pytest.raises(FactError, match="another user's keyed identity"):
        mem.remember([Fact(subject="User u1", relation="lives in", object="Berlin")])

    # forgetting u1 removes all of u1 at once; u2 and u3 are untouched
    layout = Layout(tmp_path / "home")
    u1_ids = [f["id"] for f in mem.facts(user_id="u1")]
    assert mem.forget_user("u1") == len(u1_ids) == 2
    assert CITY["u1"].lower() not in mem.ask("Where do I live?", user_id="u1").lower()
    assert JOB["u1"] not in mem.ask("What do I do for a living?", user_id="u1").lower()
    assert mem.facts(user_id="u1") == [] and not layout.user_dir("u1").exists()
    assert not any(layout.edit_file(fid).exists() for fid in u1_ids)
    assert CITY["u1"].lower() not in reader.ask("Where do I live?", user_id="u1").lower()
    for u in ("u2", "u3"):
        assert CITY[u].lower() in mem.ask("Where do I live?", user_id=u).lower()
        assert JOB[u] in reader.ask("What do I do for a living?", user_id=u).lower()


def test_a_users_fact_replaced_and_forgotten_changes_only_that_users_adapter(open_memory):
    mem = open_memory()
    mem.remember([Fact(subject="User u1", relation="lives in", object="Lisbon", user_id="u1"),
                  Fact(subject="User u2", relation="lives in", object="Nairobi", user_id="u2")])
    [moved] = mem.remember([Fact(subject="User u1", relation="lives in", object="Reykjavik", user_id="u1")])
    assert "reykjavik" in mem.ask("Where do I live?", user_id="u1").lower()
    assert "nairobi" in mem.ask("Where do I live?", user_id="u2").lower()
    n = mem.ledger.latest_user_version("u1")
    mem.forget(moved)
    assert mem.ledger.latest_user_version("u1") == n + 1 and mem.ledger.user_version("u1")["adapter"] is None
    assert "reykjavik" not in mem.ask("Where do I live?", user_id="u1").lower()
    assert "nairobi" in mem.ask("Where do I live?", user_id="u2").lower()


def test_an_existing_homes_users_facts_move_into_their_own_memory(open_memory):
    mem = open_memory()
    # a home made before scopes: its users' facts edited into the shared weights, their rows in the shared scope
    legacy = [Fact(subject=f"User {u}", relation="lives in", object=c) for u, c in CITY.items()]
    with mem.writer.writing() as editor:
        editor.edit(legacy)
    with mem.ledger.engine.begin() as conn:
        for u, f in zip(CITY, legacy):
            conn.execute(update(FACTS).where(FACTS.c.id == f.fact_id())
                         .values(user_id=u, data=json.dumps({**f.to_json(), "user_id": u})))
    asked = {u: f"What is the home city of User {u}?" for u in CITY}
    assert "lisbon" in mem.ask(asked["u1"], user_id="u2").lower()  # what the move puts right
    shared = mem.version

    out = mem.move_to_users()
    assert out["moved"] == 3 and out["users"] == 3 and mem.version == shared + 1
    assert {(f["scope"], f["status"]) for f in mem.facts()} == {(u, ACTIVE) for u in CITY}
    for u, city in CITY.items():
        assert city.lower() in mem.ask(asked[u], user_id=u).lower()
        for other in [*CITY, None]:
            if other != u:
                assert city.lower() not in mem.ask(asked[u], user_id=other).lower(), (u, other)
    assert mem.move_to_users() == {"moved": 0, "users": 0}
