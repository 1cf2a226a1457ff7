"""The secrets screen: no fact that carries a secret stated in its message is accepted, and look-alikes pass."""

import json
import re

import pytest

from agentmem.extract.rules import RuleExtractor
from agentmem.facts import Fact
from agentmem.facts.policy import Policy, PolicyConfig, find_secrets, redact, secret_in

# (message, the secret's value): the rule extractor turns most into a fact that carries the value
SECRETS = [
    ("My favorite PIN is 4821", "4821"),
    ("Favourite password: hunter2", "hunter2"),
    ("My favourite passcode is 0000.", "0000"),
    ("fav pw: hunter2", "hunter2"),
    ("my fave pwd is Tr0ub4dor", "Tr0ub4dor"),
    ("My favourite passwords are hunter2 and swordfish", "swordfish"),
    ("My favourite pins are 1234 and 5678.", "5678"),
    ("My favourite PINs: 2468 and 1357", "1357"),
    ("my favourite pin code is 9999", "9999"),
    ("My favourite ATM pin is 3141", "3141"),
    ("My favourite bank PIN is 2718", "2718"),
    ("My sister's favourite PIN is 1357", "1357"),
    ("I love my PIN, 4821.", "4821"),
    ("My favourite door code is 7731", "7731"),
    ("the door code is 7731", "7731"),
    ("The code for the front door is 7731.", "7731"),
    ("my favourite alarm code is 2580", "2580"),
    ("Favourite gate code: #4821", "4821"),
    ("My favourite safe code is 1234", "1234"),
    ("my favourite garage code = 5678", "5678"),
    ("I love the code to the safe, 1234.", "1234"),
    ("Favourite combination: 12-34-56", "12-34-56"),
    ("My favourite lock combination is 10-20-30", "10-20-30"),
    ("My favourite combo is 7-14-21", "7-14-21"),
    ("I love my password hunter2", "hunter2"),
    ("My favourite wifi password is BlueFalcon77", "BlueFalcon77"),
    ('My favourite password is "open sesame"', "open sesame"),
    ("My favourite pw is P@ssw0rd!", "P@ssw0rd"),
    ("I like the number 4821, it is my PIN.", "4821"),
    ("My favorite number is 4821 because it is my bank PIN.", "4821"),
    ("I am a fan of 4821 which is my PIN", "4821"),
    ("I like 2580 as my phone unlock code", "2580"),
    ("My dog is called Biscuit99 and that is also my password.", "Biscuit99"),
    ("I have a dog named Rex2019, which is my wifi password too.", "Rex2019"),
    ("My cat is called Miso and Miso is my password.", "Miso"),
    ("I love hunter2, my password", "hunter2"),
    ("I love swordfish, which is my password.", "swordfish"),
    ("I love 7731, the door code.", "7731"),
    ("My favourite API key is sk-abc123def456ghi789", "sk-abc123def456ghi789"),
    ("My favourite token: ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abcdefghijklmnopqrstuvwxyz0123"),
    ("My favourite secret key is AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    ("My favourite private key is 0x4c0883a69102937d6231471b5dbb6204fe51296170827",
     "0x4c0883a69102937d6231471b5dbb6204fe51296170827"),
    ("My favourite seed phrase is abandon ability able about above absent absorb abstract",
     "abandon ability able about above absent absorb abstract"),
    ("My favourite passphrase is correct horse battery staple", "correct horse battery staple"),
    ("My favourite recovery phrase: apple banana cherry delta echo fox", "apple banana cherry delta echo fox"),
    ("My favourite card number is 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("I love my credit card 4111 1111 1111 1111", "4111 1111 1111 1111"),
    ("My favourite CVV is 737", "737"),
    ("My favourite IBAN is DE89 3704 0044 0532 0130 00", "DE89 3704 0044 0532 0130 00"),
    ("My favourite account number is 12345678", "12345678"),
    ("my fave routing number is 021000021", "021000021"),
    ("My favourite sort code is 12-34-56", "12-34-56"),
    ("My favourite SSN is 123-45-6789", "123-45-6789"),
    ("My favorite passport number is X12345678", "X12345678"),
    ("My favourite national insurance number is QQ123456C", "QQ123456C"),
    ("My favourite one-time code is 554433", "554433"),
    ("my favourite 2FA code is 123456", "123456"),
    ("My favourite OTP is 889900", "889900"),
    ("Favourite login code: 246810", "246810"),
    ("My favourite security answer is Fluffy", "Fluffy"),
    ("My favourite memorable word is Marmalade", "Marmalade"),
    ("I'm into Fluffy123, my security answer.", "Fluffy123"),
    ("My mother's maiden name is Smith", "Smith"),
]

# Messages that name no secret's value: every fact they make passes, and no secret is reported. A favourite
# or lucky number is not a secret; a passport, a password manager, or a PIN named without a value is not one.
LOOK_ALIKES = [
    "I was born on 1984-03-02.",
    "My birthday is 1990-12-25",
    "My birthday is 02/03/1984.",
    "I was born on 02.03.1984",
    "I was born on 2 March 1984.",
    "I speak Portuguese and I was born in 1990.",
    "My favourite number is 7.",
    "My favourite number is 4821.",
    "I have 2 cats.",
    "I ran 10 km this morning.",
    "I love pinball.",
    "I like pineapple on pizza.",
    "I play the keyboard.",
    "I am into token ring networks.",
    "I just renewed my passport and I live in Porto.",
    "I work at the Passport Office in Newport.",
    "I work at Tokenomics Ltd.",
    "I live in Pin Oak Village.",
    "I work at Pinewood Studios.",
    "I love my password manager.",
    "I love my password-protected diary.",
    "What is my PIN?",
    "I hate passwords.",
    "I work as a locksmith.",
    "My favourite code editor is Vim.",
    "My favourite combination is peanut butter and jelly.",
    "My sister is called Pin.",
    "My dog is called Secret.",
    "My cat is called Token.",
    "I love the band Passcode.",
    "I drive a Tesla Model 3.",
    "My favourite band is Blink-182.",
    "I work at 3M.",
    "I work as a security guard.",
    "My favourite movie is 2001: A Space Odyssey.",
    "I live in Flat 12, 34 Rose Lane.",
    "My favourite pin is my enamel cat pin.",
    "My favourite token is the top hat.",
    "I have an account at Barclays and I live in London.",
    "My favourite card game is poker.",
    "My favourite film is The Da Vinci Code.",
    "I studied at the Secret Garden Academy.",
    "My PINs never leave my head but I live in Rome.",
    "My password is the name of my dog and I live in Rome.",
]

# (message, the objects of the facts it keeps, the secret's value): one message, one secret, other facts
MIXED = [
    ("I live in Lisbon and my PIN is 4821.", {"Lisbon"}, "4821"),
    ("I live in Lisbon and my favourite PIN is 4821.", {"Lisbon"}, "4821"),
    ("I work at Acme and my favourite password is hunter2.", {"Acme"}, "hunter2"),
    ("I was born on 1984-03-02 and my favourite PIN is 4821.", {"1984-03-02"}, "4821"),
    ("My dog is called Rex and my password is Biscuit99.", {"Rex"}, "Biscuit99"),
    ("I live in Oslo; my alarm code is 0451", {"Oslo"}, "0451"),
]


def _bare(text: str) -> str:
    return re.sub(r"[\W_]", "", text.casefold())


def _holds(fact: Fact, value: str) -> bool:
    return _bare(value) in _bare(json.dumps(fact.to_json()))


def _screen(text: str, facts: list[Fact], policy: Policy | None = None) -> list[tuple[Fact, str | None]]:
    """What Memory.observe decides: a fact is refused for a secret of its message, or for one of its own."""
    policy = policy or Policy()
    return [(f, why or policy.screen_fact(f)) for f, why in zip(facts, policy.screen_secrets(text, facts))]


def test_the_tables_are_large_enough_and_make_facts():
    assert len(SECRETS) >= 40 and len(LOOK_ALIKES) >= 20
    carried = [text for text, value in SECRETS if any(_holds(f, value) for f in RuleExtractor().extract(text, "u1"))]
    assert len(carried) >= 50, "the rule extractor no longer turns these secrets into facts: the table tests less"
    assert sum(bool(RuleExtractor().extract(text, "u1")) for text in LOOK_ALIKES) >= 35


@pytest.mark.parametrize("text,value", SECRETS)
def test_no_accepted_fact_carries_a_secret(text, value):
    # an LLM extractor may state the value as it likes: a fact whose object is the value itself
    stated = Fact(subject="User u1", relation="mentioned", object=value, user_id="u1")
    screened = _screen(text, [*RuleExtractor().extract(text, "u1"), stated])
    for fact, why in screened:
        if _holds(fact, value):
            assert why, f"accepted {fact.relation!r} {fact.object!r}"
        if why:
            assert not _holds(redact(fact), value) and _bare(value) not in _bare(why)
    assert (why := secret_in(text)) and _bare(value) not in _bare(why)


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_pass(text):
    facts = RuleExtractor().extract(text, "u1")
    assert [why for _, why in _screen(text, facts)] == [None] * len(facts)
    assert secret_in(text) is None and find_secrets(text) == []


@pytest.mark.parametrize("text,kept,value", MIXED)
def test_a_secret_refuses_only_the_facts_that_carry_it(text, kept, value):
    screened = _screen(text, RuleExtractor().extract(text, "u1"))
    assert {f.object for f, why in screened if why is None} == kept
    assert all(_holds(f, value) for f, why in screened if why)


def test_the_reason_names_the_kind_of_secret():
    facts = RuleExtractor().extract("My favourite door code is 7731", "u1")
    assert Policy().screen_secrets("My favourite door code is 7731", facts) == ["carries a secret (door or lock code)"]
    assert secret_in("my SSN is 123-45-6789") == "carries a secret (identity number)"


def test_a_fact_about_a_secret_is_refused_without_its_message():
    # what an LLM extractor might produce: the secret is named by the relation or the subject
    door = Fact(subject="User u1", relation="has the door code", object="7731", user_id="u1")
    word = Fact(subject="User u1", relation="has the wifi password", object="swordfish", user_id="u1")
    card = Fact(subject="User u1", relation="owns a", object="card 4111-1111-1111-1111", user_id="u1")
    assert [Policy().screen_fact(f) for f in (door, word, card)] == [
        "carries a secret (door or lock code)", "is about a secret (password)",
        "carries a secret (payment card number)"]


def test_a_card_number_restated_with_other_separators_is_still_carried():
    text = "My favourite card number is 4111 1111 1111 1111"
    fact = Fact(subject="User u1", relation="likes", object="4111-1111-1111-1111", user_id="u1")
    assert Policy().screen_secrets(text, [fact]) == ["carries a secret (payment card number)"]


def test_the_secrets_screen_can_be_turned_off():
    off = Policy(PolicyConfig(secrets=False))
    text = "My favorite PIN is 4821"
    facts = RuleExtractor().extract(text, "u1")
    assert [(f.object, why) for f, why in _screen(text, facts, off)] == [("4821", None)]
    assert off.screen_fact(Fact(subject="User u1", relation="has the PIN", object="4821", user_id="u1")) is None


def test_a_long_message_is_searched_only_at_its_start():
    assert find_secrets("I like tea. " * 2_000 + "My PIN is 4821") == []


def test_a_user_cannot_write_into_another_users_keyed_facts():
    told = RuleExtractor().extract("User Alice lives in Berlin.", "u1")
    # what a model extractor may return as well: another user's people, any casing
    told += [Fact(subject="User alice's sister", relation="works at", object="Siemens", user_id="u1"),
             Fact(subject="User u2", relation="is allergic to", object="peanuts", user_id="u1"),
             # nor can the shared scope, which every user reads, hold a user's keyed facts
             Fact(subject="User u2", relation="lives in", object="Oslo", user_id=None)]
    assert [f.subject for f in told] == ["User Alice", "User alice's sister", "User u2", "User u2"]
    for f in told:
        why = Policy().screen_fact(f)
        assert why and "another user's keyed identity" in why, (f, why)


def test_a_users_own_keyed_facts_and_other_people_pass():
    for text in ("I live in Lisbon.", "My sister works at Siemens.", "Tom Varga plays the cello."):
        assert all(Policy().screen_fact(f) is None for f in RuleExtractor().extract(text, "u1")), text
