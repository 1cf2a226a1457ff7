"""A question put as the memory it asks about was keyed (serving/keyed.py), on a real ledger: what `Memory.ask` and
every chat request to `agentmem serve` put to the model."""

import pytest

from agentmem.facts import Fact
from agentmem.serving.keyed import keyed, keyed_conversation
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import Ledger


@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger.open(Layout(tmp_path))
    facts = [Fact(subject="User u1", relation="lives in", object="Lisbon", user_id="u1"),
             Fact(subject="User u1", relation="has an aunt named", object="Ann Lee", user_id="u1"),
             Fact(subject="Ann Lee", relation="works as", object="a beekeeper", user_id="u1")]
    with ledger.transaction():
        for f in facts:
            ledger.add_fact(f.fact_id(), f, "active")
        ledger.bind_alias("u1", "aunt", "Ann Lee", facts[1].fact_id())
    yield ledger
    ledger.close()


@pytest.mark.parametrize("user, question, asked", [
    ("u1", "Where do I live?", "What is the home city of User u1?"),
    ("u1", "What does my aunt do?", "What does Ann Lee do?"),
    ("u1", "What is my aunt's job?", "What does Ann Lee do for a living?"),
    # nothing of u2's is known, so the question stays the user's own, never "User u2"
    ("u2", "Where do I live?", "Where do I live?"),
    ("u1", "What is my dog called?", "What is my dog's name?"),
    ("u1", "What is the capital of France?", "What is the capital of France?"),
    # the shared memory: only a relation's other wording changes
    (None, "What is Ann's dog called?", "What is the name of Ann's dog?"),
    (None, "Where do I live?", "Where do I live?"),
])
def test_a_question_is_asked_as_its_users_memory_was_keyed(ledger, user, question, asked):
    assert keyed(ledger, question, user) == asked
    assert keyed(ledger, asked, user) == asked  # asking it again as keyed changes nothing (Memory, then the server)


def test_only_the_users_last_turn_of_a_conversation_is_keyed(ledger):
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where do I live?"}]
    assert keyed_conversation(ledger, conv, "u1") == [conv[0], {"role": "user", "content": "What is the home city of User u1?"}]
    assert conv[1]["content"] == "Where do I live?"  # the caller's list is left as it was
    ends_with_assistant = [*conv, {"role": "assistant", "content": "Where do I live?"}]
    assert keyed_conversation(ledger, ends_with_assistant, "u1") is ends_with_assistant
    parts = [{"role": "user", "content": [{"type": "text", "text": "Where do I live?"}]}]
    assert keyed_conversation(ledger, parts, "u1") is parts
