"""A short reply to the assistant's question about the user: "Where do you live?" answered "Lisbon." is
(User u1, lives in, Lisbon). The reply alone says nothing an extractor can read, so the question is asked as the
user's own ("Where does User u1 live?"), and the relation it is the template of gives the fact."""

from __future__ import annotations

import re

from ..facts import RELATIONS, Fact
from ..facts.perspective import to_third_person, user_subject
from ..facts.schema import question_key
from .base import make_fact

MAX_WORDS = 5  # a longer reply is a statement of its own, for the extractor
# the assistant's "you" as the user's "I", longest first ("are you" before "you")
_AS_THE_USER = [(re.compile(p, re.I), r) for p, r in (
    (r"\bare you\b", "am I"), (r"\bwere you\b", "was I"), (r"\byou are\b", "I am"), (r"\byou're\b", "I'm"),
    (r"\byou've\b", "I've"), (r"\byours\b", "mine"), (r"\byourself\b", "myself"), (r"\byour\b", "my"),
    (r"\byou\b", "I"),
)]
_LAST_QUESTION = re.compile(r"(?:^|(?<=[.!?:]\s))([^.!?]*\?)\s*$")
# what opens a question before it asks ("And what is your dog called?", "Great, where do you live?")
_LEAD_IN = re.compile(r"^(?:(?:and|so|also|oh|ok|okay|great|cool|nice|lovely|alright|well|now|then|by the way|btw|"
                      r"out of curiosity|if you don't mind me asking|may i ask|can i ask|tell me)\b[\s,!]*)+", re.I)
# what opens a reply before its value ("it's Lisbon", "in Porto", "called Biscuit")
_OPENING = re.compile(r"^(?:(?:oh|well|um+|uh+|so|yeah|yes|sure|haha|lol)\b[\s,!.]*)*"
                      r"(?:(?:it's|it is|that's|that would be|that'd be|he's|she's|they're|his name is|her name is|"
                      r"its name is|called|named|in|at|on|from)\s+)?", re.I)
_NOT_AN_ANSWER = re.compile(
    r"^(?:no|nope|nah|yes|yep|yeah|maybe|none|nothing|nobody|no one|not sure|unsure|no idea|dunno|"
    r"i don'?t know|don'?t know|idk|pass|skip|n/?a|why|what|huh|later|never ?mind|i'?d rather not|rather not|"
    r"prefer not|not telling|secret|private|it depends|depends|same|same as before|thanks|thank you|ok|okay|"
    r"i don'?t have (?:one|any)|i'?m not sure|not really|none of your business)\b", re.I)
# a reply in the first person or with a negation is a statement ("I'd rather not say"), the extractor's to read
_STATEMENT = re.compile(r"\b(?:i|i'm|i'd|i've|i'll|me|my|we|our|not|don't|never|rather|prefer)\b", re.I)


def asked(text: str, user_id: str) -> tuple[str, str] | None:
    """(subject, relation) that the assistant's message asks of the user in its closing question, or None."""
    if not (m := _LAST_QUESTION.search(text.strip())):
        return None
    question = _LEAD_IN.sub("", m.group(1).strip())
    question = question[:1].upper() + question[1:]
    for pattern, mine in _AS_THE_USER:
        question = pattern.sub(mine, question)
    key = question_key(to_third_person(question, user_id))
    if key is None:
        return None
    me, (subject, relation) = user_subject(user_id), key
    if subject == me:
        return key
    # "What is your sister's name?" names one of the user's people, as "my sister is called ..." would
    if relation == "is named" and subject.startswith(f"{me}'s "):
        word = subject[len(me) + 3:]
        named = next((r for r in (f"has a {word} named", f"has an {word} named") if r in RELATIONS), None)
        if named:
            return me, named
    return None


def value_of(reply: str) -> str | None:
    """The value a short reply names ("In Lisbon!" -> "Lisbon"), or None for a reply that is no answer."""
    first = re.split(r"[.!?;,\n]| - | but | and | though ", reply.strip(), maxsplit=1)[0].strip()
    if not first or _NOT_AN_ANSWER.match(first) or "?" in reply.split(".")[0]:
        return None
    value = _OPENING.sub("", first).strip(" \"'*")
    if not value or len(value.split()) > MAX_WORDS or _NOT_AN_ANSWER.match(value) or _STATEMENT.search(value):
        return None
    return value


def answered(question: str | None, reply: str, user_id: str) -> list[Fact]:
    """The fact a short `reply` gives to the assistant's `question` (the message just before it); [] if the
    question asks nothing known of the user or the reply names no value."""
    if not question or not isinstance(reply, str) or len(reply.split()) > MAX_WORDS + 3:
        return []
    if (key := asked(question, user_id)) is None or (value := value_of(reply)) is None:
        return []
    fact = make_fact(*key, value, user_id)
    return [fact] if fact is not None else []
