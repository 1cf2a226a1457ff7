"""Facts that stop holding, on the real bundled model: a plan said with its day gets that day's end as its expiry
(the newest day when it is said again), and a fact whose expiry has come is forgotten by the writer as it drains the queue (what a worker does on every
sweep), after which it is no longer answered; a fact whose expiry is already past is refused."""

import time

import pytest

from agentmem import Fact, FactError, Memory
from agentmem.storage.ledger import ACTIVE, FORGOTTEN

LIGHTHOUSE = "Where is Kessrin Lighthouse located?"


@pytest.fixture(scope="module")
def mem(tmp_path_factory):
    m = Memory.open(tmp_path_factory.mktemp("expiry") / "home")
    yield m
    m.close()


def test_a_fact_is_answered_while_it_holds_and_forgotten_once_its_time_is_over(mem):
    (plan,) = mem.observe([{"role": "user", "content": "I'm flying to Boston tomorrow."}], user_id="u1")
    assert plan.relation == "is planning to" and plan.expires > time.time() + 24 * 3600, plan  # tomorrow, and a day
    assert mem.wait([plan.id], timeout=120)
    # the trip put off: the same plan, said again of another day, keeps the newest day
    (again,) = mem.observe([{"role": "user", "content": "I'm flying to Boston next week."}], user_id="u1")
    assert again.id == plan.id and again.status == "known"
    assert mem.ledger.get(plan.id)["expires"] == again.expires > plan.expires + 5 * 24 * 3600

    short = Fact(subject="Kessrin Lighthouse", relation="is located in", object="Harstad", expires=time.time() + 20)
    (fid,) = mem.remember([short])
    assert "harstad" in mem.ask(LIGHTHOUSE, user_id=None).lower()
    assert mem.expire() == []  # not over yet
    time.sleep(max(0.0, short.expires - time.time()) + 0.5)
    assert mem.drain("test")["expired"] == 1
    row = mem.ledger.get(fid)
    assert row["status"] == FORGOTTEN and row["reason"].startswith("expired at"), row
    assert "harstad" not in mem.ask(LIGHTHOUSE, user_id=None).lower()
    assert mem.ledger.get(plan.id)["status"] == ACTIVE  # its day is still to come

    with pytest.raises(FactError, match="'expires' is in the past"):
        mem.remember([short.model_copy(update={"object": "Tromso"})])
    with pytest.raises(FactError, match="'expires' is in the past"):
        mem.remember_later([short])
