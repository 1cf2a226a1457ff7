"""The writer of one memory home: its fact queue, the lock that makes it the only writer, and the wake editor.

Embedded (no redis_url): an in-process queue drained by a thread of this
process. Redis: one stream and one writer lock per writer shard
(writer/shards.py), each stream drained by whichever process holds its lock
(a Celery worker, or this process for remember, forget and sleep), so as
many processes as there are shards edit at once.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import ExitStack, contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

import redis
import torch
from filelock import FileLock, Timeout
from safetensors.torch import load_file

from ..facts import Fact
from ..serving import model_store
from ..serving.adapter_slot import param_of
from ..serving.scope_overlay import ScopeOverlay
from ..storage import base_model
from ..storage.layout import WEIGHTS_FILE, Layout
from ..storage.ledger import PENDING, QUEUED, SPOOLED, WAITING, Ledger
from .dispatch import SLEEP_USER_TASK, Dispatch
from .editor import WakeEditor
from .fact_queue import LocalFactQueue, ShardedQueue
from .pipeline import Batching, EmbeddedWorker, Totals, drain
from .shards import shard_of
from .writer_lock import LockBusy, WriterLock

log = logging.getLogger(__name__)
# how long an in-process write waits for a night or an edit of this process before LockBusy
BUSY_RETRY_S = 5.0


class HomeBusy(RuntimeError):
    """Another process writes to this home in embedded mode."""


class ReadOnly(RuntimeError):
    """A write was asked of a memory opened read-only."""


class Writer:
    """`settings` is a config.Settings (read for home, database, model, device, cache, memit, covariance, Redis,
    lock and batching); `model` and `tokenizer` are loaded from it unless given.

    Embedded, the writer holds HOME/writer.lock for its life: a second process that would write to the
    same home is refused at once. `read_only` opens no queue worker, no editor and takes no lock: it
    reads what is published and never recovers or writes.
    """

    def __init__(self, settings, progress=None, model=None, tokenizer=None, read_only: bool = False):
        self.settings = settings
        self.progress = progress
        self.read_only = read_only
        self.layout = Layout(Path(settings.home).expanduser())
        self.layout.home.mkdir(parents=True, exist_ok=True)
        self._home_lock: FileLock | None = None
        if not settings.redis_url and not read_only:
            self._home_lock = _hold_home(self.layout)
        self.ledger: Ledger | None = None
        try:
            self.model_dir = model_store.resolve(settings.model, settings.cache_dir)
            if model is None:
                model, tokenizer = model_store.load(self.model_dir, settings.device)
            self.ledger = Ledger.open(self.layout, settings.database_url)
            # bound only once the model loads: a folder that fails to load must not claim a new home
            base_model.bind(self.ledger, self.model_dir, read_only)
        except BaseException:
            if self.ledger is not None:
                self.ledger.close()
            self._release_home()
            raise
        self.model, self.tokenizer = model, tokenizer
        # the one user memory added into self.model at a time (for reading; the editor releases it to write)
        self.overlay = ScopeOverlay(lambda name: param_of(self.model, name))
        self.batching = Batching(settings.batch_max_facts, settings.batch_max_wait_ms)
        # held while this process edits the model or reads from it
        self.lock = threading.RLock()
        self.loaded = 0  # the published version self.model holds
        self._editor: WakeEditor | None = None
        self._worker: EmbeddedWorker | None = None
        if settings.redis_url:
            self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=3)
            ns, self.shards = self.layout.namespace, settings.writer_shards
            self.queue = ShardedQueue(self.redis, ns, self.shards)
            self.writer_locks = [WriterLock(self.redis, ns, settings.lock_ttl_ms, k) for k in range(self.shards)]
            self.dispatch: Dispatch | None = Dispatch(settings.redis_url, ns)
        else:
            self.redis, self.shards = None, 1  # one process writes: nothing to run in parallel
            self.queue = LocalFactQueue()
            self.writer_locks = []
            self.dispatch = None
        if self._home_lock is not None:
            self._editor = self._new_editor(fence=None)
            self.loaded = self.ledger.latest_version()
            waiting = [(f["id"], Fact.parse(f["fact"])) for f in self.ledger.facts(status=(*WAITING, PENDING))]
            self.enqueue(waiting)
            self._worker = EmbeddedWorker(self.queue, self.batching, self._apply_locked)

    # -- the editor, as the only writer ----------------------------------

    def _new_editor(self, fence: int | None, shard: int = 0) -> WakeEditor:
        s = self.settings
        return WakeEditor(
            self.model, self.tokenizer, self.model_dir, self.layout, self.ledger,
            s.cache_dir, s.memit, s.cov_samples, s.cov_text, self.progress, fence=fence, max_rank=s.user_max_rank,
            overlay=self.overlay, shard=shard, shards=self.shards,
        )

    def shard_of(self, scope: str) -> int:
        return shard_of(scope, self.shards)

    @contextmanager
    def writing(self, wait: float = 600.0, shard: int = 0):
        """The editor, as the only writer of `shard`'s scopes (shard 0: the shared one): in Redis mode under that
        shard's lock, in step with other writers.

        Waits at most `wait` seconds for this process's own writes (a night, say) as for another's: LockBusy.
        """
        self.check_writable()
        if not self.lock.acquire(timeout=wait):
            raise LockBusy(BUSY_RETRY_S)
        try:
            try:
                if not self.writer_locks:
                    yield self._editor
                else:
                    with self.writer_locks[shard].hold(wait) as lease:
                        if self._editor is None:
                            self._editor = self._new_editor(fence=lease.token, shard=shard)
                        else:
                            self._editor.fence, self._editor.shard = lease.token, shard
                            self._editor.recover()
                        self._editor.lease = lease
                        yield self._editor
            except BaseException:
                # a write that failed before its version was committed (a full disk, say) may have left its
                # weights in self.model, which answers and is edited next: load the published version again
                # (should that fail too, the next read tries)
                self.loaded = -1
                with suppress(Exception):
                    self.sync()
                raise
            self.loaded = self.ledger.latest_version()
        finally:
            self.lock.release()

    @contextmanager
    def quiet(self, wait: float = 600.0):
        """No writer of the home commits while the block runs: this process's writes and, in Redis mode, every
        shard's writer lock held. Yields the leases; one whose `lost` is set was not held throughout.

        Waits at most `wait` seconds for each: LockBusy.
        """
        self.check_writable()
        if not self.lock.acquire(timeout=wait):
            raise LockBusy(BUSY_RETRY_S)
        try:
            with ExitStack() as held:
                yield [held.enter_context(lock.hold(wait)) for lock in self.writer_locks]
        finally:
            self.lock.release()

    def check_writable(self) -> None:
        if self.read_only:
            raise ReadOnly(f"the memory at {self.layout.home} was opened read-only")

    def _apply_locked(self, fn) -> None:
        with self.writing() as editor:
            fn(editor)

    @property
    def editor(self) -> WakeEditor | None:
        """The wake editor, once this process has written (always, embedded)."""
        return self._editor

    def drain(self, consumer: str, wait: float = 0.0, shard: int | None = None) -> dict:
        """Apply everything waiting on the queue of `shard` as its single writer (what a worker runs); with no
        shard, of every shard whose lock is free (LockBusy only if none was).

        Facts spooled while Redis was down are handed over first, so the
        periodic sweep delivers them even if no one observes again.
        """
        self.flush_spool()
        done, busy = Totals(), []
        shards = range(self.shards) if shard is None else [shard]
        for k in shards:
            try:
                with self.writing(wait, k) as editor:
                    if self.redis is not None:
                        self._requeue_lost(k)
                    expired, retrain = self.expire(editor, k)
                    queue = self.queue.shard(k) if self.redis is not None else self.queue
                    done.add(drain(editor, queue, consumer, self.batching))
                    done.expired += len(expired)
                if self.dispatch is not None:  # embedded, Memory.expire starts the night itself
                    for scope in retrain:
                        self.dispatch.send(SLEEP_USER_TASK, [scope])
            except LockBusy as e:
                busy.append(e)
        if len(busy) == len(shards):
            raise busy[0]
        return done.as_dict()

    def expire(self, editor: WakeEditor, shard: int) -> tuple[list[str], set[str]]:
        """As the writer of `shard`, forget its scopes' facts whose expiry has come (before the queue is drained,
        so none is edited in first). Returns their ids, and the users whose night adapter went with one of them
        (a night must train it again without the fact, as after any forget)."""
        gone, retrain = [], set()
        for row in self.ledger.expired(time.time()):
            if self.shard_of(row["scope"]) != shard:
                continue
            if editor.night_holds(row["scope"], row["id"]):
                retrain.add(row["scope"])
            when = datetime.fromtimestamp(row["expires"], timezone.utc).isoformat(timespec="seconds")
            editor.forget(row["id"], reason=f"expired at {when}")
            gone.append(row["id"])
        if gone:
            log.info("forgot %d expired facts of writer shard %d", len(gone), shard)
        return gone, retrain

    def _requeue_lost(self, shard: int) -> None:
        """Put back facts the ledger has as queued but the stream no longer holds.

        A fact is marked queued only after Redis took it, and leaves the stream
        only after it stops being queued; one missing was lost by Redis itself
        (a crash within the last second of writes it had not yet fsynced).
        Runs as the writer, after recover() has queued interrupted facts again.
        """
        # by the scope the fact will be edited into: the one its stream was chosen by
        queued = [(f["id"], fact) for f in self.ledger.facts(status=QUEUED)
                  if self.shard_of((fact := Fact.parse(f["fact"])).scope) == shard]
        if not queued:
            return
        held = self.queue.shard(shard).fact_ids()
        lost = [(fid, fact) for fid, fact in queued if fid not in held]
        if lost:
            log.warning("%d queued facts were missing from the Redis stream (lost in a crash); queued again", len(lost))
            self.queue.put(lost)

    # -- handing facts to the queue --------------------------------------

    def flush_spool(self) -> set[str]:
        """Hand every spooled fact to the queue; returns the ids handed over (none if Redis is down)."""
        self.check_writable()
        spooled = [(f["id"], Fact.parse(f["fact"])) for f in self.ledger.facts(status=SPOOLED)]
        if not spooled:
            return set()
        try:
            self.enqueue(spooled)
        except redis.RedisError as e:
            log.warning("Redis unreachable (%s); %d facts stay in the local spool", e, len(spooled))
            return set()
        return {fid for fid, _ in spooled}

    def enqueue(self, items: list[tuple[str, Fact]]) -> None:
        if not items:
            return
        shards = self.queue.put(items)
        with self.ledger.transaction():
            for fid, _ in items:
                if self.ledger.get(fid)["status"] == SPOOLED:
                    self.ledger.queued(fid)
        if self.dispatch is not None:
            self.dispatch.nudge(shards)

    def wait(self, ids: set[str] | None, timeout: float) -> bool:
        """Block until the given facts (None: all) have left the queue; False on timeout.

        A writer settles a fact in the ledger before it acknowledges the fact's queue entry (a crash
        between the two re-delivers an entry the ledger already settled), so both are waited on.
        """
        deadline = time.monotonic() + timeout
        while True:
            waiting = [f for f in self.ledger.facts(status=(*WAITING, PENDING)) if ids is None or f["id"] in ids]
            if not waiting and not self._still_queued(ids):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def _still_queued(self, ids: set[str] | None) -> bool:
        """Whether the queue still holds an entry of these facts (default: of any fact in the ledger)."""
        try:
            held = self.queue.fact_ids()
        except redis.RedisError:
            return True  # unconfirmed until the queue answers
        return bool(held & ids) if ids is not None else any(self.ledger.get(i) for i in held)

    def backlog(self) -> int | None:
        """Facts on the queue not yet applied; None if the queue cannot be reached."""
        try:
            return self.queue.backlog()
        except redis.RedisError:
            return None

    # -- the model as published ------------------------------------------

    def sync(self) -> None:
        """Load the newest published version into self.model if another process published it."""
        latest = self.ledger.latest_version()
        if latest == self.loaded or latest == 0:
            return
        try:
            tensors = load_file(str(self.layout.version_dir(latest) / WEIGHTS_FILE))
        except FileNotFoundError:
            return  # pruned or not yet renamed into place: the next call sees a newer one
        self.overlay.release()
        with torch.no_grad():
            for name, t in tensors.items():
                self.model.get_parameter(name).copy_(t)
        self.loaded = latest

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self.redis is not None:
            self.redis.close()
        self.ledger.close()
        self._release_home()

    def _release_home(self) -> None:
        if self._home_lock is not None:
            self._home_lock.release()
            self._home_lock = None


def _hold_home(layout: Layout) -> FileLock:
    """Take HOME/writer.lock for this process, or refuse naming the process that holds it."""
    lock = FileLock(layout.writer_lock, thread_local=False, preserve_lock_file=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            owner = layout.writer_lock.read_text().strip() or "unknown"
        except OSError:
            owner = "unknown"
        raise HomeBusy(f"the memory at {layout.home} is open for writing by another process ({owner}); close it "
                       "first, or share the home through Redis workers (AGENTMEM_REDIS_URL)") from None
    # the lock is on the open file, not its content: who holds it is written for the next one to read
    layout.writer_lock.write_text(f"pid {os.getpid()}: {' '.join(sys.argv) or 'python'}\n")
    return lock
