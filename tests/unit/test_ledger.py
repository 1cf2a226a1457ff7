"""The ledger shared by threads (an embedded worker thread and its callers): transactions stay apart."""

import sqlite3
import threading

import pytest

from agentmem.storage.ledger import Ledger


def test_a_rolled_back_transaction_does_not_take_another_threads_write_with_it(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    inside, errors = threading.Event(), []

    def doomed():
        try:
            with ledger.transaction():
                ledger.event(None, "doomed")
                inside.set()
                threading.Event().wait(0.3)  # the other thread writes meanwhile
                raise RuntimeError("the edit failed")
        except RuntimeError:
            pass

    def other():
        inside.wait(5)
        try:
            with ledger.transaction():
                ledger.event(None, "kept")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=doomed), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    kinds = [r["kind"] for r in ledger.db.execute("SELECT kind FROM events")]
    assert kinds == ["kept"]
    ledger.close()
    with pytest.raises(sqlite3.ProgrammingError):
        ledger.event(None, "after close")


def test_active_facts_are_found_by_the_last_word_of_their_subject(tmp_path):
    from agentmem.facts import Fact
    from agentmem.storage.ledger import ACTIVE, FORGOTTEN

    ledger = Ledger(tmp_path / "ledger.sqlite")
    with ledger.transaction():
        for i, (subject, status) in enumerate([("Thea Albescu", ACTIVE), ("Elio Albescu", ACTIVE),
                                               ("Ana Albescu", FORGOTTEN), ("Elio Brennan", ACTIVE),
                                               ("Albescu", ACTIVE), ("Thea Albescuson", ACTIVE)]):
            ledger.add_fact(f"f{i}", Fact(subject=subject, relation="lives in", object="Oslo"), status)
    found = ledger.active_about({"Albescu"}, by_last_word=True)
    assert [r["subject"] for r in found] == ["Thea Albescu", "Elio Albescu", "Albescu"]
    assert ledger.active_about(set(), by_last_word=True) == []
