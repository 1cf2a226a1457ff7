"""The people a user names by their relation to the user, and the aliases that find them again.

"My aunt Wilhelmina Fairweather works as a beekeeper" gives ("User u1", "has an aunt named", "Wilhelmina
Fairweather"): the user's "aunt" is then an alias of that name. Memory keeps one alias per (user, relation
word) in the ledger and reads the user's later mentions with it: "What does my aunt do?" is asked as "What
does Wilhelmina Fairweather do?", and "My aunt moved to Oslo" is stored about her by name. Someone named by
a first name only is keyed by the relation ("User u1's neighbour"), as the extractor keys them, so for them
only a repeated name is dropped ("my neighbour Corentin" -> "my neighbour").
"""

from __future__ import annotations

import re

from ..facts import Fact
from ..facts.perspective import user_subject
from .vocabulary import KIN_ADJ, NATIONALITIES, NOT_NAMES, ROLES

_NAMING = re.compile(r"has an? (?P<word>.+) named")
# the one relation that names a person without "has a ... named": "my wife", "my husband"
_SPOUSE = ("is married to", "spouse")


def alias_word(relation: str) -> str | None:
    """The word under which a relation that names one of the user's people keeps its alias
    ("has an aunt named" -> "aunt", "is married to" -> "spouse"); None for any other relation."""
    r = relation.strip().lower()
    if r == _SPOUSE[0]:
        return _SPOUSE[1]
    m = _NAMING.fullmatch(r)
    return m["word"] if m else None


def naming(fact: Fact) -> tuple[str, str] | None:
    """(word, name) when `fact` names one of its user's people ("User u1 has an aunt named ..."), else None."""
    if fact.subject != user_subject(fact.user_id):
        return None
    word = alias_word(fact.relation)
    return (word, fact.object) if word else None


def full_name(name: str | None) -> bool:
    """A name of two words or more: few people share it, so it can be the subject itself."""
    return bool(name) and len(name.split()) > 1


# what the user may call each aliased relation: "aunt" and "auntie" are the "aunt", "mum" the "mother"
_SAID = {said: word for said, relation in ROLES.items() if relation and (word := alias_word(relation))}

# "my aunt", "our older neighbour"; not when the question asks who they are ("Who is my aunt?", "my aunt's
# name", "what is my aunt called"): the weights answer that, the alias must not
_MENTION = re.compile(
    r"(?<!\bwho is )(?<!\bwho's )\b(?:my|our) " + KIN_ADJ
    + "(?P<said>" + "|".join(sorted(map(re.escape, _SAID), key=len, reverse=True)) + ")"
    + r"(?![\w-])(?!'s (?:(?:full|first|last|real|maiden) )?name\b|\s+(?:is |was )?(?:called|named)\b)",
    re.IGNORECASE,
)
_NEXT_WORD = re.compile(r",?\s+([^\W\d_][\w-]*)")
# capitalised words after "my aunt" that name no one ("Is my aunt English?")
_NOT_A_NAME = NOT_NAMES | set(NATIONALITIES)


def _name_after(rest: str, name: str) -> int | None:
    """How many characters at the start of `rest` repeat `name` or its first words ("Corentin" of "Corentin
    Dubois"); None when another name follows instead ("my aunt Hilde"): the mention may be someone else."""
    end = 0
    for part in name.split():
        m = _NEXT_WORD.match(rest, end)
        if not m or m[1].lower() != part.lower():
            break
        end = m.end()
    if end:
        return end
    m = _NEXT_WORD.match(rest)
    other = m and m[1][0].isupper() and m[1].lower() not in _NOT_A_NAME
    return None if other else 0


def resolve(text: str, aliases: dict[str, str]) -> str:
    """`text` with each first-person mention of an aliased relation ("my aunt", "my aunt's", "my neighbour
    Corentin") put as the person's full name, and a first name repeated after a relation keyed by its word
    dropped; mentions of relations without an alias, and any other text, are left as they are."""
    if not aliases:
        return text
    text = text.replace("\u2019", "'")  # phones type curly apostrophes
    out, pos = [], 0
    for m in _MENTION.finditer(text):
        name = aliases.get(_SAID[m["said"].lower()])
        if name is None or (taken := _name_after(text[m.end():], name)) is None:
            continue
        out += [text[pos:m.start()], name if full_name(name) else m[0]]
        pos = m.end() + taken
    return "".join(out) + text[pos:]


def _restated(fact: Fact, aliases: dict[str, str]) -> Fact:
    """"My aunt Wilhelmina ..." after she was named Wilhelmina Fairweather names her by the full name again."""
    found = naming(fact)
    known = found and aliases.get(found[0])
    if found and full_name(known) and not full_name(found[1]) and known.split()[0].lower() == found[1].lower():
        return Fact.parse({**fact.to_json(), "object": known})
    return fact


def _about_person(fact: Fact, aliases: dict[str, str]) -> Fact:
    """A fact about "User u1's aunt" (or her dog: "User u1's aunt's dog") put about the person her alias
    names in full ("Wilhelmina Fairweather", "Wilhelmina Fairweather's dog"); any other fact as it is."""
    mine = user_subject(fact.user_id) + "'s "
    if not fact.subject.startswith(mine):
        return fact
    said, sep, theirs = fact.subject[len(mine):].partition("'s ")
    name = aliases.get(_SAID.get(said.lower(), ""))
    if not full_name(name):
        return fact
    return Fact.parse({**fact.to_json(), "subject": name + sep + theirs})


def resolve_facts(facts: list[Fact], aliases: dict[str, str]) -> list[Fact]:
    """One turn's facts as the user's aliases read them; `aliases` takes in the people the turn names, so
    that the turn's own "my aunt ..." and the later turns' are about whom it names."""
    facts = [_restated(f, aliases) for f in facts]
    aliases.update(filter(None, map(naming, facts)))
    return [_about_person(f, aliases) for f in facts]
