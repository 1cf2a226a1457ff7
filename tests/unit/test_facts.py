"""Fact validation: bad input is refused with a message naming the field."""

import json

import pytest

from agentmem.facts import Fact, FactError, canonical_question, load_jsonl
from agentmem.facts.perspective import to_third_person

GOOD = {"subject": "Aria Castellanos", "relation": "lives in", "object": "Portland"}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"subject": None}, "subject"),
        ({"object": ""}, "object"),
        ({"object": "   "}, "object"),
        ({"object": "x" * 10_000}, "object"),
        ({"relation": 42}, "relation"),
        ({"object": ["Portland"]}, "object"),
        ({"prompt": "lives in"}, "prompt"),
        ({"question": "Where does she live?"}, "question"),
        ({"subject": "Aria\x00Castellanos"}, "subject"),
        ({"expires": "next week"}, "expires"),
        ({"expires": -5}, "expires"),
        ({"expires": True}, "expires"),
    ],
)
def test_bad_fact_names_the_field(change, field):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(FactError) as e:
        Fact.parse(data)
    assert field in str(e.value)


def test_an_expiry_is_unix_seconds_or_iso_8601_and_utc_without_a_zone():
    assert Fact.parse({**GOOD, "expires": "2027-01-02"}).expires == 1798848000.0
    assert Fact.parse({**GOOD, "expires": "2027-01-02T01:00:00+01:00"}).expires == 1798848000.0
    assert Fact.parse({**GOOD, "expires": 1798848000}).to_json()["expires"] == 1798848000.0
    # the same statement whenever it ends
    assert Fact.parse({**GOOD, "expires": 1798848000}).fact_id() == Fact.parse(GOOD).fact_id()


def test_missing_field_is_named():
    with pytest.raises(FactError, match="object"):
        Fact.parse({"subject": "A B", "relation": "lives in"})


def test_not_an_object():
    with pytest.raises(FactError, match="JSON object"):
        Fact.parse(["Aria", "lives in", "Portland"])


def test_derived_phrasings():
    f = Fact.parse(GOOD)
    assert f.completion_prompt == "Aria Castellanos lives in"
    assert f.questions()[0] == "Where does Aria Castellanos live?"
    assert f.paraphrases() and all(q not in f.questions() for q in f.paraphrases())
    custom = Fact.parse({**GOOD, "prompt": "Home for {subject} is", "question": "Where is home for Aria Castellanos?"})
    assert custom.completion_prompt == "Home for Aria Castellanos is"
    assert custom.questions()[0] == "Where is home for Aria Castellanos?"


def test_ids_are_stable_and_distinct():
    a, b = Fact.parse(GOOD), Fact.parse(GOOD)
    assert a.fact_id() == b.fact_id()
    assert Fact.parse({**GOOD, "object": "Oslo"}).fact_id() != a.fact_id()
    assert Fact.parse({**GOOD, "user_id": "u2"}).fact_id() != a.fact_id()


def test_jsonl_errors_carry_line_numbers(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "object": ""}) + "\n")
    with pytest.raises(FactError, match=r":2: .*object"):
        load_jsonl(p)
    p.write_text("{not json\n")
    with pytest.raises(FactError, match=":1: not valid JSON"):
        load_jsonl(p)


def test_an_edit_asks_the_facts_question_and_the_open_question():
    from agentmem.edit.requests import to_request
    from agentmem.edit.config import MemitConfig

    f = Fact.parse(GOOD)
    cfg = MemitConfig(open_question="What do you know about {s}?")
    req = to_request(f, cfg)
    assert req.questions == [("Where does Aria Castellanos live?", "Aria Castellanos lives in Portland."),
                             ("What do you know about Aria Castellanos?", "Aria Castellanos lives in Portland.")]
    # the paraphrases that measure generalisation stay unseen by the edit
    assert not {q for q, _ in req.questions} & set(f.paraphrases())
    user = Fact.parse({"subject": "User u1", "relation": "has a favourite color:", "object": "teal"})
    assert user.attribute == "favourite color"
    own, open_q = to_request(user, cfg).questions
    assert own[1] == "teal." and open_q[1] == user.statement
    assert [q for q, _ in to_request(f, MemitConfig()).questions] == f.questions()


@pytest.mark.parametrize("bad", ["What do you know?", "Tell me about {s}", "What about {s} and {x}?", "{}?"])
def test_an_open_question_without_the_subject_is_refused(bad):
    from pydantic import ValidationError

    from agentmem.edit.config import MemitConfig

    with pytest.raises(ValidationError, match="open_question"):
        MemitConfig(open_question=bad)


@pytest.mark.parametrize("asked, keyed", [
    ("What diet do I follow?", "What is the diet of User u1?"),
    ("What language don't I speak?", "What is the language gap of User u1?"),
    ("What language do I not speak?", "What is the language gap of User u1?"),
    ("What language do I speak?", "What is the language of User u1?"),
    ("What don't I eat?", "What is the avoided food of User u1?"),
    ("What am I learning?", "What is the new skill of User u1?"),
    ("Who is my aunt?", "What is the aunt of User u1?"),
])
def test_questions_about_the_new_relations_reach_their_keys(asked, keyed):
    assert canonical_question(to_third_person(asked, "u1")) == keyed
