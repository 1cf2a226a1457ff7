"""The rule extractor: a small English grammar of what people say about themselves and their world (no model)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..facts import Fact
from ..facts.perspective import to_third_person, user_subject
from .base import MAX_CHARS, MAX_OBJECT_WORDS, latest, make_fact
from .people import full_name
from .vocabulary import (BUSINESSES, DATE, DIETS, FAVOURITES, FIELDS, GERUNDS, INSTRUMENTS, JOBS, JOB_SUFFIX, KIN_ADJ,
                         MONTHS, NATIONALITIES, NOT_JOBS, NOT_NAMES, NOT_NOW, ONGOING, PETS, PLAN_VERBS, PUNCT, ROLES,
                         ROLE_WORD, SPORTS, STOP, TITLES)

_CONTRACTIONS = [
    (re.compile(r"[\u2018\u2019`]"), "'"),
    (re.compile(r"\x1b\[[0-9;]*[A-Za-z]"), ""),  # terminal colour codes pasted along with text
    (re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]"), " "),
    (re.compile(r"\bi\b"), "I"),
    (re.compile(r"\bI(?:'m|m)\b", re.I), "I am"),
    (re.compile(r"\bI(?:'ve|ve)\b", re.I), "I have"),
    (re.compile(r"\bI'd\b", re.I), "I would"),
    (re.compile(r"\bI'll\b", re.I), "I will"),
    (re.compile(r"\b(he|she|it|that|there|what|who|where|name|birthday)'s\b", re.I), r"\1 is"),
    (re.compile(r"\b(we|they|you)'re\b", re.I), r"\1 are"),
    (re.compile(r"(?<=\w)'s (?=(?:an?|called|named|from|allergic|married|originally)\b)", re.I), " is "),
    (re.compile(r",? \b(?:like|as) I (?:said|told you|mentioned)(?: before| earlier)?\b", re.I), ""),
    (re.compile(r",? \b(?:to be honest|tbh|if I am honest)\b", re.I), ""),
    (re.compile(r"(^|[.!?]\s+)originally from\b", re.I), r"\1I am originally from"),
    (re.compile(r"\b(we|they|you)'ve\b", re.I), r"\1 have"),
    (re.compile(r"\bcan'?t\b", re.I), "can not"),
    (re.compile(r"\bwon't\b", re.I), "will not"),
    (re.compile(r"\b(do|does|did|is|are|was|were|have|has|had|could|would|should)n'?t\b", re.I), r"\1 not"),
]

# A title's full stop ("Dr. Lucia Bianchi") ends no sentence.
_SENTENCE = re.compile(r"(?<=[.!?])(?<!\bDr\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bMrs\.)(?<!\bProf\.)(?<!\bSt\.)\s+|\n+")

_VERB = (r"(?:am|is|are|was|have|has|live|lives|work|works|moved|speak|speaks|love|loves|like|likes|hate|hates|"
         r"enjoy|enjoys|drive|drives|own|owns|play|plays|support|supports|studied|grew|plan|plans|just|really|"
         r"also|started|do|does|can|teach|teaches|run|runs|study|studies|learn|eat|eats|drink|drinks|now)")

# One capturing group around it all: split() also returns the separators.
_CLAUSE = re.compile(
    r"(\s*[,;:]\s*(?=(?:(?:and|but|so|or|because|though|although|while|plus|then|now|also|since)\s+)?"
    r"(?:I|we|he|she|they|you|it|my|our|his|her|their|this|there|who|which|btw|by the way|actually|anyway"
    r"|please|everyone|not that|living|working|moving|born|raised|grew|based|originally|sorry|oops|no wait|"
    r"what|where|when|how|why|any|can|could|should|"
    + _VERB + r")\b)"
    # "I live in Derby but if I lived in Bath ...": the condition is its own clause
    r"|\s+(?=(?:and|but|so|because|though|although|while|plus|then|or)\s+(?:I|we|he|she|they|my|our|if|unless|"
    + _VERB + r")\b)"
    r"|\s+(?=(?:who|which)\s)"
    # A bare "I <verb>" ("my name is carlos i live ..."), unless a conjunction before it already split.
    r"|(?<!\band)(?<!\bbut)(?<!\bso)(?<!\bor)(?<!\bthen)(?<!\bplus)(?<!\bbecause)(?<!\bwhile)(?<!\bthough)"
    r"\s+(?=(?-i:I)\s+" + _VERB + r"\b))",
    re.I,
)

_TIME_WORDS = (r"(?:week|month|year|weekend|summer|winter|spring|fall|autumn|time|monday|tuesday|wednesday|"
               r"thursday|friday|saturday|sunday)")

# A time still to come: "I'm visiting Kyoto in November" is a plan, "I'm writing a novel" is going on now.
_FUTURE = re.compile(
    r"\b(?:next (?:" + _TIME_WORDS + "|" + MONTHS + r")|tomorrow|tonight|soon|"
    r"this (?:week|weekend|summer|winter|spring|fall|autumn|evening|afternoon)|"
    r"on (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)|in (?:" + MONTHS + r")|"
    r"in the (?:spring|summer|fall|autumn|winter|new year)|later this|after (?:christmas|easter|the holidays)|"
    r"in (?:a few|two|three|\d+) (?:days|weeks|months))\b",
    re.I,
)

# A clause that only corrects what was just said: "I live in Bristol, sorry, I mean Bath".
_CORRECTION = re.compile(r"^(?:(?:sorry|oops|no|wait|correction|I mean|I meant|or rather|rather)\b[\s,:;!.-]*)+", re.I)

_PREFIX = re.compile(
    r"^(?:(?:hi|hey|hello|ok|okay|so|well|oh|yeah|yes|no|and|but|also|btw|by the way|fyi|just so you know|"
    r"actually|anyway|anyways|um|uh|honestly|lol|haha|plus|then|now|remember that|remember|please note that|"
    r"note that|for context|for the record|fun fact|just|alright|sure|cool|great|nice|basically|although|"
    r"sorry|correction|I meant|I mean|please|wait|"
    r"though|because|since|while|or|(?:next|this|last|every) " + _TIME_WORDS + r"|tomorrow|tonight|today|"
    r"yesterday|soon|recently|in (?:" + MONTHS + r"))\b[\s,:;!.-]*)+",
    re.I,
)

# Clauses that do not assert a current fact: conditions, wishes, hedges, the past, reported speech.
_NOT_ASSERTED = re.compile(
    r"\b(?:if|suppose|supposing|imagine|pretend|wish|hypothetically|would|could|might|maybe|perhaps|"
    r"probably|possibly|think|guess|believe|hope|hoping|want|wants|wanna|dream|dreaming|unless|whether|"
    r"used to|anymore|any more|no longer|formerly|previously|once|someday|one day|should|says|said|told|"
    r"tells|say|saying|roleplay)\b",
    re.I,
)

# A clause ending in one of these takes the next bare "I ..." clause as its complement.
_COMPLEMENT = re.compile(
    r"\b(?:think|thinks|thought|guess|believe|believes|hope|wish|suppose|imagine|pretend|say|says|said|saying|"
    r"tell|tells|told|know|knows|mean|feel|doubt|sure|that|if|whether|maybe|perhaps|probably)\s*$",
    re.I,
)

_QUESTION = re.compile(
    r"^(?:what|where|when|who|whom|whose|why|how|which|do|does|did|am|is|are|was|were|can|could|would|will|"
    r"should|shall|have|has|may|tell me|guess)\b",
    re.I,
)


def _normalise(text: str) -> str:
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    return text


def _phrase(raw: str, lists: bool = False) -> tuple[str | None, str]:
    """The noun phrase at the start of `raw` and what follows it; None if there is none.

    A comma ends the phrase ("Canada, most people ...") unless `lists` ("Portuguese, Spanish and French").
    """
    words = raw.split()
    n = len(words)
    for i, w in enumerate(words):
        if w.strip(PUNCT).lower() in STOP:
            n = i
            break
        if w.endswith(",") and not lists:
            n = i + 1
            break
        if w.lower() in ("living", "based") and words[i + 1:i + 2] == ["in"]:  # "from Porto living in Berlin"
            n = i
            break
    obj = " ".join(words[:n]).strip(PUNCT + " ")
    rest = " ".join(words[n:])
    if not obj or n > MAX_OBJECT_WORDS:
        return None, rest
    return obj, rest


def _name(raw: str, cased: bool) -> str | None:
    """A person's or pet's name at the start of `raw`: capitalised words (one word in lowercase text).

    A title stays before a bare family name ("Mrs Okafor") and is dropped before a full name ("Dr. Lucia Bianchi").
    """
    words = raw.split()[:4]
    title = bool(words) and cased and words[0].strip(PUNCT).lower() in TITLES and words[0][0].isupper()
    out = []
    for w in words[1:] if title else words[:3]:
        bare = w.strip(PUNCT)
        if bare.endswith("'s"):
            bare = bare[:-2]
        if (not bare or bare.lower() in NOT_NAMES or bare.split("-")[0].lower() in NOT_NAMES or bare.lower() in STOP
                or not bare[0].isalpha()):
            break
        if cased and not bare[0].isupper():
            break
        out.append(bare)
        if not cased or bare != w:  # punctuation after a word ends the name
            break
    if title and len(out) == 1:
        out.insert(0, words[0].strip(PUNCT))
    return " ".join(out) or None


def _names(raw: str, cased: bool) -> str | None:
    """Names said together ("two cats called Bean and Sprout"): one object, as a list is."""
    names = []
    for part in re.split(r",\s*(?:and\s+)?|\s+and\s+", raw, maxsplit=4):
        if not (name := _name(part, cased)):
            break
        names.append(name)
        if name != part.strip(PUNCT + " "):
            break
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else (names or [None])[0]


def _head(phrase: str) -> str:
    return phrase.split()[-1].lower()


def _is_job(phrase: str) -> bool:
    head = _head(phrase)
    if head in NOT_JOBS or " of " in f" {phrase.lower()} ":
        return False
    return head in JOBS or bool(JOB_SUFFIX.search(head))


def _drop_words(text: str, n: int) -> str:
    parts = text.split(maxsplit=n)
    return parts[n] if len(parts) > n else ""


def _base_form(vp: str) -> str:
    first, _, rest = vp.partition(" ")
    base = GERUNDS.get(first.lower(), first)
    return f"{base} {rest}".strip()


@dataclass
class _Subject:
    text: str  # the stored subject
    kind: str  # "user", "we", "role", "named", "person" (one of the user's people, by full name)
    role: str = ""  # for kind "role": the relation word ("sister", "dog")
    owner: _Subject | None = None  # for kind "role": whose ("my brother's cat": the brother)

# Relations a subject kind may take: "we" and third parties only say a few things reliably.
_WE_RELATIONS = {"lives in", "is planning to", "is from", "owns a", "runs a", "follows the diet", *PETS.values()}

_NAMED_RELATIONS = {"lives in", "works at", "works as", "was born in", "was born on", "is from", "grew up in",
                    "studied at", "is married to", "speaks", "plays the", "is named", "teaches", "runs a", "studies",
                    "studies at", "works in", *PETS.values()}

# The relations that name one of the user's people: said with a full name, they become the subject.
_NAMES_A_PERSON = {r for r in ROLES.values() if r}

_SUBJ_USER = re.compile(rf"^(?P<we>(?:my|our) {KIN_ADJ}(?:{ROLE_WORD}) and I|we)\b|^I\b", re.I)

# "my favourite band is X", "my sister's birthday is on Y", and the form-like "fav food: sushi".
_SUBJ_ATTR = re.compile(
    rf"^(?:(?:my|our) (?:{KIN_ADJ}(?P<role>{ROLE_WORD})'s )?|(?P<pron>his|her|its|their) )?(?:all[- ]time )?"
    r"(?P<attr>name|birthday|hometown|home town|native language|mother tongue|first language|job title|job|"
    r"profession|occupation|"
    r"(?:favou?rite|fave?) [\w-]+(?: [\w-]+)?)(?: (?:is|was)(?: on)?|:) (?P<o>.*)",
    re.I,
)

_SUBJ_ROLE = re.compile(rf"^(?:my|our) {KIN_ADJ}(?P<role>{ROLE_WORD})(?:'s (?P<theirs>{ROLE_WORD}))?\b,?", re.I)

# "Beatriz Salgado, my flatmate, speaks ...": said as "my flatmate Beatriz Salgado speaks ...".
_NAME_FIRST = re.compile(
    rf"^(?P<pre>(?i:(?:oh|and|so|well|hey|hi|by the way|btw|fun fact|quick thing|just so you know)[\s,:!]+)*)"
    rf"(?P<name>[A-Z][\w'-]*(?: [A-Z][\w'-]*){{0,2}}), (?P<role>(?i:(?:my|our) {KIN_ADJ}(?:{ROLE_WORD}))),\s+")

_SUBJ_PRONOUN = re.compile(r"^(?:he|she|who|which)\b", re.I)

_SUBJ_NAME = re.compile(r"^[A-Z][\w'-]*(?: [A-Z][\w'-]*){0,2}")

_ADV = (r"(?:(?:really|also|still|now|currently|just|actually|recently|absolutely|totally|truly|definitely|"
        r"honestly|originally|mostly|usually|basically|literally|already|even|seriously|kinda|finally|"
        r"officially|only)\s+)*")

Found = list[tuple[str, str]]  # (relation, object) pairs for one subject


def _plain(relation: str, lists: bool = False):
    def handle(m: re.Match, r: _Reader) -> Found:
        obj, _ = _phrase(m["o"], lists)
        return [(relation, obj)] if obj else []
    return handle


def _place(relation: str):
    """A place; in "a tiny flat in Paris" or "a farm in Iowa" the named place is the answer."""
    def handle(m: re.Match, r: _Reader) -> Found:
        obj, rest = _phrase(m["o"])
        inner = re.match(r"in (.+)", rest, re.I)
        if obj and inner and re.match(r"(?:an?|the|across|near|just|outside|right) [a-z]", obj):
            named = _phrase(inner[1])[0]
            if named and (named[0].isupper() or not r.cased):
                obj = named
        r.place = obj or r.place
        return [(relation, obj)] if obj else []
    return handle


def _lived(m: re.Match, r: _Reader) -> Found:
    """A past home, or one just come back to, is no fact yet, but "there" may name it next."""
    r.place = _phrase(m["o"])[0] or r.place
    return []


def _there(m: re.Match, r: _Reader) -> Found:
    """"I lived in Oslo for years and I still live there": the place named last in the message."""
    return [("lives in", r.place)] if r.place else []


def _named(relation: str):
    def handle(m: re.Match, r: _Reader) -> Found:
        obj = _name(m["o"], r.cased)
        return [(relation, obj)] if obj else []
    return handle


def _named_last(m: re.Match, r: _Reader) -> Found:
    """"We got a puppy. We named her Waffles": the pet or person just spoken of is named. The fact is about
    that one, not this clause's subject ("we"), so it is added here and the clause itself finds nothing."""
    if r.last is not None and r.last.kind == "role" and (name := _name(m["o"], r.cased)):
        r.add(r.last, "is named", name)
    return []


def _born(m: re.Match, r: _Reader) -> Found:
    out, text = [], m["o"]
    while True:
        prep, _, text = text.partition(" ")
        obj, text = _phrase(text)
        # "born in Krakow in 1931": a year alone is no birthday
        if obj and not re.fullmatch(r"\d{4}", obj):
            out.append(("was born on" if prep.lower() == "on" or DATE.search(obj) else "was born in", obj))
        if not re.match(r"(?:on|in) ", text, re.I):
            return out


def _born_and_raised(m: re.Match, r: _Reader) -> Found:
    obj, _ = _phrase(m["o"])
    return [("was born in", obj), ("grew up in", obj)] if obj else []


def _work(first: str):
    """Works at X (as Y), works as Y (at X): the tail names the other half."""
    def handle(m: re.Match, r: _Reader) -> Found:
        obj, rest = _phrase(m["o"])
        if not obj or obj.lower() in ("myself", "himself", "herself", "themselves", "ourselves"):
            return []
        called = re.match(r"(?:called|named) (.+)", rest, re.I)
        if first == "works at" and called and (name := _name(called[1], r.cased)):  # "a startup called Nimbus"
            obj, rest = name, _drop_words(called[1], len(name.split()))
        out = [(first, obj)]
        second, tail = ("works as", r"as (.+)") if first == "works at" else ("works at", r"(?:at|for) (.+)")
        if (m2 := re.match(tail, rest, re.I)) and (other := _phrase(m2[1])[0]):
            out.append((second, other))
        return out
    return handle


_DURATION = re.compile(r"(?:\d+|an?|one|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|several|many|"
                       r"a few|a couple of) (?:years?|months?|weeks?|days?|decades?)\b", re.I)


# "a regular at the pub", "a guest at the wedding": an "at" that names no employer
_NOT_STAFF = {"regular", "guest", "customer", "patient", "visitor", "client", "member", "fan", "tourist", "bit",
              "lot", "little", "big", "huge", "while", "mess", "wreck", "night", "morning", "person", "people"}


def _job(m: re.Match, r: _Reader) -> Found:
    obj, rest = _phrase(m["o"])
    if not obj or obj.split()[0].lower() in NOT_NOW:
        return []
    # a title the vocabulary does not know is still a job when an employer follows it
    employer = re.match(r"(?:at|for) (?:an? |the )?[A-Za-z]", rest) and len(obj.split()) <= 3 and obj.islower()
    if not (_is_job(obj) or (employer and _head(obj) not in _NOT_STAFF)):
        return []
    out = [("works as", f"{m['art']} {obj}")]
    tail = re.match(r"(at|for|from) (.+)", rest, re.I)
    other, after = _phrase(tail[2]) if tail else (None, "")
    if other and not _DURATION.match(other):
        out.append(("is from" if tail[1].lower() == "from" else "works at", other))
        if (home := re.match(r"(?:living|based) in (.+)", after, re.I)) and (place := _phrase(home[1])[0]):
            out.append(("lives in", place))
    return out


def _fan(m: re.Match, r: _Reader) -> Found:
    """"A Celtic supporter" supports a club; "a Beatles fan" only likes them."""
    if m["what"].lower() == "fan":
        obj = _phrase(m["o"])[0]
        return [("likes", obj)] if obj else []
    name = _name(m["o"], r.cased)
    return [("supports the football club", name)] if name and r.cased else []


def _plays(m: re.Match, r: _Reader) -> Found:
    obj, _ = _phrase(re.sub(r"^the ", "", m["o"], flags=re.I))
    if not obj:
        return []
    low = obj.lower()
    if low in INSTRUMENTS or _head(low) in INSTRUMENTS:
        return [("plays the", obj)]
    sport = next((" ".join(obj.split()[:n]) for n in (2, 1) if " ".join(low.split()[:n]) in SPORTS), None)
    return [("plays", sport)] if sport else []  # "chess most evenings": the game


def _owns(m: re.Match, r: _Reader) -> Found:
    obj, _ = _phrase(m["o"])
    return [("owns a", obj)] if obj and _head(obj) not in PETS else []


def _went_to(m: re.Match, r: _Reader) -> Found:
    obj, _ = _phrase(m["o"])
    school = obj and re.search(r"\b(?:university|college|school|academy|institute|polytechnic)\b", obj, re.I)
    return [("studied at", obj)] if school else []


def _going_to(m: re.Match, r: _Reader) -> Found:
    obj, _ = _phrase(m["o"])
    if not obj:
        return []
    first = obj.split()[0]
    if first.lower() in PLAN_VERBS:
        return [("is planning to", obj)]
    return [("is planning to", f"go to {obj}")] if r.cased and first[0].isupper() else []


def _will(m: re.Match, r: _Reader) -> Found:
    """"Next year I'll retire": a plan when its verb is one."""
    obj, _ = _phrase(m["o"])
    return [("is planning to", obj)] if obj and obj.split()[0].lower() in PLAN_VERBS else []


def _travel(m: re.Match, r: _Reader) -> Found:
    obj, _ = _phrase(m["o"])
    if not obj or (m["v"].lower() in ("going", "heading") and not (obj[0].isupper() if r.cased else r.future)):
        return []
    return [("is planning to", f"{GERUNDS[m['v'].lower()]} to {obj}")]


def _plan(m: re.Match, r: _Reader) -> Found:
    obj, _ = _phrase(m["o"])
    return [("is planning to", _base_form(obj))] if obj else []


def _i_am_name(m: re.Match, r: _Reader) -> Found:
    name = _name(m["o"], r.cased)
    # Only "I'm Dana" on its own or before a comma: "I'm Dana's mum" or "I'm Italian" are not names.
    if not r.cased or not name or not re.match(re.escape(name) + r"\s*(?:,|$)", m["o"].strip(".!? ")):
        return []
    return [("is named", name)]


def _alternatives(words) -> str:
    return "|".join(sorted(map(re.escape, words), key=len, reverse=True))


_NOW = re.compile(r"(?:at the moment|at present|right now|these days|lately)\b", re.I)


def _activity(obj: str | None, rest: str) -> str | None:
    """An activity keeps where it happens: "sleeping on the radiator", not "sleeping"."""
    if (obj and obj.split()[0].lower().endswith("ing") and not _NOW.match(rest)
            and (pp := re.match(r"(in|on|at|under|around) (.+)", rest, re.I))):
        where = _phrase(pp[2])[0]
        if where and len(obj.split()) + 1 + len(where.split()) <= MAX_OBJECT_WORDS:
            return f"{obj} {pp[1]} {where}"
    return obj


def _fond(relation: str):
    """Likes and dislikes: a list stays one object, an activity keeps its place."""
    def handle(m: re.Match, r: _Reader) -> Found:
        obj = _activity(*_phrase(re.sub(r"^(?:his|her|their|its) ", "", m["o"], flags=re.I), lists=True))
        if obj and (to := re.match(r"to (\S+)(.*)", obj)):  # "I love to cook": cooking
            obj = _gerund(to[1]) + to[2]
        return [(relation, obj)] if obj else []
    return handle


def _gerund(verb: str) -> str:
    low = verb.lower()
    if low.endswith("ie"):
        return verb[:-2] + "ying"
    if low.endswith("e") and not low.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    if re.fullmatch(r"[^aeiou]*[aeiou][^aeiouwxy]", low):  # swim -> swimming
        return verb + verb[-1] + "ing"
    return verb + "ing"


def _diet(m: re.Match, r: _Reader) -> Found:
    """"I'm vegan", "I'm on a keto diet", "I eat halal", "I keep kosher": whichever group the pattern filled."""
    return [("follows the diet", next(v for k, v in m.groupdict().items() if k.startswith("o") and v))]


def _nationality(m: re.Match, r: _Reader) -> Found:
    out = [("has the nationality", m["o"])]
    if (tail := re.match(r"\s*,?\s*(?:living|based) in (.+)", m["rest"], re.I)) and (place := _phrase(tail[1])[0]):
        out.append(("lives in", place))
    return out


def _been_in(m: re.Match, r: _Reader) -> Found:
    """"I've been in Milan for years" is a home; "I've been in Milan" may be a visit."""
    obj, rest = _phrase(m["o"])
    return [("lives in", obj)] if obj and re.match(r"(?:for|since) ", rest, re.I) else []


def _lessons(m: re.Match, r: _Reader) -> Found:
    """"I'm taking piano lessons" is learning; "I'm taking a pottery class in May" is a plan."""
    if r.future:
        return [("is planning to", f"{GERUNDS[m['v'].lower()]} {m['x']}")]
    obj, _ = _phrase(m["o"])
    return [("is learning", obj)] if obj else []


def _studies(m: re.Match, r: _Reader) -> Found:
    obj, rest = _phrase(m["o"])
    if obj and re.match(r"(?:part|full)[- ]time|hard|abroad|online|remotely|at night|a lot", obj, re.I):
        return []
    out = [("studies", obj)] if obj else []
    if (at := re.match(r"at (.+)", rest, re.I)) and (school := _phrase(at[1])[0]):
        out.append(("studies at", school))
    return out


# "I'm learning a lot": how much, not what.
_NOT_A_SKILL = re.compile(r"(?:a lot|lots|loads|so|much|more|something|stuff|things|from|about|fast|quickly|slowly)\b",
                          re.I)


def _learning(m: re.Match, r: _Reader) -> Found:
    obj, _ = _phrase(m["o"])
    if not obj or _NOT_A_SKILL.match(obj):
        return []
    if to := re.match(r"(?:how )?to (?:(?:play|speak) (?:the )?(\S.*)|(\S+)(.*))", obj, re.I):
        obj = to[1] or _gerund(to[2]) + to[3]
    obj = re.sub(r"^the ", "", obj, flags=re.I)
    return [("is planning to", f"learn {obj}")] if r.future else [("is learning", obj)]


# An ongoing activity's object starts with a thing, not with more verb ("writing to ask ...").
_NOT_A_THING = {"to", "about", "up", "back", "down", "out", "off", "home", "here", "there", "hard", "late"}


def _no_object(verb: str, obj: str, future: bool) -> bool:
    """"I'm moving back home", "I'm working late": a particle or adverb, not a thing ("applying to X next
    month" is a plan)."""
    return obj.split()[0].lower() in _NOT_A_THING and not (verb == "applying" and future)


def _only_a_duration(verb: str, obj: str) -> bool:
    """"I've been saving for ages", "learning since 2019": how long, not what ("applying for" takes an object)."""
    low = obj.lower()
    return bool(re.fullmatch(r"(?:for|since) .*", low) and not verb.endswith(("for", "from"))
                or re.fullmatch(r"ages|years|months|weeks|a while|a long time|forever", low))


def _progressive(m: re.Match, r: _Reader) -> Found:
    """"I'm writing a novel" is going on now; "I'm visiting Kyoto in November" is a plan."""
    verb = m["v"].lower()
    obj, _ = _phrase(m["o"])
    if not obj or _no_object(verb, obj, r.future) or _only_a_duration(verb, obj):
        return []
    if r.future and verb in GERUNDS:
        return [("is planning to", f"{GERUNDS[verb]} {obj}")]
    return [("is currently", f"{m['v']} {obj}")] if verb in ONGOING else []


def _runs(m: re.Match, r: _Reader) -> Found | None:
    obj, _ = _phrase(m["o"])
    return [("runs a", obj)] if obj and _head(obj) in BUSINESSES else None


# Whom someone teaches, not what.
_NOT_A_SUBJECT = {"my", "our", "his", "her", "their", "people", "kids", "children", "students", "myself", "himself",
                  "herself", "them", "him", "me", "us", "you"}


def _teaches(m: re.Match, r: _Reader) -> Found:
    obj, rest = _phrase(m["o"])
    obj = obj and obj.split(" to ")[0]
    out = [("teaches", obj)] if obj and obj.split()[0].lower() not in _NOT_A_SUBJECT else []
    if (at := re.match(r"at (.+)", rest, re.I)) and (place := _phrase(at[1])[0]):
        out.append(("works at", place))
    return out


def _works_in(m: re.Match, r: _Reader) -> Found:
    """A field and where ("I work in marketing at X")."""
    out = [("works in", m["o"])]
    if (at := re.match(r"(?:at|for) (.+)", m["rest"], re.I)) and (place := _phrase(at[1])[0]):
        out.append(("works at", place))
    return out


# What may follow a food or drink someone avoids that makes it a habit of the hour, not of the diet.
_WHEN = re.compile(r"(?:after|before|during|at night|in the (?:morning|evening|afternoon)|on (?:week|work))", re.I)

_NOT_FOOD = {"much", "anything", "a", "well", "enough", "out", "that", "it", "there", "here", "many", "too", "so",
             "very", "alone", "late", "early", "any"}


def _avoids(relation: str):
    def handle(m: re.Match, r: _Reader) -> Found:
        obj, rest = _phrase(re.sub(r"^any ", "", m["o"], flags=re.I), lists=True)
        if not obj or obj.split()[0].lower() in _NOT_FOOD or _WHEN.match(rest):
            return []
        return [(relation, obj)]
    return handle


_BE = r"(?:am|is|are)"

_HAVE = r"(?:have|has)"

_DIET = _alternatives(DIETS)

_NATIONALITY = _alternatives(NATIONALITIES)

_ONGOING = _alternatives(ONGOING + tuple(GERUNDS))

_FIELD = _alternatives(FIELDS)

# Tried in order at the start of the predicate; the first that matches decides, even if it finds no
# usable object ("a huge fan of your work" must not fall through to "a huge ... fan"), unless its
# handler returns None ("I'm running a marathon" is no business: the next pattern may read it).
_PREDICATES = [
    (rf"{_BE} (?:called|named) (?P<o>.+)", _named("is named")),
    (r"(?:named|called|call) (?:her|him|it|them) (?P<o>.+)", _named_last),
    (rf"(?:live|lives|(?:{_BE} )?living|{_HAVE} (?:been living|lived)|(?:{_HAVE} )?settled(?: down)?)"
     rf"(?: (?:with|across|near|outside|just outside|right) [^,]{{1,40}}?)? in (?P<o>.+)",
     _place("lives in")),
    (rf"(?:moved|{_HAVE} moved|relocated|{_HAVE} relocated)(?: back| here| over)?(?: from [\w' .-]{{1,40}}?)? to "
     rf"(?P<o>.+)",
     _place("lives in")),
    (rf"{_HAVE} been (?:based )?in (?P<o>.+)", _been_in),
    (rf"(?:lived|{_BE} back(?: home)?) in (?P<o>.+)", _lived),
    (rf"(?:live|lives|{_BE} living) there\b", _there),
    (rf"(?:{_BE} )?based in (?P<o>.+)", _place("lives in")),
    (rf"(?:{_BE}|come|comes) from (?P<o>.+)", _place("is from")),
    (r"(?:grew up|(?:was |were )?raised|spent (?:my|his|her|their|our) (?:childhood|early years)) (?:in|on|at) "
     r"(?P<o>.+)", _place("grew up in")),
    (r"(?:(?:was|were) )?born and (?:raised|bred) (?:in|on) (?P<o>.+)", _born_and_raised),
    (r"(?:(?:was|were) )?born (?P<o>(?:on|in) .+)", _born),
    (rf"(?:{_BE}|{_HAVE} been|went|{_HAVE} gone|{_HAVE} turned|turned) (?:an? )?(?:strict |strictly |fully |mostly |"
     rf"full[- ]time |practicing |practising )?(?P<o>{_DIET})\b(?!-)", _diet),
    (rf"(?:{_BE} on an? (?:strict )?(?P<o>{_DIET}) diet|(?:only )?(?:eat|eats) (?P<o2>{_DIET})"
     rf"(?=\s*(?:$|[,.!;]|and\b|but\b|because\b|so\b|now\b|too\b))|(?:keep|keeps) (?P<o3>kosher)|"
     rf"{_BE} doing (?P<o4>keto|paleo))", _diet),
    (rf"{_BE} (?:an? )?(?:proud |half[- ])?(?P<o>{_NATIONALITY})"
     rf"(?P<rest>(?:\s*[,.!;]|\s+(?:and|but|living|based|by|though|too|myself|eh)\b|$).*)", _nationality),
    (rf"(?:work|works|(?:{_BE} )?working|{_HAVE} been working|{_BE} employed|started|{_HAVE} started|"
     rf"started working|{_HAVE} worked)(?: remotely| full[- ]time| part[- ]time| freelance)? (?:at|for|by) "
     rf"(?P<o>.+)", _work("works at")),
    (rf"(?:work|works|(?:{_BE} )?working|{_HAVE} been working) as (?P<o>.+)", _work("works as")),
    (rf"(?:{_HAVE} |just )*(?:started|got|landed|{_HAVE} got) (?:a |my )?(?:new )?job (?:at|with|for) (?P<o>.+)",
     _work("works at")),
    (r"(?:manage|manages|lead|leads|head|heads) (?:a|the) team\b[^,.;]{0,40}? at (?P<o>.+)", _plain("works at")),
    (rf"(?:work|works|(?:{_BE} )?working|{_HAVE} been working) in (?P<o>{_FIELD})\b\s*(?P<rest>.*)", _works_in),
    (rf"{_BE} (?:an? )?(?:big |huge |massive |great |long-?time )?fan of (?P<o>.+)", _plain("likes")),
    (rf"(?:{_BE} (?:an? )?member of|belongs? to) (?P<o>.+)", _plain("is a member of")),
    (rf"{_BE} in (?P<o>(?:an?|the) [\w' -]{{1,60}} (?:club|team|choir|orchestra|league))\b", _plain("is a member of")),
    (rf"(?:{_BE} married to|married) (?P<o>.+)", _named("is married to")),
    (rf"(?:{_BE} (?:fluent|native) in|speaks?(?: fluent)?) (?P<o>.+)", _plain("speaks", lists=True)),
    (rf"{_BE} (?:severely |very |deathly |mildly )?allergic to (?P<o>.+)", _plain("is allergic to", lists=True)),
    (rf"{_HAVE} (?:an? )?(?:severe |bad |mild )?(?P<o>[\w-]+(?: [\w-]+)?) allergy\b", _plain("is allergic to")),
    (rf"(?:hate|hates|dislike|dislikes|detest|detests|despise|despises|loathe|loathes|can not stand|"
     rf"cannot stand|(?:do|does) not (?:really |particularly |much |actually |exactly )?(?:like|enjoy|love|care for)|"
     rf"(?:{_BE} )?not (?:really |very |too |that |particularly )?(?:into|keen on|fond of)|"
     rf"(?:{_BE} )?not (?:really )?(?:an? )?(?:big |huge )?fan of) (?P<o>.+)", _fond("dislikes")),
    (rf"{_BE} not an? (?P<o>[\w-]+) drinker\b", _plain("does not drink")),
    (r"(?:(?:do|does) not (?:really |ever )?eat|never eats?) (?P<o>.+)", _avoids("does not eat")),
    (r"(?:(?:do|does) not (?:really |ever )?drink|never drinks?) (?P<o>.+)", _avoids("does not drink")),
    (r"(?:do|does) not speak(?: a word of)? (?P<o>.+)", _avoids("does not speak")),
    (rf"(?:love|loves|like|likes|enjoy|enjoys|adore|adores|{_BE} into|{_BE} obsessed with|"
     rf"{_BE} passionate about) (?P<o>.+)", _fond("likes")),
    (r"(?:drive|drives) (?:an?|the) (?P<o>.+?)(?: to (?:work|school|the \w+)\b.*)?$", _plain("drives a")),
    (rf"(?:run|runs|{_BE} running|{_HAVE} been running|manage|manages|{_BE} managing|own and run|owns and runs|"
     rf"co-own|co-owns|{_HAVE} (?:my|our|his|her|their) own) (?:an? |my own |our own |his own |her own |"
     rf"their own |the )?(?P<o>.+)", _runs),
    (rf"(?:own|owns|bought|{_HAVE} bought|{_HAVE} got) (?:an?) (?P<o>.+)", _owns),
    (r"(?:play|plays) for (?P<o>.+)", _plain("is a member of")),
    (rf"(?:play|plays|(?:{_BE} |{_HAVE} been )?playing) (?P<o>.+)", _plays),
    (r"(?:support|supports) (?P<o>.+)", _named("supports the football club")),
    (r"(?:studied|graduated|did my [\w-]+)(?: [\w-]+){0,3}? (?:at|from) (?P<o>.+)", _plain("studied at")),
    (rf"(?:study|studies|{_BE} studying|{_HAVE} been studying|(?:{_BE} )?majoring in|majors? in|"
     rf"{_BE} doing an? (?:PhD|doctorate|degree|master'?s|masters|bachelor'?s|BA|BSc|MA|MSc|MBA|diploma)"
     rf"(?: degree)? in) (?P<o>.+)", _studies),
    (rf"{_BE} an? (?:[\w'-]+ ){{0,2}}?student (?:at|of) (?P<o>.+)", _plain("studies at")),
    (rf"(?:{_BE} learning|(?:{_HAVE} )?been learning|(?:{_HAVE} )?started learning|{_BE} teaching "
     rf"(?:myself|himself|herself|themselves)) (?P<o>.+)", _learning),
    (rf"(?:{_BE} |{_HAVE} been )?(?P<v>taking|doing) (?P<x>(?:an? )?(?P<o>[\w' -]{{1,40}}?) "
     rf"(?:lessons?|classes|class|course))\b", _lessons),
    (rf"(?:teach|teaches|{_BE} teaching|{_HAVE} been teaching) (?P<o>.+)", _teaches),
    (r"went to (?P<o>.+)", _went_to),
    (rf"(?:plan|plans|(?:{_BE} )?planning|intend|intends|{_BE} intending|{_HAVE} decided|decided) (?:to|on) (?P<o>.+)",
     _plan),
    (rf"{_BE} going to (?P<o>.+)", _going_to),
    (r"will (?P<o>.+)", _will),
    (rf"(?:{_BE} )?(?P<v>flying|travelling|traveling|moving|relocating|heading|driving|going) to (?P<o>.+)",
     _travel),
    (rf"(?:{_BE}|{_HAVE} been) (?P<v>{_ONGOING}) (?P<o>.+)", _progressive),
    (rf"{_BE} (?:an? )?(?:lifelong |life-long |huge |big |die-?hard |loyal )?(?P<o>[\w'. -]{{1,40}}?) "
     rf"(?P<what>supporter|fan)\b", _fan),
    (rf"(?:{_BE}|{_HAVE} been) (?P<art>an?) (?P<o>.+)", _job),
    (r"am (?P<o>.+)", _i_am_name),
]

PREDICATES = [(re.compile(pattern, re.I), handle) for pattern, handle in _PREDICATES]

_CAPITAL = [
    re.compile(r"\bthe capital (?:city )?of (?P<x>.+?) is (?P<y>.+)", re.I),
    re.compile(r"^(?P<y>.+?) is the capital (?:city )?of (?P<x>.+)", re.I),
    re.compile(r"^(?P<x>.+?)'s capital(?: city)? is (?P<y>.+)", re.I),
]

_CALL_ME = re.compile(r"^(?:(?:please|you can|just|everyone|people|my friends|friends)\s+)*calls? me (?P<o>.+)", re.I)

_LEADING_ADV = re.compile(rf"^{_ADV}", re.I)

_AUX_ADV = re.compile(rf"^((?:am|is|are|was|were|have|has) ){_ADV}", re.I)

_POSSESSES = re.compile(r"^(?:have|has|own|owns|got|adopted|have got|has got|have adopted|just got)\b", re.I)

# The name is captured in a lookahead so that "a cat named Miso and a dog called Pepper" finds both.
_NAMED_ROLE = re.compile(rf"\b(?:my|our) {KIN_ADJ}(?P<role>{ROLE_WORD}),? (?=(?P<o>\S+(?: \S+){{0,2}}))", re.I)

_NEW_PET = re.compile(rf"\b(?:an?|one) {KIN_ADJ}(?P<pet>{_alternatives(PETS)})\b", re.I)

_ROLE_NAMED = re.compile(rf"\b(?:an?|one|(?P<many>two|three|four|\d)) {KIN_ADJ}(?P<role>{ROLE_WORD})s?"
                         rf"(?:,? (?:named|called) |, (?=(?-i:[A-Z])))(?=(?P<o>\S+(?: \S+){{0,4}}))", re.I)


def _name_first(m: re.Match) -> str:
    if m["name"].split()[0].lower() in NOT_NAMES:
        return m[0]
    return f"{m['pre']}{m['role']} {m['name']} "


def _predicate(text: str) -> bool:
    return any(pattern.match(text) for pattern, _ in PREDICATES)


def _lowercase_name(rest: str) -> str | None:
    """In lowercase chat ("my sister ana works at ...") a name is the word that stands before a predicate."""
    word, _, after = rest.partition(" ")
    if (not word.isalpha() or word.lower() in NOT_NAMES or word.lower() in STOP
            or _predicate(_LEADING_ADV.sub("", rest)) or not _predicate(_LEADING_ADV.sub("", after))):
        return None
    return word


# chat shorthand that starts a clause with a capital but no name: "Planning to ...", "Not really into ..."
_SHORTHAND = re.compile(r"(?:\w+ing|not|been)\b(?! (?-i:[A-Z]))", re.I)


class _Reader:
    """Reads one message: remembers who "he", "she" and "who" refer to while it goes."""

    def __init__(self, user_id: str):
        self.user_id = user_id
        self.me = _Subject(user_subject(user_id), "user")
        self.cased = True
        self.future = False
        self.place: str | None = None  # the last place named, for "there"
        self.last: _Subject | None = None
        self.found: list[tuple[str, str, str]] = []

    def read(self, text: str) -> list[tuple[str, str, str]]:
        text = text[:MAX_CHARS]
        # All-lowercase chat gives no capitals to find names by ("I" does not count: we capitalise it).
        self.cased = bool(re.search(r"[A-Z]", re.sub(r"\bI\b", "", text)))
        for sentence in _SENTENCE.split(_normalise(text)):
            self.sentence(_NAME_FIRST.sub(_name_first, sentence.strip()))
        return self.found

    def sentence(self, sentence: str) -> None:
        parts = _CLAUSE.split(sentence)
        clauses, separators = parts[0::2], ["", *parts[1::2]]
        question = sentence.endswith("?")
        self.future = bool(_FUTURE.search(sentence))
        prev, skipped, relative = None, False, False
        for i, (raw, separator) in enumerate(zip(clauses, separators)):
            # "my colleague Jun, who sits next to me, is allergic ...": the clause after a relative one goes on
            resumed = bool(relative)
            relative = i > 0 and re.match(r"(?:who|which)\b", raw.strip(), re.I)
            # Relative clauses and complements belong to the clause before them: "pretend you are Jack,
            # who lives in ...", "I think I'm allergic", "an email saying I work at ...".
            dependent = relative or (i > 0 and not separator.strip() and bool(_COMPLEMENT.search(clauses[i - 1])))
            clause = _PREFIX.sub("", raw.strip()).strip(" ,;:.!?")
            if not clause:
                continue
            if ((question and i == len(clauses) - 1) or _NOT_ASSERTED.search(raw)
                    or (dependent and skipped) or (not relative and not resumed and _QUESTION.match(clause))):
                prev, skipped = None, True
                continue
            before = len(self.found)
            prev, skipped = self.clause(clause, prev), False
            if len(self.found) == before and _CORRECTION.match(raw.strip()):
                self.correct(clause)

    def clause(self, clause: str, prev: _Subject | None) -> _Subject | None:
        if self.world(clause):
            return None
        if m := _SUBJ_ATTR.match(clause):
            return self.attribute(m)
        subject, rest = self.subject(clause, prev)
        if subject is None:
            return None
        rest = _AUX_ADV.sub(r"\1", _LEADING_ADV.sub("", rest))
        self.naming(subject, clause, rest)
        for pattern, handle in PREDICATES:
            if (m := pattern.match(rest)) and (found := handle(m, self)) is not None:
                for relation, obj in found:
                    self.add(subject, relation, obj)
                break
        return subject

    def correct(self, clause: str) -> None:
        """A bare phrase after "sorry, I mean" replaces the object just said."""
        obj, rest = _phrase(clause)
        if self.found and obj and len(obj.split()) <= 4 and (not rest or re.fullmatch(r"(?:no|with an?) \w+", rest)):
            subject, relation, _ = self.found[-1]
            self.found[-1] = (subject, relation, to_third_person(obj, self.user_id))

    def world(self, clause: str) -> bool:
        for pattern in _CAPITAL:
            if m := pattern.search(clause):
                country, city = _phrase(m["x"])[0], _phrase(m["y"])[0]
                if country and city:
                    self.found.append((country, "has the capital city", city))
                return True
        if m := _CALL_ME.match(clause):
            self.add(self.me, "is named", _name(m["o"], self.cased))
            return True
        return False

    def attribute(self, m: re.Match) -> _Subject | None:
        subject = self.last if m["pron"] else self.role(m["role"]) if m["role"] else self.me
        if subject is None:
            return None
        attr = m["attr"].lower()
        if attr == "name":
            self.add(subject, "is named", _name(m["o"], self.cased))
            return subject
        if attr == "birthday":
            relation = "was born on"
        elif attr in ("hometown", "home town"):
            relation = "is from"
        elif attr.endswith(("language", "tongue")):
            relation = "speaks"
        elif attr in ("job title", "job", "profession", "occupation"):
            obj = _phrase(m["o"])[0]
            # "my job is boring" is no job; a title said as one is
            if obj and (attr == "job title" or _is_job(obj)):
                self.add(subject, "works as", obj)
            return subject
        else:
            category = attr.split(maxsplit=1)[1]
            relation = f"has a favourite {FAVOURITES[category]}:" if category in FAVOURITES else "likes"
        self.add(subject, relation, _phrase(m["o"])[0])
        return subject

    def role(self, word: str, owner: _Subject | None = None) -> _Subject:
        owner = owner or self.me
        subject = _Subject(f"{owner.text}'s {word.lower()}", "role", word.lower(), owner)
        self.last = subject
        return subject

    def subject(self, clause: str, prev: _Subject | None) -> tuple[_Subject | None, str]:
        if m := _SUBJ_USER.match(clause):
            return (_Subject(self.me.text, "we") if m["we"] else self.me), clause[m.end():].strip()
        if m := _SUBJ_ROLE.match(clause):
            subject, rest = self.role(m["role"]), clause[m.end():].strip()
            if m["theirs"]:
                subject = self.role(m["theirs"], subject)
            name = _name(rest, True) if self.cased else _lowercase_name(rest)
            if name and (not self.cased or m["theirs"]):  # "my sister's dog Bruno" is no "my <role> Name"
                self.add(subject, "is named", name)
            if name:  # "my sister Maria lives ...": naming() records the name
                rest = _drop_words(rest, len(name.split()))
                if full_name(name) and not m["theirs"]:
                    subject = _Subject(name, "person")
            return subject, rest
        if m := _SUBJ_PRONOUN.match(clause):
            return self.last, clause[m.end():].strip()
        if (self.cased and (m := _SUBJ_NAME.match(clause)) and m[0].split()[0].lower() not in NOT_NAMES
                and not _SHORTHAND.match(clause)):
            self.last = _Subject(m[0], "named")
            return self.last, clause[m.end():].strip()
        # No subject: the previous clause's ("... and works at X"), or the user's in chat shorthand
        # ("currently living in Amsterdam").
        return prev or self.me, clause

    def naming(self, subject: _Subject, clause: str, rest: str) -> None:
        """Names given in passing: "my partner, Alex", "I have a son named Leo"."""
        if self.cased:
            for m in _NAMED_ROLE.finditer(clause):
                self.add(self.role(m["role"]), "is named", _name(m["o"], True))
        if _POSSESSES.match(rest):
            owner = subject if subject.kind in ("role", "named", "person") else self.me
            if pet := _NEW_PET.search(rest):  # "I got a puppy, his name is ..."
                self.role(pet["pet"], owner)
            for m in _ROLE_NAMED.finditer(rest):
                word = m["role"].lower()
                relation = PETS.get(word) or ROLES.get(word)
                self.last = _Subject(f"{owner.text}'s {word}", "role", word, owner)
                if relation:
                    self.add(owner, relation, (_names if m["many"] else _name)(m["o"], self.cased))

    def add(self, subject: _Subject | None, relation: str, obj: str | None) -> None:
        if subject is None or not obj:
            return
        if subject.kind == "we" and relation not in _WE_RELATIONS:
            return
        if subject.kind == "named" and relation not in _NAMED_RELATIONS:
            return
        if subject.kind == "role" and relation == "is named" and subject.owner:
            naming = PETS.get(subject.role) or ROLES.get(subject.role)
            if not naming:  # "my parents": a group has no one name
                return
            subject, relation = subject.owner, naming
        if relation in _NAMES_A_PERSON and full_name(obj):
            # what is said next about them ("... and she ...") is about the person by name
            self.last = _Subject(obj, "person")
        if relation.split()[-1] in ("a", "an", "the"):
            obj = re.sub(r"^(?:an?|the) ", "", obj, flags=re.I)
        self.found.append((subject.text, relation, to_third_person(obj, self.user_id)))


class RuleExtractor:
    """Extraction by regular expressions: English chat, no model, bounded work per message."""

    def extract(self, text: str, user_id: str = "default") -> list[Fact]:
        if not isinstance(text, str) or not isinstance(user_id, str):
            return []
        triples = _Reader(user_id).read(text)
        facts = (make_fact(s, r, o, user_id) for s, r, o in triples)
        return latest(f for f in facts if f is not None)
