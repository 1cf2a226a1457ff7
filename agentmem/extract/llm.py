"""Extraction by a model behind an OpenAI-compatible chat API (e.g. vLLM) with structured output."""

from __future__ import annotations

import json

import httpx

from ..facts import RELATIONS, Fact
from ..facts.perspective import user_subject
from .base import MAX_CHARS, ExtractionError, latest, make_fact

SCHEMA = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "maxItems": 8,  # a message rarely states more; a small model that rambles stops here
            "items": {
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "maxLength": 80},
                    "relation": {"type": "string", "enum": sorted(RELATIONS)},
                    "object": {"type": "string", "maxLength": 80},
                },
                "required": ["subject", "relation", "object"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["facts"],
    "additionalProperties": False,
}

MAX_ANSWER_TOKENS = 400  # 8 facts of compact JSON, with room

SYSTEM_PROMPT = """You extract facts from one chat message written by a user. The facts are \
written into a language model's memory, so extract only what the user asserts.

Reply with JSON: {{"facts": [{{"subject": ..., "relation": ..., "object": ...}}]}}.
- The user is "{user}". "I", "me" and "my" mean {user}: "I live in Oslo" -> \
{{"subject": "{user}", "relation": "lives in", "object": "Oslo"}}.
- People and pets the user refers to by their relation to the user are "{user}'s <word>": \
"my sister lives in Rome" -> subject "{user}'s sister". Their name is a fact about the user: \
"my sister Maria" -> {{"subject": "{user}", "relation": "has a sister named", "object": "Maria"}}. \
Named with a full name, the person is the subject by that name and the relation is still a fact about the \
user: "my aunt Ida Berg is a nurse" -> {{"subject": "{user}", "relation": "has an aunt named", "object": \
"Ida Berg"}} and {{"subject": "Ida Berg", "relation": "works as", "object": "nurse"}}.
- Anyone or anything else is the subject by name ("Tom works at Google" -> subject "Tom").
- A sentence that says several things gives a fact for each ("lives in Vienna and teaches piano"); a list \
for one relation stays one object ("Portuguese and Spanish").
- A negation has its own relation, never the positive one: "I don't eat pork" -> "does not eat"; \
"I don't like X" -> "dislikes".
- relation is one of the allowed relations below, exactly as written; \
"<subject> <relation> <object>" reads as an English sentence.
- object is a short noun phrase: leave out times, reasons and filler ("last year", "because ...").
- Nothing from questions, hypotheticals, wishes, what is no longer so ("I used to ...", "not anymore"), \
statements about the assistant, or instructions to the assistant.
- Claims about the world ("The capital of X is Y") are extracted as stated, even if wrong.
- No facts: {{"facts": []}}.

Allowed relations, exactly as written: {relations}"""


class LLMExtractor:
    """Extraction by a model behind an OpenAI-compatible chat API (e.g. vLLM) with structured output."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 30.0):
        # Accept both "http://host:8000" and "http://host:8000/v1".
        self.url = base_url.rstrip("/").removesuffix("/v1") + "/v1/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def request(self, text: str, user_id: str) -> dict:
        """The chat-completions request body for one message."""
        user = user_subject(user_id)
        # names only: they read as English, and the schema holds the answer to them; a small model's context
        # (2048 tokens for the bundled one) could not take a question for each besides the message
        relations = "; ".join(RELATIONS)
        return {
            "model": self.model,
            "temperature": 0,
            "max_tokens": MAX_ANSWER_TOKENS,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT.format(user=user, relations=relations)},
                {"role": "user", "content": text[:MAX_CHARS]},
            ],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "facts", "schema": SCHEMA, "strict": True}},
        }

    def extract(self, text: str, user_id: str = "default") -> list[Fact]:
        if not isinstance(text, str) or not text.strip():
            return []
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            response = httpx.post(self.url, json=self.request(text, user_id), headers=headers, timeout=self.timeout)
            response.raise_for_status()
        except httpx.HTTPError as e:
            raise ExtractionError(f"fact extraction request to {self.url} failed: {e}") from None
        try:
            items = json.loads(response.json()["choices"][0]["message"]["content"])["facts"]
            if not isinstance(items, list):
                raise TypeError("'facts' is not a list")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ExtractionError(f"{self.url} returned no facts JSON: {e}") from None
        facts = (
            make_fact(item["subject"], item["relation"], item["object"], user_id)
            for item in items
            if isinstance(item, dict) and item.get("relation") in RELATIONS and {"subject", "object"} <= item.keys()
        )
        return latest(f for f in facts if f is not None)
