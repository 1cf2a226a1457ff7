"""What may enter the weights: the screen every observed fact passes before it is queued.

Weights cannot keep a secret from anyone who can query the model, and an edit
cannot be scoped to one reader; so by default only facts about the user and
the user's world are admitted, never secrets, instructions to the model, or
claims that contradict what the model confidently knows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from pydantic import BaseModel, Field

from .schema import Fact
from .perspective import is_user_subject, user_subject

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


# Secrets are found as values, not as words: "I hate passwords" carries none, while "my favourite PIN is
# 4821" makes a fact (likes, 4821) that never names the PIN. Each kind is named by words and has a value
# of a shape: "digits" (a code or number: holds a digit), "word" (a password: one token or a quoted
# string), "phrase" (several words: an answer, a seed phrase), "key" (a random-looking token).
# A reason names only the kind, never the value.
_PLACES = (r"(?:front |back |main |side )?(?:door|gate|alarm|safe|garage|lock|locker|keypad|entry|access|"
           r"building|entrance|padlock|vault|lockbox|key ?safe|house|apartment|flat|intercom|buzzer|bike lock)")
_KINDS = [
    ("password", r"pass ?words?|passwds?|pwds?|pw|p/w|pwords?", "word"),
    ("passcode", r"pass ?codes?|(?:phone |screen )?unlock codes?", "word"),
    ("PIN", r"pins?(?:[ -]?(?:codes?|numbers?|nos?))?", "digits"),
    ("door or lock code", rf"{_PLACES}(?:'s)? codes?|codes? (?:for|to|of|on) (?:the |my |our )?{_PLACES}", "digits"),
    ("lock combination", r"(?:(?:lock|safe|locker|padlock|bike lock|vault) )?(?:combination|combo)s?", "digits"),
    ("security answer", r"(?:security|secret) (?:answers?|questions?)|memorable (?:words?|answers?)|"
                        r"(?:mother|mom|mum)'?s maiden name", "phrase"),
    ("recovery phrase", r"(?:seed|recovery|backup|mnemonic|wallet) (?:phrases?|words)|pass ?phrases?|mnemonics?",
     "phrase"),
    ("recovery code", r"(?:backup|recovery) codes?", "digits"),
    ("private key", r"(?:private|secret|wallet|ssh|pgp|gpg) keys?", "key"),
    ("key or token", r"(?:api|access|licen[cs]e|product|auth|bearer|session|refresh|client|app)[ _-]?"
                     r"(?:keys?|tokens?|secrets?)|tokens?|secrets?|credentials?", "key"),
    ("payment card number",
     r"(?:credit |debit |bank |payment )?card (?:numbers?|nos?|nums?)|(?:credit|debit) cards?", "digits"),
    ("card security code", r"cvv2?|cvc2?|csc|(?:card )?security codes?", "digits"),
    ("bank account number",
     r"iban|(?:bank )?account (?:numbers?|nos?)|routing (?:numbers?|nos?)|sort codes?", "digits"),
    ("identity number", r"ssn|social security(?: numbers?| nos?)?|national insurance(?: numbers?| nos?)?|ni numbers?|"
                        r"tax (?:ids?|numbers?|file numbers?)|passport (?:numbers?|nos?)|"
                        r"driv(?:er'?s?|ing) licen[cs]e(?: numbers?| nos?)?|(?:national )?id (?:numbers?|nos?)",
     "digits"),
    ("one-time code", r"otps?|(?:2fa|mfa|two[- ]factor)(?: codes?)?|one[- ]time (?:codes?|passwords?|pins?|passcodes?)|"
                      r"(?:verification|authentication|auth|login|sign-?in|sms) codes?", "digits"),
]
_NAMED = "|".join(f"(?P<k{i}>{words})" for i, (_, words, _) in enumerate(_KINDS))
_NAMES = re.compile(rf"\b(?:{_NAMED})(?![\w-])", re.I)
# a relation or subject that names a secret ("has the door code", "User u1's password") is about one
_NAMES_SECRET = re.compile(rf"\b(?:{_NAMED})(?:\s*$|\s*:|\s+(?:for|to|of|on|at)\b)", re.I)
# between the name and the value: "'s", "(for the bank)", "for my bank card", ", which I never share,"
_LEAD = (r"(?:'s)?(?:\s*\([^()]{0,40}\))?(?:\s+(?:for|to|of|on|at|in|from|with)(?:\s+[\w'-]+){1,3}?)?"
         r"(?:\s*,[^,.;:!?]{0,40},)?\s*")
_SEP = r"(?:is|are|was|were|will be|would be)\b|[:=,]|(?<=\s)[\u2013\u2014-](?=\s)"  # not "password-protected"
_ADVERB = r"(?:\s+(?:just|still|also|now|currently|always|simply|literally|actually)\b)?\s*"
_GROUP = r"#?[A-Za-z]*\d[A-Za-z\d]*(?:[ ./-][A-Za-z]*\d[A-Za-z\d]*)*"
_QUOTED = r"[\"\u201c'\u2018][^\"\u201d'\u2019\n]{1,120}[\"\u201d'\u2019]"
_LIST = r"(?:\s*,\s*|\s+(?:and|or|&)\s+)"  # "passwords are hunter2 and swordfish"
# what each shape's value looks like after "is" or ":", and with nothing between it and the name, where
# it must look like a value by itself ("PIN 4821", "password hunter2"; not "password manager")
_AFTER_SEP = {"digits": rf"{_GROUP}(?:\s*(?:,|and|or|&|/)\s*{_GROUP})*",
              "word": rf"(?:{_QUOTED}|[^\s,;]+)(?:{_LIST}(?:{_QUOTED}|[^\s,;]+))*",
              "phrase": rf"{_QUOTED}|[^.,;!?\n]{{1,120}}", "key": r"[^\s,;]+"}
_BARE = {"digits": _AFTER_SEP["digits"], "word": r"[^\s,;]*[^A-Za-z\s,;.!?][^\s,;]*", "phrase": r"(?!)",
         "key": r"[^\s,;]*\d[^\s,;]*"}
_STATED = [
    re.compile(
        rf"\b(?:{'|'.join(f'(?P<k{i}>{w})' for i, (_, w, its) in enumerate(_KINDS) if its == shape)})(?![\w-])"
        rf"{_LEAD}(?:(?P<sep>{_SEP}){_ADVERB}(?P<v>{_AFTER_SEP[shape]})|(?P<bare>{_BARE[shape]}))",
        re.I,
    )
    for shape in _AFTER_SEP
]
# "Rex2019, which is my wifi password too", "hunter2 is my password", "7731, the door code": the value is
# the clause before
_REFERRED = re.compile(
    rf"(?:(?:\b(?:is|are|was)|'s|\bas)\s+(?:(?:also|too|actually|still|now)\s+)?|,\s*)(?:my|our|the|his|her|their)\s+"
    rf"(?:[\w-]+\s+){{0,2}}?(?:{_NAMED})(?=\s*(?:[.,;:!?)]|$)|\s+(?:too|also|as well|for|now|and|but|so|lol)\b)",
    re.I,
)
# where a stated value ends: a new clause about someone ("... 4821 and I live in Lisbon")
_CLAUSE_END = re.compile(r"\s*(?:;|,?\s+(?:and|but|so|because|while|although|though|plus)\s+|,\s*)"
                         r"(?=(?:I|my|we|our|he|she|they|his|her|their)\b)", re.I)
_CLAUSES = re.compile(r"[,;:()]|\s[-\u2013\u2014]\s|\b(?:and|but|so|because|since|which|who)\b", re.I)
_PRONOUN = re.compile(r"\s*\b(?:that|it|this|these|those|they|which|who)\s*$", re.I)
_SENTENCE_END = re.compile(r"[.!?]\s+|\n")
# a value that describes the secret instead of stating it ("my password is wrong", "the pin is in the drawer")
_NOT_VALUES = set(
    "a an the my our your his her their its it this that these those not no still too very so in on at for to of "
    "with from by about under same different wrong incorrect expired blocked locked weak strong long short easy "
    "hard secure safe new old changed reset stored saved written set required needed missing lost stolen "
    "forgotten invalid valid hidden private secret something nothing what why how when where who which there "
    "here and or but if because just also always never really somewhere encrypted hashed being been getting "
    "going then".split())
_KEY_PREFIX = re.compile(r"(?:sk|pk|rk)[-_]|AKIA|gh[pousr]_|github_pat_|xox[abpr]-|glpat-|AIza|eyJ")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}\b")
_DIGITS = re.compile(r"(?:\d[ -]?){8,}")
# a date is not an account number: "born on 1984-03-02"
_DATE = re.compile(r"\b(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})\b")
_TOKEN_EDGES = "\"'()[]{}<>,.;:!?\u201c\u201d\u2018\u2019"
_MAX_SCAN = 20_000  # characters of a message searched: bounds the work on a pasted document


@dataclass(frozen=True)
class Secret:
    """A secret stated in a text: its kind (safe to record) and its value (never to be stored)."""

    kind: str
    value: str


def _luhn(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


def _keylike(token: str, loose: bool = False) -> bool:
    """A random-looking token: an API key's prefix, or letters mixed with digits (at least 6 chars when `loose`)."""
    letters, digits = sum(c.isalpha() for c in token), sum(c.isdigit() for c in token)
    if _KEY_PREFIX.match(token) and len(token) >= 12:
        return True
    if loose:
        return len(token) >= 6 and letters > 0 and digits > 0
    return len(token) >= 20 and letters >= 3 and digits >= 3 and bool(re.fullmatch(r"[A-Za-z0-9+/_=-]+", token))


def _kind(m: re.Match) -> tuple[str, str]:
    """The kind of secret a match of `_NAMED` names, and the shape of its values."""
    i = int(next(name for name, text in m.groupdict().items() if name.startswith("k") and text)[1:])
    return _KINDS[i][0], _KINDS[i][2]


def _stated(m: re.Match) -> list[Secret]:
    """The value(s) stated after a secret's name, if they have the shape its kind's values have."""
    kind, shape = _kind(m)
    raw = m["v"] or m["bare"]
    if shape == "digits":
        return [Secret(kind, v) for v in re.findall(_GROUP, raw)]
    raw = _CLAUSE_END.split(raw, maxsplit=1)[0]
    out = []
    for item in re.split(_LIST, raw) if shape == "word" else [raw]:
        value = item.strip(_TOKEN_EDGES + " ")
        words = value.lower().split()
        if not words or (item[:1] not in "\"'\u201c\u2018" and words[0] in _NOT_VALUES):
            break  # "hunter2 and then ...": the list ended
        if shape == "key" and not _keylike(value, loose=True):
            break
        out.append(Secret(kind, value))
    return out


def _referred(text: str, m: re.Match) -> list[Secret]:
    """The clause a later "... is my password" refers back to, as the secret's value."""
    before = _SENTENCE_END.split(text[max(0, m.start() - 200):m.start()])[-1]
    for clause in reversed(_CLAUSES.split(before)):
        clause = _PRONOUN.sub("", clause).strip(_TOKEN_EDGES + " ")
        if clause:
            # "my favourite pin is my enamel cat pin" compares two things and "what is my PIN?" asks: no value
            if _NAMES.search(clause) or set(clause.lower().split()) <= _NOT_VALUES:
                return []
            return [Secret(_kind(m)[0], clause)]
    return []


def find_secrets(text: str) -> list[Secret]:
    """Every secret value stated in `text`, in the order they appear."""
    text = text[:_MAX_SCAN]
    found: list[tuple[int, Secret]] = []
    for stated in _STATED:
        for m in stated.finditer(text):
            found += [(m.start(), s) for s in _stated(m)]
    for m in _REFERRED.finditer(text):
        found += [(m.start(), s) for s in _referred(text, m)]
    undated = _DATE.sub(lambda d: " " * len(d[0]), text)
    for m in _DIGITS.finditer(undated):
        digits = re.sub(r"\D", "", m[0])
        luhn = 13 <= len(digits) <= 19 and _luhn(digits)
        kind = "payment card number" if luhn else "long number (an account, identity or phone number)"
        found.append((m.start(), Secret(kind, m[0].strip(" -"))))
    found += [(m.start(), Secret("bank account number", m[0])) for m in _IBAN.finditer(text)]
    for m in re.finditer(r"\S+", text):
        if _keylike(token := m[0].strip(_TOKEN_EDGES)):
            found.append((m.start(), Secret("key or token", token)))
    return list(dict.fromkeys(s for _, s in sorted(found, key=lambda pair: pair[0])))


def secret_in(text: str) -> str | None:
    """Why `text` carries a secret (its kind, never its value), or None."""
    found = find_secrets(text)
    return f"carries a secret ({found[0].kind})" if found else None


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.casefold())


def _within(needle: list[str], hay: list[str]) -> bool:
    return bool(needle) and any(hay[i:i + len(needle)] == needle for i in range(len(hay) - len(needle) + 1))


def carries(fact: Fact, secret: Secret) -> bool:
    """The fact states the secret's value, or its object is part of it (the object "4821" of "PIN 4821")."""
    value, obj = _words(secret.value), _words(fact.object)
    if _within(value, _words(f"{fact.subject} {fact.relation} {fact.object}")) or _within(obj, value):
        return True
    # "4111 1111 1111 1111" restated as "4111-1111-1111-1111"
    digits = re.sub(r"\D", "", secret.value)
    return len(digits) >= 4 and digits in re.sub(r"\D", "", fact.object)



def fact_secret(fact: Fact, found: Sequence[Secret] = ()) -> str | None:
    """Why `fact` is refused: it carries a secret of its message (`found`) or of its own text, or names one."""
    for secret in [*found, *find_secrets(f"{fact.subject} {fact.relation} {fact.object}")]:
        if carries(fact, secret):
            return f"carries a secret ({secret.kind})"
    for text in (fact.subject, fact.relation):
        if m := _NAMES_SECRET.search(text):
            return f"is about a secret ({_kind(m)[0]})"
    return None


def instruction_in(text: str) -> str | None:
    if m := _INSTRUCTION.search(text):
        return f"instructs the model ({m.group(0).strip().lower()!r})"
    return None


def about_user(fact: Fact) -> bool:
    """The fact is about the user or the user's people and things ("User u1's sister")."""
    if fact.user_id is None:
        return False
    me = user_subject(fact.user_id).lower()
    s = fact.subject.lower()
    return s == me or s.startswith(me + "'s ")


def names_another_user(fact: Fact) -> str | None:
    """Why the fact is refused if its subject is a user's keyed identity ("User u2") that is not its own user's:
    only that user writes those facts, into their own scope (the shared scope holds no user's)."""
    if about_user(fact) or not is_user_subject(fact.subject):
        return None
    owner = fact.subject.split("'s ")[0]
    return f"names another user's keyed identity ({owner!r}): a user states facts about themselves only"


class Policy:
    def __init__(self, cfg: PolicyConfig | None = None):
        self.cfg = cfg or PolicyConfig()

    def screen_turn(self, text: str) -> str | None:
        """A reason to refuse every fact of a user turn, or None."""
        if self.cfg.instructions and (why := instruction_in(text)):
            return why
        return None

    def screen_secrets(self, text: str, facts: list[Fact]) -> list[str | None]:
        """For each fact extracted from the user turn `text`, why it is refused for a secret, or None."""
        if not self.cfg.secrets:
            return [None] * len(facts)
        found = find_secrets(text)
        return [fact_secret(f, found) for f in facts]

    def screen_fact(self, fact: Fact) -> str | None:
        """A reason the rules refuse this fact, or None; a fact that `checks_world` then goes to serving.world."""
        if self.cfg.secrets and (why := fact_secret(fact)):
            return why
        text = f"{fact.subject} {fact.relation} {fact.object}"
        if self.cfg.instructions and (why := instruction_in(text)):
            return why
        if about_user(fact):
            return None
        if why := names_another_user(fact):
            return why
        if self.cfg.user_world_only:
            return "not about the user or the user's world"
        return None

    def checks_world(self, fact: Fact) -> bool:
        """Whether this fact, if the rules accept it, must also agree with the model's world knowledge."""
        return self.cfg.world_knowledge and not about_user(fact)


def redact(fact: Fact) -> Fact:
    """The fact as the ledger may keep it when it was refused for carrying a secret."""
    return Fact.parse({**fact.to_json(), "object": "[redacted]"})
