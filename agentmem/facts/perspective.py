"""Who "I" and "my" refer to: facts about a user are stored under a third-person subject.

A user says "I live in Lisbon" and later asks "Where do I live?"; both are rewritten
about `user_subject(user_id)` so that the question matches the one the fact was edited with.
"""

from __future__ import annotations

import re

USER_SUBJECT = "User {user_id}"

# Stands in for the subject while rewriting, so that a user id that looks like a
# pronoun ("I", "me") is never rewritten itself.
_SELF = "\x00"

# "do I" -> "does X": the auxiliary changes with the person; the rest only swap the pronoun.
_INVERTED = {
    "do": "does", "don't": "doesn't", "am": "is", "aren't": "isn't",
    "have": "has", "haven't": "hasn't",
}
_MODALS = (
    "did|didn't|was|wasn't|can|can't|cannot|could|couldn't|will|won't|would|wouldn't|"
    "should|shouldn't|must|may|might"
)
_AFTER_I = {"am": "is", "have": "has", "do": "does", "don't": "doesn't"}
# Words that follow "I" but are not present-tense verbs to conjugate.
_KEEP_AFTER_I = set(_MODALS.split("|")) | {
    "went", "were", "grew", "met", "got", "had", "made", "said", "saw", "took", "came", "bought", "knew",
    "thought", "told", "left", "ran", "ate", "drank", "wrote", "began", "became", "felt", "found", "gave",
    "kept", "lost", "paid", "sold", "sent", "spent", "stood", "taught", "won", "wore", "drove", "flew", "spoke",
}
_ADVERB = r"((?:really|also|still|usually|often|always|never|just|actually|currently|mostly|sometimes)\s+)?"
# "tell me about myself": "me" addressed to the assistant stays "me".
_ADDRESSED = r"(?<!\btell )(?<!\bshow )(?<!\bgive )(?<!\bremind )(?<!\blet )(?<!\bhelp )(?<!\bask )"

_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|my|mine|myself)\b", re.IGNORECASE)


def user_subject(user_id: str) -> str:
    """The subject under which facts about the user `user_id` are stored."""
    return USER_SUBJECT.format(user_id=user_id)


_USER_OR_THEIRS = re.compile(r"^User \S+?(?:'s [\w-]+)?$")


def is_user_subject(subject: str) -> bool:
    """The subject is a user ("User u1") or one of a user's people or pets ("User u1's sister")."""
    return bool(_USER_OR_THEIRS.match(subject))


def _third_person_verb(verb: str) -> str:
    low = verb.lower()
    if low in _KEEP_AFTER_I or low.endswith("ed"):
        return verb
    if re.search(r"[^aeiou]y$", low):
        return verb[:-1] + "ies"
    if re.search(r"(?:s|sh|ch|x|z|o)$", low):
        return verb + "es"
    return verb + "s"


def _match_case(word: str, like: str) -> str:
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _inverted(m: re.Match) -> str:
    aux = m.group(1)
    return _match_case(_INVERTED.get(aux.lower(), aux.lower()), aux) + " " + _SELF


def _subject_verb(m: re.Match) -> str:
    adverb, verb = m.group(1) or "", m.group(2)
    low = verb.lower()
    if low in _AFTER_I:
        return _SELF + " " + adverb + _AFTER_I[low]
    return _SELF + " " + adverb + _third_person_verb(verb)


_RULES: list[tuple[re.Pattern, object]] = [
    (re.compile(r"\b(what|where|who|when|how)'s(?=\s+(?:my|i)\b)", re.I), r"\1 is"),
    (re.compile(r"\bI'm\b", re.I), "I am"),
    (re.compile(r"\bI've\b", re.I), "I have"),
    (re.compile(r"\bI'd\b", re.I), "I would"),
    (re.compile(r"\bI'll\b", re.I), "I will"),
    (re.compile(r"\b(do|don't|am|aren't|have|haven't|" + _MODALS + r")\s+I\b", re.I), _inverted),
    (re.compile(r"\bI\s+" + _ADVERB + r"([a-z]+(?:n't)?)\b", re.I), _subject_verb),
    (re.compile(r"\bI\b", re.I), _SELF),
    (re.compile(r"\b(?:my|mine)\b", re.I), _SELF + "'s"),
    (re.compile(r"\bmyself\b", re.I), _SELF),
    (re.compile(_ADDRESSED + r"\bme\b", re.I), _SELF),
]


def to_third_person(text: str, user_id: str) -> str:
    """Rewrite first-person words in `text` as `user_subject(user_id)`; other text is returned unchanged."""
    if not _FIRST_PERSON.search(text):
        return text
    out = text.replace("\u2019", "'")  # phones type curly apostrophes
    for pattern, repl in _RULES:
        out = pattern.sub(repl, out)
    return out.replace(_SELF, user_subject(user_id))
