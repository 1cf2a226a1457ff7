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
    def get(self, fid):
        return None  # not seen yet: every entry is edited


class Editor:
    """Raises `error` for the facts in `bad` (all of them if None)."""

    def __init__(self, error, bad=None):
        self.ledger, self.error, self.bad, self.edited = Ledger(), error, bad, []

    def edit(self, facts, retry_on=()):
        if any(self.bad is None or f in self.bad for f in facts):
            raise self.error
        self.edited += facts


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
