"""A turn that only names the right value ("oops, I meant Linz", "Correction: it's Munich, not Berlin")
corrects the last fact of the turn before it: no extractor sees that turn's fact, so it is done here."""

from __future__ import annotations

import re

from ..facts import Fact
from .base import make_fact

_BARE = re.compile(
    r"^(?:(?:hmm+|oh|oops|sorry|wait|no|nope|correction|actually|typo|my bad|update|I meant|I mean|it's|it is|"
    r"make that)\b[\s,:;!.-]*)+"
    r"(?P<o>[^,.!?;:]{1,40}?)"
    r"(?:,?\s+(?:not|rather than|instead of|actually|sorry|instead|with an? \w+|no \w+)\b[^.!?]*)*[\s.!]*$",
    re.I,
)
# words that say the turn is a correction, not a reply ("No, thanks")
_SAYS_WRONG = re.compile(r"\b(?:meant|mean|correction|typo|make that)\b|\bactually,? it(?:'s| is)\b|"
                         r"\bit(?:'s| is) [\w ]+,? actually\b", re.I)
_NOT_A_VALUE = {"thanks", "thank you", "never mind", "nevermind", "nothing", "forget it", "ok", "okay", "fine",
                "that", "it", "this", "yes", "no"}


def corrected(previous: list[Fact], text: str) -> list[Fact]:
    """The last of `previous` (the turn before's facts) with the value a bare correction names; [] otherwise."""
    if not previous or not isinstance(text, str) or not (m := _BARE.match(text.strip())):
        return []
    value = m["o"].strip()
    if len(value.split()) > 4 or value.lower() in _NOT_A_VALUE:
        return []
    # a capital says it is a name ("sorry, typo, Australia!"); lowercase needs "I meant" and the like
    if not (value[0].isupper() or value[0].isdigit() or _SAYS_WRONG.search(text)):
        return []
    last = previous[-1]
    # "I'm flying to Berlin" corrected by "it's Munich": the name at the end is what changes
    if value[0].isupper() and (name := re.search(r"[A-Z][\w'-]*(?: [A-Z][\w'-]*)*$", last.object)) and name.start():
        value = last.object[: name.start()] + value
    fact = make_fact(last.subject, last.relation, value, last.user_id)
    return [fact] if fact is not None else []
