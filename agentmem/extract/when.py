"""When a plan stops holding: the end of the time it names ("next week", "in May", "on Tuesday"), a day later.

"I'm flying to Boston on Tuesday" is a plan until that Tuesday is over; kept for months, it would be answered
as a plan long after the trip. A plan with no time of its own ("I plan to learn Italian", "soon") keeps none.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from dateutil.relativedelta import relativedelta

from ..facts import Fact
from .vocabulary import MONTHS

PLAN = "is planning to"
# the plan's day is the user's, who may be a day ahead of UTC
GRACE = timedelta(days=1)

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_FULL_MONTHS = MONTHS.split("|")[:12]
_MONTH_NUMBER = {name: next(i + 1 for i, full in enumerate(_FULL_MONTHS) if full.startswith(name[:3]))
                 for name in MONTHS.split("|")}
# the seasons' last months in the north (winter ends in February)
_SEASON_END = {"spring": 5, "summer": 8, "fall": 11, "autumn": 11, "winter": 2}
_COUNTS = {"a": 1, "an": 1, "one": 1, "a couple of": 2, "two": 2, "a few": 3, "three": 3, "four": 4, "five": 5,
           "six": 6}

_WHEN = re.compile(
    r"\b(?:(?P<day>tonight|today|tomorrow)|this (?:evening|afternoon|morning)(?P<today>)"
    r"|(?:(?P<wd_how>on|this|next|coming) )?(?P<weekday>" + "|".join(_DAYS) + r")"
    r"|(?P<span_how>this|next) (?P<span>week|weekend|month|year)"
    r"|(?:(?P<m_how>in|this|next) )(?P<month>" + MONTHS + r")\b"
    r"|(?:in the |this |next )(?P<season>spring|summer|fall|autumn|winter)"
    r"|in (?P<n>\d+|" + "|".join(sorted(_COUNTS, key=len, reverse=True)) + r") (?P<unit>day|week|month)s?"
    r"|in (?P<year>20\d\d))\b",
    re.I,
)


def plan_ends(text: str, now: datetime) -> datetime | None:
    """When a plan said in `text` at `now` (aware) is over: the end of the first time it names, plus GRACE."""
    m = _WHEN.search(text)
    if m is None:
        return None
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    end = _period_end(m, today, now)
    return end + GRACE if end is not None else None


def _period_end(m: re.Match, today: datetime, now: datetime) -> datetime | None:
    day = timedelta(days=1)
    g = {k: (v.lower() if isinstance(v, str) else v) for k, v in m.groupdict().items()}
    if g["day"] or g["today"] is not None:
        return today + day * (2 if g["day"] == "tomorrow" else 1)
    if g["weekday"]:
        ahead = (_DAYS.index(g["weekday"]) - today.weekday() - 1) % 7 + 1  # the next one, never today
        # "next Friday" is the coming one to some and the one after to others: a plan outlives its day, not the
        # other way round
        return today + day * (ahead + 7 * (g["wd_how"] == "next") + 1)
    if g["span"]:
        later = g["span_how"] == "next"
        if g["span"] in ("week", "weekend"):
            return today + day * (7 - today.weekday() + 7 * later)  # weeks end on Sunday
        if g["span"] == "month":
            return today.replace(day=1) + relativedelta(months=1 + later)
        return today.replace(month=1, day=1) + relativedelta(years=1 + later)
    if g["month"]:
        month = _MONTH_NUMBER[g["month"]]
        year = today.year + (month < today.month or (month == today.month and g["m_how"] == "next"))
        return datetime(year, month, 1, tzinfo=today.tzinfo) + relativedelta(months=1)
    if g["season"]:
        last = _SEASON_END[g["season"]]
        year = today.year + (last < today.month or g["season"] == "winter" and today.month > 2)
        return datetime(year, last, 1, tzinfo=today.tzinfo) + relativedelta(months=1)
    if g["unit"]:
        n = int(g["n"]) if g["n"].isdigit() else _COUNTS[g["n"]]
        return now + relativedelta(**{g["unit"] + "s": n})
    if g["year"]:
        return datetime(int(g["year"]) + 1, 1, 1, tzinfo=today.tzinfo)
    return None


def dated(facts: list[Fact], text: str, now: float) -> list[Fact]:
    """The facts, each plan with the expiry of the time its own clause of `text` names (none without one)."""
    at = datetime.fromtimestamp(now, timezone.utc)
    out = []
    for f in facts:
        if f.relation != PLAN or f.expires is not None:
            out.append(f)
            continue
        end = plan_ends(_clause_of(f, text), at)
        # "in 2019" is no time to come: such a plan keeps no expiry rather than one already past
        out.append(f.model_copy(update={"expires": end.timestamp()}) if end and end > at else f)
    return out


def _clause_of(fact: Fact, text: str) -> str:
    """The sentence of `text` that says the plan ("... on Tuesday, and we move to Oslo in June" has two)."""
    last = fact.object.split()[-1].lower()
    for clause in re.split(r"[.!?;]|,? (?:and|but|then) ", text):
        if re.search(rf"\b{re.escape(last)}\b", clause, re.I):
            return clause
    return text
