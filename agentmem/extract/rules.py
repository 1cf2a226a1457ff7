"""The rule extractor: a small English grammar of what people say about themselves and their world (no model)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..facts import Fact
from ..facts.perspective import to_third_person, user_subject
from .base import MAX_CHARS, MAX_OBJECT_WORDS, latest, make_fact
from .vocabulary import (DATE, FAVOURITES, GERUNDS, INSTRUMENTS, JOBS, JOB_SUFFIX, KIN_ADJ, MONTHS, NOT_JOBS,
                         NOT_NAMES, NOT_NOW, PETS, PLAN_VERBS, PUNCT, ROLES, ROLE_WORD, SPORTS, STOP)

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
    (re.compile(r"\b(we|they|you)'ve\b", re.I), r"\1 have"),
    (re.compile(r"\bcan'?t\b", re.I), "can not"),
    (re.compile(r"\bwon't\b", re.I), "will not"),
    (re.compile(r"\b(do|does|did|is|are|was|were|have|has|had|could|would|should)n'?t\b", re.I), r"\1 not"),
]

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")

_VERB = (r"(?:am|is|are|was|have|has|live|lives|work|works|moved|speak|speaks|love|loves|like|likes|hate|hates|"
         r"enjoy|enjoys|drive|drives|own|owns|play|plays|support|supports|studied|grew|plan|plans|just|really|"
         r"also|started|do|does|can)")

# One capturing group around it all: split() also returns the separators.
_CLAUSE = re.compile(
    r"(\s*[,;:]\s*(?=(?:(?:and|but|so|or|because|though|although|while|plus|then|now|also|since)\s+)?"
    r"(?:I|we|he|she|they|you|it|my|our|his|her|their|this|there|who|which|btw|by the way|actually|anyway"
    r"|please|everyone|not that|living|working|moving|what|where|when|how|why|any|can|could|should|"
    + _VERB + r")\b)"
    r"|\s+(?=(?:and|but|so|because|though|although|while|plus|then|or)\s+(?:I|we|he|she|they|my|our|"
    + _VERB + r")\b)"
    r"|\s+(?=(?:who|which)\s)"
    # A bare "I <verb>" ("my name is carlos i live ..."), unless a conjunction before it already split.
    r"|(?<!\band)(?<!\bbut)(?<!\bso)(?<!\bor)(?<!\bthen)(?<!\bplus)(?<!\bbecause)(?<!\bwhile)(?<!\bthough)"
    r"\s+(?=(?-i:I)\s+" + _VERB + r"\b))",
    re.I,
)

_TIME_WORDS = (r"(?:week|month|year|weekend|summer|winter|spring|fall|autumn|time|monday|tuesday|wednesday|"
               r"thursday|friday|saturday|sunday)")

_PREFIX = re.compile(
    r"^(?:(?:hi|hey|hello|ok|okay|so|well|oh|yeah|yes|no|and|but|also|btw|by the way|fyi|just so you know|"
    r"actually|anyway|anyways|um|uh|honestly|lol|haha|plus|then|now|remember that|remember|please note that|"
    r"note that|for context|for the record|fun fact|just|alright|sure|cool|great|nice|basically|although|"
    r"sorry|correction|I meant|I mean|"
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
    obj = " ".join(words[:n]).strip(PUNCT + " ")
    rest = " ".join(words[n:])
    if not obj or n > MAX_OBJECT_WORDS:
        return None, rest
    return obj, rest


def _name(raw: str, cased: bool) -> str | None:
    """A person's or pet's name at the start of `raw`: capitalised words (one word in lowercase text)."""
    out = []
    for w in raw.split()[:3]:
        bare = w.strip(PUNCT)
        if bare.endswith("'s"):
            bare = bare[:-2]
        if not bare or bare.lower() in NOT_NAMES or bare.lower() in STOP or not bare[0].isalpha():
            break
        if cased and not bare[0].isupper():
            break
        out.append(bare)
        if not cased or bare != w:  # punctuation after a word ends the name
            break
    return " ".join(out) or None


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
    kind: str  # "user", "we", "role", "named"
    role: str = ""  # for kind "role": the relation word ("sister", "dog")

# Relations a subject kind may take: "we" and third parties only say a few things reliably.
_WE_RELATIONS = {"lives in", "is planning to", "is from", "owns a", *PETS.values()}

_NAMED_RELATIONS = {"lives in", "works at", "works as", "was born in", "was born on", "is from", "grew up in",
                    "studied at", "is married to", "speaks", "plays the", "is named"}

_SUBJ_USER = re.compile(rf"^(?P<we>(?:my|our) {KIN_ADJ}(?:{ROLE_WORD}) and I|we)\b|^I\b", re.I)

# "my favourite band is X", "my sister's birthday is on Y", and the form-like "fav food: sushi".
_SUBJ_ATTR = re.compile(
    rf"^(?:(?:my|our) (?:{KIN_ADJ}(?P<role>{ROLE_WORD})'s )?)?(?:all[- ]time )?"
    r"(?P<attr>name|birthday|hometown|home town|native language|mother tongue|first language|"
    r"(?:favou?rite|fave?) [\w-]+(?: [\w-]+)?)(?: (?:is|was)(?: on)?|:) (?P<o>.*)",
    re.I,
)

_SUBJ_ROLE = re.compile(rf"^(?:my|our) {KIN_ADJ}(?P<role>{ROLE_WORD})\b,?", re.I)

_SUBJ_PRONOUN = re.compile(r"^(?:he|she|who|which)\b", re.I)

_SUBJ_NAME = re.compile(r"^[A-Z][\w'-]*(?: [A-Z][\w'-]*){0,2}")

_ADV = (r"(?:(?:really|also|still|now|currently|just|actually|recently|absolutely|totally|truly|definitely|"
        r"honestly|originally|mostly|usually|basically|literally|already|even|seriously|kinda|finally|"
        r"officially)\s+)*")

Found = list[tuple[str, str]]  # (relation, object) pairs for one subject


def _plain(relation: str, lists: bool = False):
    def handle(m: re.Match, cased: bool) -> Found:
        obj, _ = _phrase(m["o"], lists)
        return [(relation, obj)] if obj else []
    return handle


def _place(relation: str):
    """A place; in "a tiny flat in Paris" or "a farm in Iowa" the named place is the answer."""
    def handle(m: re.Match, cased: bool) -> Found:
        obj, rest = _phrase(m["o"])
        inner = re.match(r"in (.+)", rest, re.I)
        if obj and inner and re.match(r"(?:an?|the) [a-z]", obj):
            named = _phrase(inner[1])[0]
            if named and (named[0].isupper() or not cased):
                obj = named
        return [(relation, obj)] if obj else []
    return handle


def _named(relation: str):
    def handle(m: re.Match, cased: bool) -> Found:
        obj = _name(m["o"], cased)
        return [(relation, obj)] if obj else []
    return handle


def _born(m: re.Match, cased: bool) -> Found:
    out, text = [], m["o"]
    while True:
        prep, _, text = text.partition(" ")
        obj, text = _phrase(text)
        if obj and (prep.lower() == "on" or DATE.search(obj)):
            out.append(("was born on", obj))
        elif obj:
            out.append(("was born in", obj))
        if not re.match(r"(?:on|in) ", text, re.I):
            return out


def _work(first: str):
    """Works at X (as Y), works as Y (at X): the tail names the other half."""
    def handle(m: re.Match, cased: bool) -> Found:
        obj, rest = _phrase(m["o"])
        if not obj:
            return []
        called = re.match(r"(?:called|named) (.+)", rest, re.I)
        if first == "works at" and called and (name := _name(called[1], cased)):  # "a startup called Nimbus"
            obj, rest = name, _drop_words(called[1], len(name.split()))
        out = [(first, obj)]
        second, tail = ("works as", r"as (.+)") if first == "works at" else ("works at", r"(?:at|for) (.+)")
        if (m2 := re.match(tail, rest, re.I)) and (other := _phrase(m2[1])[0]):
            out.append((second, other))
        return out
    return handle


def _job(m: re.Match, cased: bool) -> Found:
    obj, rest = _phrase(m["o"])
    if not obj or not _is_job(obj) or obj.split()[0].lower() in NOT_NOW:
        return []
    out = [("works as", f"{m['art']} {obj}")]
    tail = re.match(r"(at|for|from) (.+)", rest, re.I)
    if tail and (other := _phrase(tail[2])[0]):
        out.append(("is from" if tail[1].lower() == "from" else "works at", other))
    return out


def _fan(m: re.Match, cased: bool) -> Found:
    """"A Celtic supporter" supports a club; "a Beatles fan" only likes them."""
    if m["what"].lower() == "fan":
        obj = _phrase(m["o"])[0]
        return [("likes", obj)] if obj else []
    name = _name(m["o"], cased)
    return [("supports the football club", name)] if name and cased else []


def _plays(m: re.Match, cased: bool) -> Found:
    obj, _ = _phrase(re.sub(r"^the ", "", m["o"], flags=re.I))
    if not obj:
        return []
    low = obj.lower()
    if low in INSTRUMENTS or _head(low) in INSTRUMENTS:
        return [("plays the", obj)]
    return [("plays", obj)] if low in SPORTS else []


def _owns(m: re.Match, cased: bool) -> Found:
    obj, _ = _phrase(m["o"])
    return [("owns a", obj)] if obj and _head(obj) not in PETS else []


def _went_to(m: re.Match, cased: bool) -> Found:
    obj, _ = _phrase(m["o"])
    school = obj and re.search(r"\b(?:university|college|school|academy|institute|polytechnic)\b", obj, re.I)
    return [("studied at", obj)] if school else []


def _going_to(m: re.Match, cased: bool) -> Found:
    obj, _ = _phrase(m["o"])
    if not obj:
        return []
    first = obj.split()[0]
    if first.lower() in PLAN_VERBS:
        return [("is planning to", obj)]
    return [("is planning to", f"go to {obj}")] if cased and first[0].isupper() else []


def _travel(m: re.Match, cased: bool) -> Found:
    obj, _ = _phrase(m["o"])
    if not obj or (m["v"].lower() in ("going", "heading") and not (cased and obj[0].isupper())):
        return []
    return [("is planning to", f"{GERUNDS[m['v'].lower()]} to {obj}")]


def _plan(m: re.Match, cased: bool) -> Found:
    obj, _ = _phrase(m["o"])
    return [("is planning to", _base_form(obj))] if obj else []


def _i_am_name(m: re.Match, cased: bool) -> Found:
    name = _name(m["o"], cased)
    # Only "I'm Dana" on its own or before a comma: "I'm Dana's mum" or "I'm Italian" are not names.
    if not cased or not name or not re.match(re.escape(name) + r"\s*(?:,|$)", m["o"].strip(".!? ")):
        return []
    return [("is named", name)]

_BE = r"(?:am|is|are)"

_HAVE = r"(?:have|has)"

# Tried in order at the start of the predicate; the first that matches decides, even if it finds no
# usable object ("a huge fan of your work" must not fall through to "a huge ... fan").
_PREDICATES = [
    (rf"{_BE} (?:called|named) (?P<o>.+)", _named("is named")),
    (rf"(?:live|lives|(?:{_BE} )?living|{_HAVE} (?:been living|lived))(?: with [^,]{{1,40}}?)? in (?P<o>.+)",
     _place("lives in")),
    (rf"(?:moved|{_HAVE} moved|relocated|{_HAVE} relocated) to (?P<o>.+)", _place("lives in")),
    (rf"(?:{_BE} )?based in (?P<o>.+)", _place("lives in")),
    (rf"(?:{_BE}|come|comes) from (?P<o>.+)", _place("is from")),
    (r"(?:grew up|was raised|were raised) (?:in|on|at) (?P<o>.+)", _place("grew up in")),
    (r"(?:was|were) born (?P<o>(?:on|in) .+)", _born),
    (rf"(?:work|works|(?:{_BE} )?working|{_HAVE} been working|{_BE} employed|started|{_HAVE} started|"
     rf"started working|{_HAVE} worked)(?: remotely| full[- ]time| part[- ]time| freelance)? (?:at|for|by) "
     rf"(?P<o>.+)", _work("works at")),
    (rf"(?:work|works|(?:{_BE} )?working|{_HAVE} been working) as (?P<o>.+)", _work("works as")),
    (rf"{_BE} (?:an? )?(?:big |huge |massive |great |long-?time )?fan of (?P<o>.+)", _plain("likes")),
    (rf"(?:{_BE} (?:an? )?member of|belongs? to) (?P<o>.+)", _plain("is a member of")),
    (rf"{_BE} in (?P<o>(?:an?|the) [\w' -]{{1,60}} (?:club|team|choir|orchestra|league))\b", _plain("is a member of")),
    (rf"(?:{_BE} married to|married) (?P<o>.+)", _named("is married to")),
    (rf"(?:{_BE} (?:fluent|native) in|speaks?(?: fluent)?) (?P<o>.+)", _plain("speaks", lists=True)),
    (rf"{_BE} (?:severely |very |deathly |mildly )?allergic to (?P<o>.+)", _plain("is allergic to", lists=True)),
    (rf"{_HAVE} (?:an? )?(?:severe |bad |mild )?(?P<o>[\w-]+(?: [\w-]+)?) allergy\b", _plain("is allergic to")),
    (rf"(?:hate|hates|dislike|dislikes|detest|detests|despise|despises|loathe|loathes|can not stand|"
     rf"cannot stand|do not like|does not like|do not enjoy|does not enjoy|do not care for|"
     rf"{_BE} not (?:an? )?(?:big |huge )?fan of) (?P<o>.+)", _plain("dislikes", lists=True)),
    (rf"(?:love|loves|like|likes|enjoy|enjoys|adore|adores|{_BE} into|{_BE} obsessed with|"
     rf"{_BE} passionate about) (?P<o>.+)", _plain("likes", lists=True)),
    (r"(?:drive|drives) (?:an?|the) (?P<o>.+)", _plain("drives a")),
    (rf"(?:own|owns|bought|{_HAVE} bought|{_HAVE} got) (?:an?) (?P<o>.+)", _owns),
    (r"(?:play|plays) for (?P<o>.+)", _plain("is a member of")),
    (rf"(?:play|plays|(?:{_BE} |{_HAVE} been )?playing) (?P<o>.+)", _plays),
    (r"(?:support|supports) (?P<o>.+)", _named("supports the football club")),
    (rf"(?:studied|study|studies|{_BE} studying|graduated|did my [\w-]+)(?: [\w-]+){{0,3}}? (?:at|from) (?P<o>.+)",
     _plain("studied at")),
    (r"went to (?P<o>.+)", _went_to),
    (rf"(?:plan|plans|{_BE} planning|intend|intends|{_BE} intending|{_HAVE} decided|decided) (?:to|on) (?P<o>.+)",
     _plan),
    (rf"{_BE} going to (?P<o>.+)", _going_to),
    (rf"(?:{_BE} )?(?P<v>flying|travelling|traveling|moving|relocating|heading|driving|going) to (?P<o>.+)",
     _travel),
    (rf"{_BE} (?:an? )?(?:lifelong |life-long |huge |big |die-?hard |loyal )?(?P<o>[\w'. -]{{1,40}}?) "
     rf"(?P<what>supporter|fan)\b", _fan),
    (rf"{_BE} (?P<art>an?) (?P<o>.+)", _job),
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

_ROLE_NAMED = re.compile(
    rf"\b(?:an?|one) {KIN_ADJ}(?P<role>{ROLE_WORD}),? (?:named|called) (?=(?P<o>\S+(?: \S+){{0,2}}))", re.I)


class _Reader:
    """Reads one message: remembers who "he", "she" and "who" refer to while it goes."""

    def __init__(self, user_id: str):
        self.user_id = user_id
        self.me = _Subject(user_subject(user_id), "user")
        self.cased = True
        self.last: _Subject | None = None
        self.found: list[tuple[str, str, str]] = []

    def read(self, text: str) -> list[tuple[str, str, str]]:
        text = text[:MAX_CHARS]
        # All-lowercase chat gives no capitals to find names by ("I" does not count: we capitalise it).
        self.cased = bool(re.search(r"[A-Z]", re.sub(r"\bI\b", "", text)))
        for sentence in _SENTENCE.split(_normalise(text)):
            self.sentence(sentence.strip())
        return self.found

    def sentence(self, sentence: str) -> None:
        parts = _CLAUSE.split(sentence)
        clauses, separators = parts[0::2], ["", *parts[1::2]]
        question = sentence.endswith("?")
        prev, skipped = None, False
        for i, (raw, separator) in enumerate(zip(clauses, separators)):
            relative = i > 0 and re.match(r"(?:who|which)\b", raw.strip(), re.I)
            # Relative clauses and complements belong to the clause before them: "pretend you are Jack,
            # who lives in ...", "I think I'm allergic", "an email saying I work at ...".
            dependent = relative or (i > 0 and not separator.strip() and bool(_COMPLEMENT.search(clauses[i - 1])))
            clause = _PREFIX.sub("", raw.strip()).strip(" ,;:.!?")
            if not clause:
                continue
            if ((question and i == len(clauses) - 1) or _NOT_ASSERTED.search(raw)
                    or (dependent and skipped) or (not relative and _QUESTION.match(clause))):
                prev, skipped = None, True
                continue
            prev, skipped = self.clause(clause, prev), False

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
            if m := pattern.match(rest):
                for relation, obj in handle(m, self.cased):
                    self.add(subject, relation, obj)
                break
        return subject

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

    def attribute(self, m: re.Match) -> _Subject:
        subject = self.role(m["role"]) if m["role"] else self.me
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
        else:
            category = attr.split(maxsplit=1)[1]
            relation = f"has a favourite {FAVOURITES[category]}:" if category in FAVOURITES else "likes"
        self.add(subject, relation, _phrase(m["o"])[0])
        return subject

    def role(self, word: str) -> _Subject:
        subject = _Subject(f"{self.me.text}'s {word.lower()}", "role", word.lower())
        self.last = subject
        return subject

    def subject(self, clause: str, prev: _Subject | None) -> tuple[_Subject | None, str]:
        if m := _SUBJ_USER.match(clause):
            return (_Subject(self.me.text, "we") if m["we"] else self.me), clause[m.end():].strip()
        if m := _SUBJ_ROLE.match(clause):
            subject, rest = self.role(m["role"]), clause[m.end():].strip()
            name = _name(rest, True) if self.cased else None
            if name:  # "my sister Maria lives ...": naming() records the name
                rest = _drop_words(rest, len(name.split()))
            return subject, rest
        if m := _SUBJ_PRONOUN.match(clause):
            return self.last, clause[m.end():].strip()
        if self.cased and (m := _SUBJ_NAME.match(clause)) and m[0].split()[0].lower() not in NOT_NAMES:
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
            for m in _ROLE_NAMED.finditer(rest):
                word = m["role"].lower()
                owner = subject if subject.kind in ("role", "named") else self.me
                relation = PETS.get(word) or ROLES.get(word)
                if relation:
                    self.add(owner, relation, _name(m["o"], self.cased))
                self.last = _Subject(f"{owner.text}'s {word}", "role", word)

    def add(self, subject: _Subject | None, relation: str, obj: str | None) -> None:
        if subject is None or not obj:
            return
        if subject.kind == "we" and relation not in _WE_RELATIONS:
            return
        if subject.kind == "named" and relation not in _NAMED_RELATIONS:
            return
        if subject.kind == "role" and relation == "is named" and subject.text.startswith(self.me.text + "'s "):
            naming = PETS.get(subject.role) or ROLES.get(subject.role)
            if naming:
                subject, relation = self.me, naming
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
