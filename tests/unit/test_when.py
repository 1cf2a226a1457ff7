"""When a plan stops holding: the end of the time its own clause names, a day later, at a fixed moment."""

from datetime import datetime, timezone

import pytest

from agentmem.extract.when import dated, plan_ends
from agentmem.facts import Fact

NOW = datetime(2026, 12, 7, 21, 0, tzinfo=timezone.utc)  # a Monday evening


def day(d: str) -> datetime:
    return datetime.fromisoformat(d).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("said, ends", [
    ("I'm flying to Boston tomorrow.", "2026-12-10"),        # Tuesday over, and a day's grace
    ("We're going out tonight", "2026-12-09"),
    ("I'm flying to Boston on Tuesday.", "2026-12-10"),
    ("I'm seeing her Sunday", "2026-12-15"),
    ("next Tuesday I start", "2026-12-17"),                   # the later of what "next" means to people
    ("I'm visiting my parents this weekend", "2026-12-15"),
    ("I'm going to Rome next week.", "2026-12-22"),
    ("I'm moving in May", "2027-06-02"),
    ("We're moving to Lisbon in December", "2027-01-02"),     # this month
    ("next December we retire", "2028-01-02"),
    ("I'm learning to surf this summer", "2027-09-02"),
    ("I'm skiing in the winter", "2027-03-02"),               # the winter that ends in February
    ("I'll run a marathon next year", "2028-01-02"),
    ("I'm moving to Oslo in 2027", "2028-01-02"),
])
def test_a_plan_ends_a_day_after_the_time_it_names(said, ends):
    assert plan_ends(said, NOW) == day(ends)


def test_a_count_of_days_or_weeks_runs_from_the_moment_said():
    assert plan_ends("I'm starting a new job in 3 weeks", NOW) == datetime(2026, 12, 29, 21, tzinfo=timezone.utc)
    assert plan_ends("in a few days I'm off to Oslo", NOW) == datetime(2026, 12, 11, 21, tzinfo=timezone.utc)


@pytest.mark.parametrize("said", ["I plan to learn Italian.", "I'm going to Rome soon.", "I may go to Rome.",
                                  "Maybe one day I'll try surfing."])
def test_a_plan_with_no_time_of_its_own_keeps_none(said):
    assert plan_ends(said, NOW) is None


def test_each_plan_takes_the_time_of_its_own_clause_and_other_facts_none():
    text = "I'm flying to Boston on Tuesday and we're moving to Oslo in June. I live in Leeds."
    facts = [Fact(subject="User u1", relation="is planning to", object="fly to Boston", user_id="u1"),
             Fact(subject="User u1", relation="is planning to", object="move to Oslo", user_id="u1"),
             Fact(subject="User u1", relation="lives in", object="Leeds", user_id="u1")]
    boston, oslo, leeds = dated(facts, text, NOW.timestamp())
    assert boston.expires == day("2026-12-10").timestamp() and oslo.expires == day("2027-07-02").timestamp()
    assert leeds.expires is None
    # a year gone by is no time to come: no expiry rather than one already past
    (old,) = dated([facts[1]], "We're moving to Oslo in 2019", NOW.timestamp())
    assert old.expires is None
