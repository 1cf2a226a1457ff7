"""The ledger: transactions stay apart across threads, a failed COMMIT leaves it usable, nights are recorded."""

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

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


class LockedAtCommit:
    """A connection whose COMMIT fails as SQLite's does on a busy database: the transaction stays open."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, *args):
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database is locked")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_a_commit_that_fails_is_rolled_back_and_the_ledger_stays_usable(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    conn = ledger.db
    ledger._local.conn = LockedAtCommit(conn)
    with pytest.raises(sqlite3.OperationalError):
        with ledger.transaction():
            ledger.event(None, "lost")
    ledger._local.conn = conn
    assert not conn.in_transaction
    with ledger.transaction():
        ledger.event(None, "kept")
    assert [r["kind"] for r in ledger.db.execute("SELECT kind FROM events")] == ["kept"]
    ledger.close()


DISK_FULL_AT_COMMIT = """
import os, resource, signal, sqlite3, sys
from agentmem.storage.ledger import Ledger
ledger = Ledger(sys.argv[1])
with ledger.transaction():
    ledger.event(None, "first")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(sys.argv[1] + "-wal") + 4096, hard))
try:
    with ledger.transaction():
        ledger.event(None, "lost", blob="x" * 200_000)  # held in the page cache until COMMIT writes it
    print("committed")
except sqlite3.OperationalError as e:
    print("failed:", e)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
with ledger.transaction():
    ledger.event(None, "kept")
print([r["kind"] for r in ledger.db.execute("SELECT kind FROM events ORDER BY seq")])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_commit_that_cannot_write_raises_an_operational_error_and_the_ledger_stays_usable(tmp_path):
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", DISK_FULL_AT_COMMIT, str(tmp_path / "ledger.sqlite")],
                         env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, check=True)
    failed, kinds = out.stdout.splitlines()
    assert failed.startswith("failed: ") and kinds == "['first', 'kept']", out.stdout


def test_nights_are_recorded_when_started_and_when_done(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.night("n1") is None
    with ledger.transaction():
        ledger.start_night("n1")
    assert ledger.night("n1")["finished"] is None and ledger.night("n1")["report"] is None
    with ledger.transaction():
        ledger.end_night("n1", {"outcome": "published", "version": 3})
    done = ledger.night("n1")
    assert done["finished"] >= done["started"] and done["report"] == {"outcome": "published", "version": 3}
    ledger.close()
