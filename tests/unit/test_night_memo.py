"""What a model state says to the replay questions and as its own text is asked once per process and state:
a night after others on the same state asks only what none of them asked, gets the same answers a night alone
would, and states never share what they said."""

import pytest

from agentmem.sleep import train
from agentmem.sleep.train import REPLAY_QUESTIONS, Said


@pytest.fixture
def asked(monkeypatch):
    """Greedy answers of a model named by a string; every question the model was asked, recorded."""
    questions = []

    def chat_many(model, tok, qs, max_new_tokens=48):
        questions.extend(qs)
        return [f"{model} answers {q}" for q in qs]

    monkeypatch.setattr(train.generate, "chat_many", chat_many)
    monkeypatch.setattr(train, "sample_texts", lambda model, tok, n, seed=0: [f"{model} text {i}/{seed}" for i in range(n)])
    monkeypatch.setattr(Said, "_by_state", {})
    return questions


def test_a_later_night_asks_only_what_no_night_on_its_state_asked(asked):
    alone = Said().replay("base", None, 10)
    asked.clear()
    assert Said.of(("base", 0)).replay("base", None, 10) == alone
    assert Said.of(("base", 0)).replay("base", None, 100)[:10] == alone
    assert Said.of(("base", 0)).replay("base", None, 40) == Said().replay("base", None, 40)
    assert len(asked) == 10 + 90 + 40  # the last: the lone night's own
    everything = Said.of(("base", 0)).replay("base", None, 10_000)
    assert [q for q, _ in everything] == REPLAY_QUESTIONS


def test_states_are_kept_apart_and_only_the_newest_few(asked):
    Said.of(("home-a", 3)).replay("version 3 of a", None, 5)
    assert Said.of(("home-b", 3)).replay("version 3 of b", None, 5)[0][1].startswith("version 3 of b")
    assert Said.of(("home-a", 3)).texts("version 3 of a", None, 2, 0) == ["version 3 of a text 0/0",
                                                                          "version 3 of a text 1/0"]
    assert Said.of(("home-a", 3)).texts("version 4 of a", None, 2, 0)[0].startswith("version 3 of a")
    for v in range(Said.KEPT):
        Said.of(("home-a", 10 + v))
    assert ("home-a", 3) not in Said._by_state and len(Said._by_state) == Said.KEPT
    assert Said.of(None) is not Said.of(None)  # a night that names no state keeps nothing
