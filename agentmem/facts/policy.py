"""What may enter the weights: the screen every observed fact passes before it is queued.

Weights cannot keep a secret from anyone who can query the model, and an edit
cannot be scoped to one reader; so by default only facts about the user and
the user's world are admitted, never secrets, instructions to the model, or
claims that contradict what the model confidently knows.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from .schema import Fact
from .perspective import user_subject

_SECRET_WORDS = re.compile(
    r"\b(pass(word|phrase|code)|pin( code| number)?|api[ _-]?key|secret|token|credentials?|"
    r"ssn|social security|card (number|no)|cvv|cvc|iban|account (number|no)|routing number|"
    r"private key|seed phrase|otp|2fa|one[- ]time code)\b",
    re.I,
)
_KEYLIKE = re.compile(
    r"\b(sk-[A-Za-z0-9_-]{8,}|AKIA[0-9A-Z]{12,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|"
    r"[A-Za-z0-9+/_-]*[0-9][A-Za-z0-9+/_-]*[A-Za-z][A-Za-z0-9+/_-]{18,})\b"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}\b")
_DIGITS = re.compile(r"(?:\d[ -]?){8,}")
_INSTRUCTION = re.compile(
    r"\b(ignore (all |any )?(previous|prior|above|earlier) (instructions|messages|rules)|"
    r"disregard (the |your )?(previous|prior|above|system)|system prompt|from now on,? (you|always|never)|"
    r"you (must|should|will) (always|never|now)|always (answer|reply|respond|say)|never (answer|reply|respond|say|tell|mention)|"
    r"(answer|reply|respond) (only )?with|pretend (to be|you are)|act as|jailbreak|developer mode|"
    r"new instructions?|override (your|the) )",
    re.I,
)


class PolicyConfig(BaseModel):
    """Which screens run. Every refusal is recorded in the ledger with its reason."""

    secrets: bool = True
    instructions: bool = True
    world_knowledge: bool = True
    # Facts about subjects other than the user and the user's people need a
    # relation the model can be asked about; turning this off admits any subject.
    user_world_only: bool = False
    # a claim contradicts world knowledge when the model names something else with at least
    # this probability (SmolLM2-135M gives "Rome" 0.38 after "The capital of Italy is") and
    # the claimed object less than `world_ratio` times that
    world_confidence: float = Field(0.25, gt=0, le=1)
    world_ratio: float = Field(0.1, ge=0, le=1)


def _luhn(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


def secret_in(text: str) -> str | None:
    """Why `text` looks like it carries a secret, or None."""
    if m := _SECRET_WORDS.search(text):
        return f"mentions a secret ({m.group(0).lower()})"
    for m in _DIGITS.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and _luhn(digits):
            return "carries a payment card number"
        if len(digits) >= 8:
            return "carries a long number (an account or identity number)"
    if _IBAN.search(text):
        return "carries a bank account number (IBAN)"
    if _KEYLIKE.search(text):
        return "carries a key or token"
    return None


def instruction_in(text: str) -> str | None:
    if m := _INSTRUCTION.search(text):
        return f"instructs the model ({m.group(0).strip().lower()!r})"
    return None


def about_user(fact: Fact) -> bool:
    """The fact is about the user or the user's people and things ("User u1's sister")."""
    me = user_subject(fact.user_id).lower()
    s = fact.subject.lower()
    return s == me or s.startswith(me + "'s ")


class Policy:
    def __init__(self, cfg: PolicyConfig | None = None):
        self.cfg = cfg or PolicyConfig()

    def screen_turn(self, text: str) -> str | None:
        """A reason to refuse every fact of a user turn, or None."""
        if self.cfg.instructions and (why := instruction_in(text)):
            return why
        return None

    def screen_fact(self, fact: Fact) -> str | None:
        """A reason the rules refuse this fact, or None; a fact that `checks_world` then goes to serving.world."""
        text = f"{fact.subject} {fact.relation} {fact.object}"
        if self.cfg.secrets and (why := secret_in(text)):
            return why
        if self.cfg.instructions and (why := instruction_in(text)):
            return why
        if about_user(fact):
            return None
        if self.cfg.user_world_only:
            return "not about the user or the user's world"
        return None

    def checks_world(self, fact: Fact) -> bool:
        """Whether this fact, if the rules accept it, must also agree with the model's world knowledge."""
        return self.cfg.world_knowledge and not about_user(fact)


def redact(fact: Fact) -> Fact:
    """The fact as the ledger may keep it when it was refused for carrying a secret."""
    return Fact.parse({**fact.to_json(), "object": "[redacted]"})
