"""What every extractor shares: the protocol, its error, and how a triple becomes a Fact."""

from __future__ import annotations

from typing import Iterable, Protocol

from ..facts import Fact, FactError

MAX_CHARS = 4000  # per message: people state facts early; the rest is pasted text or noise

MAX_OBJECT_WORDS = 8

SOURCE = "conversation"


class ExtractionError(RuntimeError):
    """Facts could not be extracted (e.g. the extraction server was unreachable)."""


class Extractor(Protocol):
    def extract(self, text: str, user_id: str = "default") -> list[Fact]: ...


def latest(facts: Iterable[Fact]) -> list[Fact]:
    """One fact per (subject, relation): the one said last, in the order they were last said."""
    latest: dict[tuple[str, str], Fact] = {}
    for fact in facts:
        key = (fact.subject.lower(), fact.relation.lower())
        latest.pop(key, None)
        latest[key] = fact
    return list(latest.values())


def make_fact(subject: str, relation: str, obj: str, user_id: str) -> Fact | None:
    try:
        return Fact.parse({"subject": subject, "relation": relation, "object": obj, "user_id": user_id,
                           "source": SOURCE})
    except FactError:
        return None
