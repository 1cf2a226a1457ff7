"""A short reply to the assistant's question about the user is a fact ("Where do you live?" "Lisbon."): the question
names the relation, the reply its value; a reply that is no answer, or a question about nothing known, gives none."""

import pytest

from agentmem.extract import RuleExtractor, extract_messages
from agentmem.extract.answers import answered


@pytest.mark.parametrize("question, reply, fact", [
    ("Where do you live?", "Lisbon.", ("User u1", "lives in", "Lisbon")),
    ("Nice to meet you! Where do you live?", "In Lisbon, near the river.", ("User u1", "lives in", "Lisbon")),
    ("What is your dog called?", "Biscuit, he is a beagle.", ("User u1", "owns a dog named", "Biscuit")),
    ("Got it. And what is your dog called?", "Biscuit!", ("User u1", "owns a dog named", "Biscuit")),
    ("Great, where do you live?", "Lisbon", ("User u1", "lives in", "Lisbon")),
    ("What do you do for a living?", "nurse", ("User u1", "works as", "nurse")),
    ("Where do you work?", "at Siemens", ("User u1", "works at", "Siemens")),
    ("What's your favourite colour?", "green!", ("User u1", "has a favourite color:", "green")),
    ("What is your name?", "Dana", ("User u1", "is named", "Dana")),
    ("Where were you born?", "Porto, Portugal", ("User u1", "was born in", "Porto")),
    ("When is your birthday?", "May 3rd", ("User u1", "was born on", "May 3rd")),
    # one of the user's people, as "my sister is called Ilona" is stored
    ("What is your sister's name?", "Ilona", ("User u1", "has a sister named", "Ilona")),
    ("What is your aunt's name?", "Wilhelmina Fairweather", ("User u1", "has an aunt named", "Wilhelmina Fairweather")),
])
def test_a_short_reply_answers_the_assistants_question(question, reply, fact):
    assert [(f.subject, f.relation, f.object) for f in answered(question, reply, "u1")] == [fact]


@pytest.mark.parametrize("question, reply", [
    ("Where do you live?", "I'd rather not say."),
    ("Where do you live?", "why do you ask?"),
    ("Where do you live?", "no idea"),
    ("Where do you live?", "yes"),
    ("What is your dog called?", "I don't have a dog"),
    ("Where do you live?", "not telling you"),
    ("Where do you live?", "I live in a small flat with my two cats and a parrot near the station"),
    ("How are you today?", "Fine thanks"),  # asks nothing known of the user
    ("Do you like it?", "Lisbon"),
    ("Where does Ann live?", "Lisbon"),  # about someone else
    ("Thanks for telling me.", "Lisbon"),  # no question at all
    (None, "Lisbon"),
])
def test_a_reply_that_is_no_answer_or_to_no_question_about_the_user_gives_nothing(question, reply):
    assert answered(question, reply, "u1") == []


def test_in_a_conversation_each_reply_answers_the_question_just_before_it():
    conv = [{"role": "assistant", "content": "Where do you live?"}, {"role": "user", "content": "Lisbon."},
            {"role": "assistant", "content": "What is your dog called?"}, {"role": "user", "content": "Biscuit!"},
            {"role": "user", "content": "Rome."},  # a second turn answers nothing: the question was answered
            {"role": "assistant", "content": "What do you do for a living?"},
            {"role": "user", "content": "I'm a nurse."}]  # a statement: the extractor's
    assert [(f.relation, f.object) for f in extract_messages(conv, RuleExtractor(), "u1")] == [
        ("lives in", "Lisbon"), ("owns a dog named", "Biscuit"), ("works as", "a nurse")]
