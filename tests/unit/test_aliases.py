"""People the user names and their aliases: "my aunt" is asked about, and stated about, by her name; questions
about who she is, relations without an alias and anyone else's people are left as they are."""

import pytest

from agentmem.extract import RuleExtractor
from agentmem.extract.people import alias_word, naming, resolve, resolve_facts
from agentmem.facts import Fact, canonical_question
from agentmem.facts.perspective import to_third_person

AUNT = {"aunt": "Wilhelmina Fairweather"}


def asked(question: str, aliases: dict[str, str]) -> str:
    """What Memory.ask puts to the model."""
    return canonical_question(to_third_person(resolve(question, aliases), "u1"))


def said(text: str, aliases: dict[str, str]) -> list[tuple[str, str, str]]:
    """What Memory.observe keeps of a user turn."""
    return [(f.subject, f.relation, f.object) for f in resolve_facts(RuleExtractor().extract(text, "u1"), aliases)]


@pytest.mark.parametrize("relation, word", [
    ("has an aunt named", "aunt"), ("has a neighbour named", "neighbour"), ("has a mother named", "mother"),
    ("is married to", "spouse"), ("is friends with", None), ("owns a dog named", None), ("lives in", None),
])
def test_the_relations_that_name_one_person_give_the_word_of_their_alias(relation, word):
    assert alias_word(relation) == word


def test_only_a_fact_about_the_user_names_one_of_their_people():
    assert naming(Fact(subject="User u1", relation="has an aunt named", object="Ann Lee", user_id="u1")) == (
        "aunt", "Ann Lee")
    assert naming(Fact(subject="User u1's aunt", relation="has a son named", object="Bo Lee", user_id="u1")) is None
    assert naming(Fact(subject="User u2", relation="has an aunt named", object="Ann Lee", user_id="u1")) is None


@pytest.mark.parametrize("question, rewritten", [
    ("What does my aunt do?", "What does Wilhelmina Fairweather do?"),
    ("what does my auntie do?", "what does Wilhelmina Fairweather do?"),
    ("Where does my aunt Wilhelmina live?", "Where does Wilhelmina Fairweather live?"),
    ("Where does my aunt Wilhelmina Fairweather live?", "Where does Wilhelmina Fairweather live?"),
    ("Is my aunt English?", "Is Wilhelmina Fairweather English?"),
    ("Does my aunt live near me?", "Does Wilhelmina Fairweather live near me?"),
    ("What is my aunt\u2019s job?", "What is Wilhelmina Fairweather's job?"),
])
def test_a_mention_of_an_aliased_relation_is_put_as_the_persons_name(question, rewritten):
    assert resolve(question, AUNT) == rewritten


def test_questions_by_relation_and_by_name_are_asked_alike():
    by_name = "What does Wilhelmina Fairweather do for a living?"
    assert asked("What is my aunt's job?", AUNT) == asked("What is Wilhelmina Fairweather's job?", {}) == by_name
    assert asked("Where does my aunt live?", AUNT) == "Where does Wilhelmina Fairweather live?"


@pytest.mark.parametrize("question", [
    "Who is my aunt?", "Who's my aunt?", "What is my aunt's name?", "What's my aunt's full name?",
    "What is my aunt called?",
])
def test_a_question_about_who_the_person_is_is_left_for_the_weights(question):
    assert resolve(question, AUNT) == question
    assert asked(question, AUNT) == asked(question, {})


@pytest.mark.parametrize("question", [
    "Where does my aunt Hilde live?",  # another aunt, maybe
    "What do my aunts do?", "What does my uncle do?", "What does your aunt do?", "What does Tom's aunt do?",
])
def test_other_people_and_relations_without_an_alias_are_left_alone(question):
    assert resolve(question, AUNT) == question


def test_without_aliases_questions_are_asked_as_before():
    assert asked("What does my aunt do for a living?", {}) == "What is the job of User u1's aunt?"


def test_the_users_words_for_a_relation_reach_its_alias():
    aliases = {"mother": "Hilde Brandt", "spouse": "Anna Berg", "neighbour": "Corentin Dubois"}
    assert resolve("Where does my mum live? And my wife?", aliases) == "Where does Hilde Brandt live? And Anna Berg?"
    assert resolve("What does my neighbor Corentin do?", aliases) == "What does Corentin Dubois do?"
    assert resolve("where does my older neighbour corentin live", aliases) == "where does Corentin Dubois live"


def test_someone_named_by_a_first_name_is_asked_about_by_the_relation():
    neighbour = {"neighbour": "Corentin"}
    assert resolve("What does my neighbour Corentin do?", neighbour) == "What does my neighbour do?"
    assert asked("Where does my neighbour Corentin live?", neighbour) == "What is the home city of User u1's neighbour?"
    assert resolve("What does my neighbour do?", neighbour) == "What does my neighbour do?"


def test_what_the_user_says_of_a_person_named_in_full_is_about_them_by_name():
    aliases = {}
    assert said("My aunt Wilhelmina Fairweather works as a beekeeper.", aliases) == [
        ("User u1", "has an aunt named", "Wilhelmina Fairweather"),
        ("Wilhelmina Fairweather", "works as", "a beekeeper")]
    assert aliases == AUNT
    assert said("My aunt moved to Oslo.", aliases) == [("Wilhelmina Fairweather", "lives in", "Oslo")]
    assert said("My aunt's dog is called Rex.", aliases) == [("Wilhelmina Fairweather", "owns a dog named", "Rex")]
    assert said("My uncle moved to Oslo.", aliases) == [("User u1's uncle", "lives in", "Oslo")]


def test_a_person_named_in_one_turn_is_found_by_the_relation_in_the_same_turn():
    aliases = {}
    assert said("My aunt lives in Oslo. Her name is Wilhelmina Fairweather.", aliases) == [
        ("Wilhelmina Fairweather", "lives in", "Oslo"), ("User u1", "has an aunt named", "Wilhelmina Fairweather")]


def test_naming_the_relation_again_rebinds_the_alias():
    aliases = dict(AUNT)
    assert said("My aunt is actually called Hilde Brandt.", aliases) == [
        ("User u1", "has an aunt named", "Hilde Brandt")]
    assert aliases == {"aunt": "Hilde Brandt"}
    assert said("My aunt moved to Bergen.", aliases) == [("Hilde Brandt", "lives in", "Bergen")]


def test_her_first_name_after_the_relation_restates_the_full_name():
    aliases = dict(AUNT)
    assert said("My aunt Wilhelmina works as a beekeeper.", aliases) == [
        ("User u1", "has an aunt named", "Wilhelmina Fairweather"),
        ("Wilhelmina Fairweather", "works as", "a beekeeper")]
    assert aliases == AUNT


def test_a_first_name_keeps_the_relation_as_the_subject():
    aliases = {}
    assert said("My neighbour Corentin works as a baker.", aliases) == [
        ("User u1", "has a neighbour named", "Corentin"), ("User u1's neighbour", "works as", "a baker")]
    assert said("My neighbour moved to Oslo.", aliases) == [("User u1's neighbour", "lives in", "Oslo")]
