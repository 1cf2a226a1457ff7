"""One writer at a time across processes: a Redis lock with expiry, renewal and a fencing token.

The lock expires if its holder dies, so a killed worker never blocks the
others for longer than its time to live. Each acquisition draws a new,
larger token from a Redis counter; the ledger refuses commits carrying a token
older than one it has already seen (see `Ledger.transaction`), so a writer
that was paused past its expiry cannot overwrite its successor's work.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis

from .shards import suffix

# Compare-and-act scripts: only the holder of the current token may extend or drop the lock.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class LockBusy(RuntimeError):
    """Another writer holds the lock."""

    def __init__(self, retry_after: float):
        super().__init__(f"another writer holds the lock; retry in {retry_after:.1f} s")
        self.retry_after = retry_after


@dataclass
class Lease:
    """A held writer lock: its fencing token, and an event set once the lock is known to be lost."""

    token: int
    lost: threading.Event = field(default_factory=threading.Event)


class WriterLock:
    def __init__(self, client: redis.Redis, namespace: str, ttl_ms: int = 30_000, shard: int = 0):
        self.client = client
        self.shard = shard
        self.key = f"{namespace}:writer{suffix(shard)}"
        self.fence_key = f"{namespace}:fence{suffix(shard)}"
        self.ttl_ms = ttl_ms
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def try_acquire(self) -> int | None:
        token = int(self.client.incr(self.fence_key))
        if self.client.set(self.key, token, nx=True, px=self.ttl_ms):
            return token
        return None

    def retry_after(self) -> float:
        """Seconds until the current holder's lock expires unless renewed."""
        left = self.client.pttl(self.key)
        return max(left, 100) / 1000 if left > 0 else 0.1

    @contextmanager
    def hold(self, wait: float = 0.0):
        """Hold the lock for the duration of the block, renewing it; yields the Lease.

        Waits up to `wait` seconds for it, then raises LockBusy.
        """
        deadline = time.monotonic() + wait
        while (token := self.try_acquire()) is None:
            if time.monotonic() >= deadline:
                raise LockBusy(self.retry_after())
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        lease, stop = Lease(token), threading.Event()
        renewer = threading.Thread(target=self._keep, args=(lease, stop), daemon=True, name="writer-lock")
        renewer.start()
        try:
            yield lease
        finally:
            stop.set()
            renewer.join()
            try:
                self._release(keys=[self.key], args=[token])
            except redis.RedisError:
                pass  # it expires on its own

    def _keep(self, lease: Lease, stop: threading.Event) -> None:
        renewed = time.monotonic()
        while not stop.wait(self.ttl_ms / 3000):
            try:
                if not self._renew(keys=[self.key], args=[lease.token, self.ttl_ms]):
                    lease.lost.set()  # the fence keeps us from committing over a successor
                    return
                renewed = time.monotonic()
            except redis.RedisError:
                if time.monotonic() - renewed > self.ttl_ms / 1000:
                    lease.lost.set()  # unrenewed past its time to live: it expired
                    return
