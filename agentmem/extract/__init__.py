"""Turns a conversation's user turns into candidate Facts.

`RuleExtractor` (regular expressions, no model) is the embedded default, `LLMExtractor`
asks an OpenAI-compatible server for schema-constrained JSON, and `Both` adds the model's facts
to the rules'; none judges whether a claim is true, that is left to policy.

Conventions shared by both:
- The user is `user_subject(user_id)` ("User u1"). People and pets the user names by their
  relation to the user are keyed by that relation word as the user said it ("my sister" ->
  "User u1's sister"), because that is how the user will ask about them later; their name
  becomes a fact about the user ("User u1 has a sister named Maria").
- Named with a full name ("my aunt Wilhelmina Fairweather works as a beekeeper"), the person is
  the subject by that name (few people share a full name; many share "User u1's aunt" across
  users and "Maria" across the world), and the relation stays a fact about the user ("User u1
  has an aunt named Wilhelmina Fairweather"): the alias by which "What does my aunt do?" can
  find them. Mum, dad, girlfriend, coworker, grandma ... are named as mother, father, partner,
  colleague, grandmother; a group ("my parents") is described but never named.
- Anyone else is keyed by their name ("Tom works at Google" -> subject "Tom").
- One value per (subject, relation): a list said in one breath stays one object ("Portuguese
  and Spanish"), and a later statement replaces an earlier one; predicates joined by "and" are
  facts each ("lives in Vienna and teaches piano").
- "I'm from Kyoto" is "is from", not "was born in": people say it of where they grew up too.
- A negation has its own relation ("I don't eat pork": "does not eat"; "I don't like X":
  "dislikes"); what is no longer so ("I don't live in London anymore") gives nothing.

The extractor is chosen by `make_extractor` (settings: `extractor`, `extractor_url`, `extractor_model`).
"""

from .base import ExtractionError, Extractor
from .both import Both
from .llm import LLMExtractor
from .messages import chat_messages, extract_messages, replies, user_turns
from .rules import RuleExtractor

__all__ = ["Both", "ExtractionError", "Extractor", "LLMExtractor", "RuleExtractor", "chat_messages", "extract_messages",
           "make_extractor", "replies", "user_turns"]


def make_extractor(kind: str = "rules", url: str | None = None, model: str | None = None,
                   token: str | None = None, timeout: float = 30.0) -> Extractor:
    """The extractor named `kind`: "rules" (embedded), "llm" (a model at `url` named `model`, `token` its
    bearer) or "both" (the rules, and the model's facts where the rules have none)."""
    if kind in ("llm", "both"):
        if not url or not model:
            raise ValueError(f"extractor {kind!r} needs extractor_url and extractor_model")
        llm = LLMExtractor(url, model, token, timeout)
        return llm if kind == "llm" else Both(RuleExtractor(), llm)
    if kind == "rules":
        return RuleExtractor()
    raise ValueError(f"extractor must be 'rules', 'llm' or 'both', got {kind!r}")
