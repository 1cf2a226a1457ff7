"""Conversations as they arrive (role/content dicts or LangChain messages): the user's turns and chat-template messages."""

from __future__ import annotations

from typing import Any, Iterable

from ..facts import Fact
from .answers import answered
from .base import Extractor, latest
from .corrections import corrected


def _role_of(message: Any) -> str | None:
    return message.get("role") if isinstance(message, dict) else getattr(message, "type", None)


def _text_of(message: Any) -> str:
    """Message text; multimodal content (a list of parts) contributes its text parts."""
    content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None for p in content)
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def user_turns(messages: Iterable[Any]) -> list[str]:
    """The text of each user turn, in order: dicts with role/content or LangChain messages (type "human")."""
    return [_text_of(m) for m in messages if _role_of(m) in ("user", "human")]



def replies(messages: Iterable[Any]) -> list[tuple[str | None, str]]:
    """Each user turn's text, with the assistant's message just before it (None if the turn does not answer one)."""
    out, last = [], None
    for m in messages:
        role = _role_of(m)
        if role in ("user", "human"):
            out.append((last, _text_of(m)))
            last = None
        elif role in ("assistant", "ai"):
            last = _text_of(m)
    return out


_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant", "system": "system"}


def chat_messages(messages: Iterable[Any]) -> list[dict]:
    """A conversation as chat-template dicts (role user, assistant or system); other turns are left out."""
    return [{"role": _ROLES[r], "content": _text_of(m)} for m in messages if (r := _role_of(m)) in _ROLES]


def extract_messages(messages: Iterable[Any], extractor: Extractor, user_id: str = "default") -> list[Fact]:
    """Facts from the user turns of a conversation; a later statement about the same subject and
    relation replaces an earlier one, a short reply answers the assistant's question before it, and a turn that
    only names the right value corrects the one before."""
    facts: list[Fact] = []
    last: list[Fact] = []
    for question, text in replies(messages):
        last = extractor.extract(text, user_id) or answered(question, text, user_id) or corrected(last, text)
        facts += last
    return latest(facts)
