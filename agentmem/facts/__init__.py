"""Facts: the schema, who "I" is, and the policy on what may enter the weights (no torch here)."""

from .schema import RELATIONS, SHARED, Fact, FactError, canonical_question, last_word, load_jsonl

__all__ = ["RELATIONS", "SHARED", "Fact", "FactError", "canonical_question", "last_word", "load_jsonl"]
