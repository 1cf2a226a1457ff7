"""The wake loop: take what waits on a fact queue, edit it in as batches, acknowledge it.

The same loop runs in the Celery task (Redis queue, under the writer lock)
and in the embedded thread (in-process queue). Entries are acknowledged only
after the editor has committed their facts, so a crash anywhere leaves them
on the queue to be applied exactly once later: the ledger makes a repeat a no-op.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import redis

from ..storage.ledger import FAILED, PENDING, TRY_AGAIN, WAITING, FencedOut
from .fact_queue import Entry

log = logging.getLogger(__name__)

# Failures that say nothing about the fact: leave it on the queue for a later try.
# TRY_AGAIN: the ledger's database was locked, full or failed to write, lost its connection, or (PostgreSQL)
# met a serialization failure or a deadlock.
TRANSIENT = (OSError, MemoryError, FencedOut, redis.RedisError, *TRY_AGAIN)


@dataclass
class Batching:
    """Up to `max_facts` per batch, waiting at most `max_wait_ms` for more (defaults: Settings)."""

    max_facts: int
    max_wait_ms: int


@dataclass
class Totals:
    batches: int = 0
    edited: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    expired: int = 0

    def add(self, other: "Totals") -> None:
        self.batches += other.batches
        self.edited += other.edited
        self.skipped += other.skipped
        self.failed += other.failed
        self.expired += other.expired

    def as_dict(self) -> dict:
        return {"batches": self.batches, "edited": self.edited, "skipped": self.skipped, "failed": self.failed,
                "expired": self.expired}


def gather(queue, consumer: str, batching: Batching, first: list[Entry]) -> list[Entry]:
    """Top up a batch: wait at most max_wait_ms for more facts, up to max_facts."""
    entries = list(first)
    if entries and len(entries) < batching.max_facts and batching.max_wait_ms > 0:
        entries += queue.read(consumer, batching.max_facts - len(entries), block_ms=batching.max_wait_ms)
    return entries


def apply_batch(editor, queue, entries: list[Entry], totals: Totals) -> None:
    """Edit the entries' facts in as one batch, then acknowledge them all.

    Facts no longer waiting (already applied, forgotten or superseded while
    queued, or gone with their user) are acknowledged without an edit. The
    rest are edited as one batch per scope; if a batch fails because of one
    fact, its facts are retried one by one so that the others still land.
    """
    scopes: dict[str, list[Entry]] = {}
    for e in entries:
        row = editor.ledger.get(e.fact_id)
        if row is not None and row["status"] in (*WAITING, PENDING, FAILED):
            scopes.setdefault(e.fact.scope, []).append(e)
        else:
            totals.skipped += 1
    for todo in scopes.values():
        try:
            editor.edit([e.fact for e in todo], retry_on=TRANSIENT)
            totals.edited += len(todo)
        except TRANSIENT:
            raise
        except Exception as e:
            log.warning("batch of %d failed (%s); retrying one by one", len(todo), e)
            for one in todo:
                try:
                    editor.edit([one.fact], retry_on=TRANSIENT)
                    totals.edited += 1
                except TRANSIENT:
                    raise
                except Exception as err:
                    log.warning("fact %s failed: %s", one.fact_id, err)
                    totals.failed.append(one.fact_id)
        totals.batches += 1
    queue.ack(entries)


def drain(editor, queue, consumer: str, batching: Batching) -> Totals:
    """Apply everything on the queue, orphans of a dead writer first; returns what was done."""
    totals = Totals()
    entries = queue.reclaim(consumer, batching.max_facts)
    while True:
        if not entries:
            entries = gather(queue, consumer, batching, queue.read(consumer, batching.max_facts))
            if not entries:
                return totals
        apply_batch(editor, queue, entries, totals)
        entries = queue.reclaim(consumer, batching.max_facts)


class EmbeddedWorker:
    """A thread that drains the in-process queue while the Memory is open."""

    def __init__(self, queue, batching: Batching, run_locked):
        self.queue = queue
        self.batching = batching
        # run_locked(fn) runs fn(editor) with the Memory's lock held
        self.run_locked = run_locked
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="agentmem-wake")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            first = self.queue.read("embedded", self.batching.max_facts, block_ms=250)
            if not first:
                continue
            entries = gather(self.queue, "embedded", self.batching, first)
            try:
                self.run_locked(lambda editor: apply_batch(editor, self.queue, entries, Totals()))
                self.error = None
            except BaseException as e:  # transient: keep the entries and try again shortly
                log.error("embedded wake batch failed, will retry: %s", e)
                self.error = e
                self._stop.wait(2.0)
                self.queue.put([(x.fact_id, x.fact) for x in entries])
                self.queue.ack(entries)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
