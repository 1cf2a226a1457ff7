"""Queues that carry accepted facts from the hook to the editor: a Redis stream, or one in-process.

An entry leaves a queue only when `ack` is called, which the editor does
after the fact's edit is committed to the training copy and the ledger. A
reader that dies holding entries leaves them pending; the next writer takes
them over with `reclaim`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import redis

from ..facts import Fact
from .shards import shard_of, suffix

log = logging.getLogger(__name__)


@dataclass
class Entry:
    entry_id: str
    fact_id: str
    fact: Fact


class RedisFactQueue:
    """A Redis stream with one consumer group; only the writer-lock holder reads it."""

    GROUP = "editors"

    def __init__(self, client: redis.Redis, namespace: str, shard: int = 0):
        self.client = client
        self.stream = f"{namespace}:facts{suffix(shard)}"
        self._group_ready = False

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self.client.xgroup_create(self.stream, self.GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._group_ready = True

    def put(self, items: list[tuple[str, Fact]]) -> None:
        """Append facts atomically: all of them reach the stream, or none does."""
        self._ensure_group()
        pipe = self.client.pipeline(transaction=True)
        for fid, fact in items:
            pipe.xadd(self.stream, {"id": fid, "fact": json.dumps(fact.to_json())})
        pipe.execute()

    def _entries(self, raw) -> list[Entry]:
        out, junk = [], []
        for entry_id, fields in raw:
            try:
                fields = {_s(k): _s(v) for k, v in (fields or {}).items()}
                out.append(Entry(_s(entry_id), fields["id"], Fact.parse(json.loads(fields["fact"]))))
            except (KeyError, ValueError, UnicodeDecodeError) as e:
                # not written by agentmem (or deleted while pending): nothing in it can be edited in
                log.error("dropping malformed queue entry %s: %s", _s(entry_id), e)
                junk.append(Entry(_s(entry_id), "", None))
        self.ack(junk)
        return out

    def reclaim(self, consumer: str, count: int) -> list[Entry]:
        """Entries a dead writer read but never acknowledged.

        Only a lock holder reads, so every pending entry is an orphan once we hold the lock.
        """
        self._ensure_group()
        _, claimed, *_ = self.client.xautoclaim(self.stream, self.GROUP, consumer, min_idle_time=0, start_id="0-0", count=count)
        return self._entries(claimed)

    def read(self, consumer: str, count: int, block_ms: int | None = None) -> list[Entry]:
        self._ensure_group()
        got = self.client.xreadgroup(self.GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms)
        return self._entries(got[0][1]) if got else []

    def ack(self, entries: list[Entry]) -> None:
        if entries:
            ids = [e.entry_id for e in entries]
            pipe = self.client.pipeline(transaction=True)
            pipe.xack(self.stream, self.GROUP, *ids)
            pipe.xdel(self.stream, *ids)
            pipe.execute()

    def backlog(self) -> int:
        """Entries not yet acknowledged: waiting plus being worked on (read without creating the stream, so that
        looking at a queue never makes one)."""
        return int(self.client.xlen(self.stream))

    def fact_ids(self) -> set[str]:
        """Ids of the facts on the stream, read or not (entries leave it only when acknowledged)."""
        self._ensure_group()
        return {_s(fields[b"id"]) for _, fields in self.client.xrange(self.stream) if fields and b"id" in fields}


class ShardedQueue:
    """The streams of every writer shard, as the hook sees them: each fact goes to its scope's shard."""

    def __init__(self, client: redis.Redis, namespace: str, shards: int):
        self.shards = [RedisFactQueue(client, namespace, k) for k in range(shards)]

    def shard(self, k: int) -> RedisFactQueue:
        return self.shards[k]

    @property
    def stream(self) -> str:
        """Shard 0's stream (the only one with one shard)."""
        return self.shards[0].stream

    def put(self, items: list[tuple[str, Fact]]) -> set[int]:
        """Append each fact to its shard's stream (atomically per shard); returns the shards that got some."""
        by_shard: dict[int, list[tuple[str, Fact]]] = {}
        for fid, fact in items:
            by_shard.setdefault(shard_of(fact.scope, len(self.shards)), []).append((fid, fact))
        for k, mine in by_shard.items():
            self.shards[k].put(mine)
        return set(by_shard)

    def backlog(self) -> int:
        return sum(q.backlog() for q in self.shards)

    def fact_ids(self) -> set[str]:
        return set().union(*(q.fact_ids() for q in self.shards))


class LocalFactQueue:
    """The embedded queue: the same interface inside one process."""

    def __init__(self):
        self._items: list[Entry] = []
        self._taken: dict[str, Entry] = {}
        self._seq = 0
        self._cond = threading.Condition()

    def put(self, items: list[tuple[str, Fact]]) -> None:
        with self._cond:
            for fid, fact in items:
                self._seq += 1
                self._items.append(Entry(str(self._seq), fid, fact))
            self._cond.notify_all()

    def reclaim(self, consumer: str, count: int) -> list[Entry]:
        with self._cond:
            return list(self._taken.values())[:count]

    def read(self, consumer: str, count: int, block_ms: int | None = None) -> list[Entry]:
        deadline = None if block_ms is None else time.monotonic() + block_ms / 1000
        with self._cond:
            while not self._items and block_ms is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            got, self._items = self._items[:count], self._items[count:]
            for e in got:
                self._taken[e.entry_id] = e
            return got

    def ack(self, entries: list[Entry]) -> None:
        with self._cond:
            for e in entries:
                self._taken.pop(e.entry_id, None)
            self._cond.notify_all()

    def backlog(self) -> int:
        with self._cond:
            return len(self._items) + len(self._taken)

    def fact_ids(self) -> set[str]:
        with self._cond:
            return {e.fact_id for e in (*self._items, *self._taken.values())}



def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else v
