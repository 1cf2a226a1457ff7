"""A user's quota, on SQLite and on PostgreSQL: facts handed over in a rolling hour and facts held at once are
counted per user from the ledger (the call's own facts included), two calls at once are counted one after the other,
a refusal says when to try again, and other users and the shared scope are not counted."""

import threading
import time

import pytest

from agentmem.facts import Fact
from agentmem.storage.quota import HOUR, QuotaExceeded, check_user_quota


def said(ledger, user, *objects):
    """Record the user's facts as the hook does, then check the quota in the same transaction."""
    def check(**limits):
        with ledger.transaction():
            for o in objects:
                f = Fact(subject=f"User {user}", relation="likes", object=o, user_id=user)
                ledger.spool(f.fact_id(), f, "accepted")
            check_user_quota(ledger, user, len(objects), **limits)
    return check


def test_facts_per_hour_count_each_users_own_and_a_refusal_records_nothing(ledger):
    said(ledger, "u1", "figs", "plums")(per_hour=3, max_facts=0)
    said(ledger, "u2", "okra", "kale", "leeks")(per_hour=3, max_facts=0)  # another user's hour is their own
    t0 = time.time()
    with pytest.raises(QuotaExceeded, match="4 facts in an hour; at most 3") as over:
        said(ledger, "u1", "pears", "dates")(per_hour=3, max_facts=0)
    # room for two more comes back when the first of the hour's facts ages out of it
    assert HOUR - 60 < over.value.retry_after <= HOUR + 1
    assert sorted(r["object"] for r in ledger.facts(user_id="u1")) == ["figs", "plums"]  # rolled back
    said(ledger, "u1", "pears")(per_hour=3, max_facts=0)
    # an hour later the same facts are welcome again
    with ledger.transaction():
        check_user_quota(ledger, "u1", 0, per_hour=3, max_facts=0, now=t0 + HOUR + 5)
    with pytest.raises(QuotaExceeded, match="in one call") as alone:
        said(ledger, "u3", "a", "b", "c", "d")(per_hour=3, max_facts=0)
    assert alone.value.retry_after is None  # waiting would not help


def test_facts_held_at_once_count_until_forgotten(ledger):
    said(ledger, "u1", "figs", "plums")(per_hour=0, max_facts=2)
    with pytest.raises(QuotaExceeded, match="would hold 3 facts; at most 2") as over:
        said(ledger, "u1", "pears")(per_hour=0, max_facts=2)
    assert over.value.retry_after is None
    figs = Fact(subject="User u1", relation="likes", object="figs", user_id="u1").fact_id()
    with ledger.transaction():
        ledger.forget(figs, None)
    said(ledger, "u1", "pears")(per_hour=0, max_facts=2)
    said(ledger, "u1", *[f"x{i}" for i in range(50)])(per_hour=0, max_facts=0)  # 0: no limit


def test_two_calls_at_the_same_moment_are_counted_one_after_the_other(ledger):
    """Each call alone fits the hour; together they do not. Counted at once, each would see only what was committed
    before either began, and both would pass."""
    counted, release, outcome = threading.Event(), threading.Event(), []

    def first():
        with ledger.transaction():
            for o in ("figs", "plums"):
                f = Fact(subject="User u1", relation="likes", object=o, user_id="u1")
                ledger.spool(f.fact_id(), f, "accepted")
            check_user_quota(ledger, "u1", 2, per_hour=3, max_facts=0)
            counted.set()
            release.wait(10)  # still open while the second call counts

    def second():
        counted.wait(10)
        try:
            said(ledger, "u1", "pears", "dates")(per_hour=3, max_facts=0)
            outcome.append("passed")
        except QuotaExceeded:
            outcome.append("refused")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    try:
        counted.wait(10)
        time.sleep(0.5)
        assert outcome == []  # the second call waits for the first to end
    finally:
        release.set()
        for t in threads:
            t.join(30)
    assert outcome == ["refused"]
    assert sorted(r["object"] for r in ledger.facts(user_id="u1")) == ["figs", "plums"]
