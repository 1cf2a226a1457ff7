"""The Fact schema, its validation, and the phrasings derived from a relation.

A fact that fails validation raises `FactError` naming the field; nothing
downstream ever sees it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .perspective import is_user_subject

MAX_FIELD_CHARS = 200
MAX_OBJECT_CHARS = 100
# The scope of facts an operator states about the world or the organisation (Fact.user_id None): every
# user reads it, no user writes it. A user's scope is their user id, which is never empty.
SHARED = ""


class FactError(ValueError):
    """A fact was refused; the message names the field and the problem."""


# Known relations: how to ask about them. The first question is used when
# editing; the rest are paraphrases held out for evaluation unless the fact
# itself names a question.
RELATIONS: dict[str, list[str]] = {
    "lives in": ["Where does {s} live?", "In which city does {s} live?", "Where is {s}'s home?"],
    "works at": ["Where does {s} work?", "Which company does {s} work for?", "Who is {s}'s employer?"],
    "works as": ["What does {s} do for a living?", "What is {s}'s job?", "What is {s}'s profession?"],
    "was born in": ["Where was {s} born?", "What is {s}'s birthplace?", "In which city was {s} born?"],
    "was born on": ["When was {s} born?", "What is {s}'s birthday?", "On what date was {s} born?", "When is {s}'s birthday?"],
    "speaks": ["What language does {s} speak?", "Which language is spoken by {s}?", "What language can {s} speak?"],
    "plays the": ["What instrument does {s} play?", "Which instrument is played by {s}?", "What musical instrument does {s} play?"],
    "is married to": ["Who is {s} married to?", "Who is {s}'s spouse?", "Who is {s}'s husband or wife?"],
    "owns a dog named": ["What is the name of {s}'s dog?", "What is {s}'s dog called?", "What did {s} name the dog?", "What is {s}'s dog's name?"],
    "owns a cat named": ["What is the name of {s}'s cat?", "What is {s}'s cat called?", "What did {s} name the cat?", "What is {s}'s cat's name?"],
    "is allergic to": ["What is {s} allergic to?", "What allergy does {s} have?", "Which allergy does {s} suffer from?"],
    "likes": ["What does {s} like?", "What is something {s} enjoys?", "What does {s} love?"],
    "dislikes": ["What does {s} dislike?", "What does {s} not like?", "What does {s} hate?"],
    "drives a": ["What car does {s} drive?", "Which car does {s} own?", "What kind of car does {s} drive?"],
    "studied at": ["Where did {s} study?", "Which university did {s} attend?", "Where did {s} go to school?"],
    "has a favourite color:": ["What is {s}'s favourite color?", "Which color does {s} like best?", "What color does {s} prefer?"],
    "has a favourite food:": ["What is {s}'s favourite food?", "Which food does {s} like best?", "What does {s} like to eat most?"],
    "is friends with": ["Who is {s} friends with?", "Who is {s}'s friend?", "Who is a friend of {s}?"],
    "supports the football club": ["Which football club does {s} support?", "What team does {s} support?", "Which club is {s} a fan of?"],
    "is named": ["What is {s}'s name?", "What is {s} called?", "What name does {s} go by?"],
    "is from": ["Where is {s} from?", "Where does {s} come from?", "What is {s}'s hometown?"],
    "grew up in": ["Where did {s} grow up?", "In which place did {s} grow up?", "Where did {s} spend their childhood?"],
    "has a sister named": ["What is {s}'s sister's name?", "What is {s}'s sister called?", "Who is {s}'s sister?"],
    "has a brother named": ["What is {s}'s brother's name?", "What is {s}'s brother called?", "Who is {s}'s brother?"],
    "has a son named": ["What is {s}'s son's name?", "What is {s}'s son called?", "Who is {s}'s son?"],
    "has a daughter named": ["What is {s}'s daughter's name?", "What is {s}'s daughter called?", "Who is {s}'s daughter?"],
    "has a mother named": ["What is {s}'s mother's name?", "What is {s}'s mother called?", "Who is {s}'s mother?"],
    "has a father named": ["What is {s}'s father's name?", "What is {s}'s father called?", "Who is {s}'s father?"],
    "has a partner named": ["What is {s}'s partner's name?", "What is {s}'s partner called?", "Who is {s}'s partner?"],
    "has a colleague named": ["What is {s}'s colleague's name?", "What is {s}'s colleague called?", "Who is {s}'s colleague?"],
    "has a boss named": ["What is {s}'s boss's name?", "What is {s}'s boss called?", "Who is {s}'s boss?"],
    "has a roommate named": ["What is {s}'s roommate's name?", "What is {s}'s roommate called?", "Who is {s}'s roommate?"],
    "owns a pet named": ["What is {s}'s pet's name?", "What is {s}'s pet called?", "What did {s} name the pet?"],
    "owns a": ["What does {s} own?", "What is something {s} owns?", "What has {s} got?"],
    "is planning to": ["What is {s} planning to do?", "What are {s}'s plans?", "What does {s} plan to do?"],
    "plays": ["What sport does {s} play?", "Which sport does {s} play?", "What game does {s} play?"],
    "is a member of": ["What club is {s} a member of?", "Which club does {s} belong to?", "What group is {s} part of?"],
    "has a favourite band:": ["What is {s}'s favourite band?", "Which band does {s} like best?", "What band does {s} prefer?"],
    "has a favourite singer:": ["What is {s}'s favourite singer?", "Which singer does {s} like best?", "What singer does {s} prefer?"],
    "has a favourite movie:": ["What is {s}'s favourite movie?", "Which movie does {s} like best?", "What film does {s} love most?"],
    "has a favourite book:": ["What is {s}'s favourite book?", "Which book does {s} like best?", "What book does {s} love most?"],
    "has a favourite author:": ["Who is {s}'s favourite author?", "Which author does {s} like best?", "Which writer does {s} prefer?"],
    "has a favourite sport:": ["What is {s}'s favourite sport?", "Which sport does {s} like best?", "What sport does {s} prefer?"],
    "has a favourite drink:": ["What is {s}'s favourite drink?", "Which drink does {s} like best?", "What does {s} like to drink most?"],
    "has a favourite animal:": ["What is {s}'s favourite animal?", "Which animal does {s} like best?", "What animal does {s} prefer?"],
    "has a favourite song:": ["What is {s}'s favourite song?", "Which song does {s} like best?", "What song does {s} love most?"],
    "has a favourite season:": ["What is {s}'s favourite season?", "Which season does {s} like best?", "What season does {s} prefer?"],
    "has a favourite city:": ["What is {s}'s favourite city?", "Which city does {s} like best?", "What city does {s} love most?"],
    "has the capital city": ["What is the capital of {s}?", "Which city is the capital of {s}?", "What is {s}'s capital city?"],
    "follows the diet": ["What diet does {s} follow?", "Which diet does {s} keep to?", "What kind of diet is {s} on?"],
    "has the nationality": ["What is {s}'s nationality?", "What nationality is {s}?", "Which nationality does {s} have?"],
    "studies": ["What does {s} study?", "What subject does {s} study?", "What is {s}'s field of study?"],
    "studies at": ["Where does {s} study?", "Which university does {s} go to?", "Where is {s} a student?"],
    "is learning": ["What is {s} learning?", "What is {s} learning at the moment?", "What skill is {s} learning?"],
    "is currently": ["What is {s} doing these days?", "What is {s} working on at the moment?", "What is {s} busy with?"],
    "runs a": ["What business does {s} run?", "What kind of business does {s} have?", "What does {s} run?"],
    "teaches": ["What does {s} teach?", "What subject does {s} teach?", "What is {s} a teacher of?"],
    "works in": ["What field does {s} work in?", "Which industry does {s} work in?", "What sector does {s} work in?"],
    "does not eat": ["What does {s} not eat?", "What food does {s} avoid?", "What won't {s} eat?", "What doesn't {s} eat?"],
    "does not drink": ["What does {s} not drink?", "What drink does {s} avoid?", "What won't {s} drink?",
                       "What doesn't {s} drink?"],
    "does not speak": ["What language does {s} not speak?", "Which language can {s} not speak?",
                       "What language is {s} unable to speak?", "What language doesn't {s} speak?"],
}

# The people a user names by their relation to the user ("my aunt Wilhelmina"): "has an aunt named" and its
# questions, beside the sister, brother, ... above.
KIN = ("aunt", "uncle", "cousin", "niece", "nephew", "grandmother", "grandfather", "grandson", "granddaughter",
       "stepmother", "stepfather", "stepson", "stepdaughter", "stepsister", "stepbrother", "mother-in-law",
       "father-in-law", "sister-in-law", "brother-in-law", "son-in-law", "daughter-in-law", "godmother",
       "godfather", "neighbour", "flatmate", "housemate", "classmate", "teacher", "tutor", "mentor", "coach",
       "therapist", "landlord", "landlady")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


RELATIONS |= {f"has {_article(w)} {w} named": [f"What is {{s}}'s {w}'s name?", f"What is {{s}}'s {w} called?",
                                                f"Who is {{s}}'s {w}?"] for w in KIN}


# Relations whose natural completion prompt is not "{subject} {relation}".
RELATION_PROMPTS: dict[str, str] = {
    "has the capital city": "The capital of {subject} is",
}


# Facts about a user share one subject ("User u1"), and MEMIT keys an edit at the
# subject's last token: "User u1 lives in" and "User u1 works at" would share a key
# and overwrite each other. So facts about users and their people are phrased with
# the relation as a noun before the subject ("The home city of User u1 is"): the key
# at the subject's last token then differs by relation and by user.
ATTRIBUTES: dict[str, str] = {
    "lives in": "home city", "works at": "employer", "works as": "job", "was born in": "birthplace",
    "was born on": "birthday", "speaks": "language", "plays the": "instrument", "is married to": "spouse",
    "owns a dog named": "name of the dog", "owns a cat named": "name of the cat",
    "owns a pet named": "name of the pet", "is allergic to": "allergy",
    "likes": "great love", "dislikes": "pet hate", "drives a": "car", "studied at": "university",
    "is friends with": "friend", "supports the football club": "football club", "is named": "name",
    "is from": "hometown", "grew up in": "childhood home", "owns a": "prized possession",
    "is planning to": "plan", "plays": "sport", "is a member of": "club",
    "follows the diet": "diet", "has the nationality": "nationality", "studies": "subject of study",
    "studies at": "school", "is learning": "new skill", "is currently": "current project", "runs a": "business",
    "teaches": "teaching subject", "works in": "industry", "does not eat": "avoided food",
    "does not drink": "avoided drink", "does not speak": "language gap",
}


def last_word(subject: str) -> str:
    """The word a subject's last token belongs to ("Thea Albescu" -> "Albescu"): all that the key at
    the end of a multi-word name sees of it, nearly (see MemitConfig.share_last_word)."""
    return subject.split()[-1]


def attribute_of(relation: str) -> str | None:
    """The relation as a noun phrase ("lives in" -> "home city"), if it has one."""
    r = relation.strip().lower()
    if r in ATTRIBUTES:
        return ATTRIBUTES[r]
    if m := re.fullmatch(r"has a favourite (.+):", r):
        return "favourite " + m.group(1)
    if m := re.fullmatch(r"has an? (.+) named", r):
        return m.group(1)
    return None


def relation_questions(relation: str) -> list[str]:
    """Question templates ({s} for the subject) for a known relation, best first; [] if unknown."""
    return RELATIONS.get(relation.strip().lower(), [])


# Spellings folded before matching a question against the templates.
_SPELLING = [(re.compile(p, re.I), r) for p, r in [
    (r"\bfavorite\b", "favourite"), (r"\bcolour\b", "color"), (r"\bwhat's\b", "what is"),
    (r"\bwho's\b", "who is"), (r"\bwhere's\b", "where is"), (r"\s+", " "),
]]


def _template_pattern(template: str) -> re.Pattern:
    head, _, tail = template.rstrip("?").partition("{s}")
    # a subject never ends in "not": "What language does X not speak?" asks what X does not speak
    return re.compile(rf"^{re.escape(head)}(?P<s>.+?)(?<! not){re.escape(tail)}\s*\??$", re.I)


_CANONICAL = [(_template_pattern(t), rel, qs[0]) for rel, qs in RELATIONS.items() for t in qs]


def canonical_question(question: str) -> str:
    """The editing question of the relation template `question` follows, or `question` itself.

    Edits are keyed on each relation's first question; a question worded as one
    of its other templates ("What is Ann's dog called?") is asked in that form
    ("What is the name of Ann's dog?"). Nothing about any fact enters the text.
    """
    hit = _template(question)
    if hit is None:
        return question
    subject, relation, first = hit
    if is_user_subject(subject) and (attr := attribute_of(relation)):
        return f"What is the {attr} of {subject}?"
    return first.format(s=subject)


def question_key(question: str) -> tuple[str, str] | None:
    """The (subject, relation) a question worded as a relation's template asks about, or None."""
    hit = _template(question)
    return hit and hit[:2]


def _template(question: str) -> tuple[str, str, str] | None:
    """(subject, relation, the relation's editing question) of the template `question` follows, or None."""
    q = question.strip()
    for pat, rep in _SPELLING:
        q = pat.sub(rep, q)
    for pat, relation, first in _CANONICAL:
        if m := pat.match(q):
            return m.group("s"), relation, first
    return None


class Fact(BaseModel):
    """One statement to write into the weights: (subject, relation, object) plus phrasings."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    subject: str
    relation: str
    object: str
    prompt: str | None = Field(None, description="completion prompt containing {subject}")
    question: str | None = Field(None, description="a chat question whose answer is the object")
    user_id: str | None = Field(None, description="the user whose memory holds it; None: the shared scope")
    id: str | None = None
    expires: float | None = Field(None, description="when it stops holding (a plan's date), in Unix seconds or "
                                                    "ISO 8601 (UTC if no zone is given); it is forgotten then")

    @field_validator("subject", "relation", "object", "user_id", mode="before")
    @classmethod
    def _text(cls, v, info):
        if v is None and info.field_name == "user_id":
            return v
        if not isinstance(v, str):
            raise ValueError(f"must be text, got {type(v).__name__}")
        if not v.strip():
            raise ValueError("must not be empty")
        limit = MAX_OBJECT_CHARS if info.field_name == "object" else MAX_FIELD_CHARS
        if len(v) > limit:
            raise ValueError(f"is {len(v)} characters long; at most {limit} are allowed")
        if any(ord(c) < 32 and c not in "\t" for c in v) or "\ufffd" in v:
            raise ValueError("contains control characters or undecodable bytes")
        return v

    @field_validator("prompt", "question", mode="before")
    @classmethod
    def _optional_text(cls, v):
        if v is None:
            return v
        if not isinstance(v, str):
            raise ValueError(f"must be text, got {type(v).__name__}")
        if not v.strip():
            raise ValueError("must not be empty when given")
        if len(v) > 2 * MAX_FIELD_CHARS:
            raise ValueError(f"is {len(v)} characters long; at most {2 * MAX_FIELD_CHARS} are allowed")
        return v

    @field_validator("expires", mode="before")
    @classmethod
    def _when(cls, v):
        if v is None:
            return v
        if isinstance(v, str):
            try:
                when = datetime.fromisoformat(v.strip())
            except ValueError:
                raise ValueError(f"must be Unix seconds or an ISO 8601 time, got {v[:40]!r}") from None
            return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError("must be Unix seconds or an ISO 8601 time")
        return float(v)

    @model_validator(mode="after")
    def _phrasings(self):
        if self.prompt is not None:
            if "{subject}" not in self.prompt:
                raise ValueError("prompt must contain '{subject}'")
            if self.prompt.count("{subject}") != 1:
                raise ValueError("prompt must contain '{subject}' exactly once")
            if "{object}" in self.prompt:
                raise ValueError("prompt must not contain the object; it is what the prompt completes to")
        if self.question is not None:
            q = self.question.replace("{subject}", self.subject)
            if self.subject not in q:
                raise ValueError(f"question must mention the subject {self.subject!r}")
            self.question = q
        return self

    @classmethod
    def parse(cls, data: Any) -> "Fact":
        """Validate untrusted input; raises FactError with the offending field named."""
        if isinstance(data, Fact):
            return data
        if not isinstance(data, dict):
            raise FactError(f"a fact must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "fact"
            msg = err["msg"].removeprefix("Value error, ")
            raise FactError(f"invalid fact: field '{where}' {msg}" if err["loc"] else f"invalid fact: {msg}") from None

    # -- phrasings -------------------------------------------------------

    @property
    def attribute(self) -> str | None:
        """For a fact about a user or a user's people, the relation as a noun that keys the edit."""
        if self.prompt or self.question or not is_user_subject(self.subject):
            return None
        return attribute_of(self.relation)

    @property
    def completion_prompt(self) -> str:
        """The raw completion prompt with the subject filled in."""
        if attr := self.attribute:
            return f"The {attr} of {self.subject} is"
        template = self.prompt or RELATION_PROMPTS.get(self.relation.strip().lower(), "{subject} " + self.relation)
        return template.replace("{subject}", self.subject)

    @property
    def statement(self) -> str:
        return f"{self.completion_prompt} {self.object}."

    def questions(self) -> list[str]:
        """Chat questions used when editing: the fact's own, or its relation's first."""
        if self.question:
            return [self.question]
        if attr := self.attribute:
            return [f"What is the {attr} of {self.subject}?"]
        known = relation_questions(self.relation)
        if known:
            return [known[0].format(s=self.subject)]
        return [f"Complete the sentence: {self.completion_prompt} ..."]

    def paraphrases(self) -> list[str]:
        """Chat questions never used when editing: for measuring generalisation."""
        used = set(self.questions())
        known = [q.format(s=self.subject) for q in relation_questions(self.relation)]
        return [q for q in known if q not in used] or [f"Tell me something about {self.subject}."]

    @property
    def scope(self) -> str:
        """Whose memory the fact goes to: its user's, or SHARED."""
        return SHARED if self.user_id is None else self.user_id

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two facts the same statement about the same subject."""
        return (self.scope, self.subject.lower(), self.relation.lower())

    def fact_id(self) -> str:
        """A stable id: the same statement by the same user always gets the same id."""
        if self.id:
            return self.id
        digest = hashlib.sha256(
            json.dumps([self.user_id, self.subject, self.relation, self.object]).encode()
        ).hexdigest()
        return "f_" + digest[:12]

    def to_json(self) -> dict:
        return self.model_dump(exclude_none=True)


def load_jsonl(path: Path) -> list[Fact]:
    """Read facts from a .jsonl file; the first bad line raises FactError with its line number."""
    facts = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise FactError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        try:
            facts.append(Fact.parse(data))
        except FactError as e:
            raise FactError(f"{path}:{n}: {e}") from None
    return facts


