"""The wake loop: a failure that says nothing about the facts leaves them queued; a fact at fault fails alone."""

import sqlite3

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from agentmem.facts import Fact
from agentmem.writer.fact_queue import Entry
from agentmem.writer.pipeline import TRANSIENT, Totals, apply_batch

FACTS = [Fact(subject="Thea Albescu", relation="lives in", object="Oslo"),
         Fact(subject="Elio Brennan", relation="works at", object="Hollin Labs")]


class Queue:
    def __init__(self):
        self.acked = []

    def ack(self, entries):
        self.acked += entries


class Ledger:
    def __init__(self, gone=()):
        self.gone = set(gone)

    def get(self, fid):
        return None if fid in self.gone else {"id": fid, "status": "queued"}


class Editor:
    """Raises `error` for the facts in `bad` (all of them if None)."""

    def __init__(self, error=None, bad=None, gone=()):
        self.ledger, self.error, self.bad, self.edited, self.batches = Ledger(gone), error, bad, [], []

    def edit(self, facts, retry_on=()):
        if self.error is not None and any(self.bad is None or f in self.bad for f in facts):
            raise self.error
        self.edited += facts
        self.batches.append(facts)


def entries():
    return [Entry(f"e{i}", f.fact_id(), f) for i, f in enumerate(FACTS)]


@pytest.mark.parametrize("error", [sqlite3.OperationalError("database is locked"),
                                   sqlite3.OperationalError("database or disk is full"),
                                   psycopg.errors.SerializationFailure("could not serialize access"),
                                   psycopg.errors.AdminShutdown("terminating connection")])
def test_a_ledger_error_leaves_the_batch_on_the_queue(error):
    error = OperationalError("COMMIT", {}, error)  # as SQLAlchemy hands on the driver's error
    assert isinstance(error, TRANSIENT)
    queue, totals = Queue(), Totals()
    with pytest.raises(OperationalError):
        apply_batch(Editor(error), queue, entries(), totals)
    assert queue.acked == [] and totals.failed == []


def test_a_fact_at_fault_fails_alone_and_the_batch_is_acknowledged():
    queue, totals, editor = Queue(), Totals(), Editor(ValueError("no edit fits"), bad=[FACTS[0]])
    apply_batch(editor, queue, entries(), totals)
    assert totals.failed == [FACTS[0].fact_id()] and editor.edited == [FACTS[1]]
    assert queue.acked == entries()


def test_each_users_facts_are_one_batch_and_a_forgotten_users_are_dropped():
    told = [Fact(subject="User u1", relation="lives in", object="Oslo", user_id="u1"),
            Fact(subject="User u2", relation="lives in", object="Rome", user_id="u2"), *FACTS,
            Fact(subject="User u1", relation="works at", object="Hollin Labs", user_id="u1"),
            Fact(subject="User u3", relation="lives in", object="Lima", user_id="u3")]
    queued = [Entry(f"e{i}", f.fact_id(), f) for i, f in enumerate(told)]
    queue, totals = Queue(), Totals()
    editor = Editor(gone=[told[-1].fact_id()])  # u3 was forgotten while the fact was queued
    apply_batch(editor, queue, queued, totals)
    assert editor.batches == [[told[0], told[4]], [told[1]], FACTS]
    assert totals.edited == 5 and totals.skipped == 1 and queue.acked == queued
