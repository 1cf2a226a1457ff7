"""A question put as the memory it asks about was keyed.

Observed facts are stored about "User u1" and about the user's people by name,
and each relation's edits are keyed on its first question. So "Where do I
live?" is asked as "Where does User u1 live?", "What does my aunt do?" names
her, and "What is Ann's dog called?" becomes "What is the name of Ann's dog?".
`Memory` asks this way, and so does `agentmem serve` for every request, so that
any OpenAI client holding a user's token reaches that user's facts.
"""

from __future__ import annotations

from ..extract.people import resolve
from ..facts import SHARED, canonical_question
from ..facts.perspective import to_third_person
from ..facts.schema import question_key


def keyed(ledger, question: str, user_id: str | None) -> str:
    """`question` as `user_id`'s memory is keyed (None: the shared memory, where only the wording changes).

    A first-person question about something this user never stated stays in the first person, so the model
    answers it as it would anyone, never in the internal keyed phrasing ("User u1 ...")."""
    if user_id is not None:
        named = resolve(question, ledger.aliases(user_id))
        third = to_third_person(named, user_id)
        key = question_key(third) if third != named else None
        # (SHARED: a home made before scopes keeps its users' facts there until they are moved)
        if key is not None and any(ledger.active_with_key(s, *key) for s in (user_id, SHARED)):
            named = third
        question = named
    return canonical_question(question)


def keyed_conversation(ledger, conv: list[dict], user_id: str | None) -> list[dict]:
    """`conv` with its last turn keyed when it is the user's and plain text; every other turn as written."""
    last = conv[-1] if conv else None
    if not last or last.get("role") != "user" or not isinstance(last.get("content"), str):
        return conv
    asked = keyed(ledger, last["content"], user_id)
    return conv if asked == last["content"] else [*conv[:-1], {**last, "content": asked}]
