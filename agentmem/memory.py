"""`Memory`: the public entry point that ties settings, model, hook, queue, editor and ledger together.

Embedded mode (no redis_url): a thread in this process applies observed
facts. Redis mode: observed facts go to a Redis stream and Celery workers
apply them under a cross-process writer lock; this process only reads the
newest published version, and writes (remember, forget) take the same lock.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterable, Iterator

import redis
import torch
from safetensors.torch import load_file

from . import generate, model_store, published
from .config import Settings
from .editor import WakeEditor
from .extract import LLMExtractor, RuleExtractor, chat_messages, user_turns
from .fact_queue import LocalFactQueue, RedisFactQueue, namespace_for
from .facts import Fact, FactError, canonical_question
from .ledger import ACTIVE, PENDING, QUEUED, REJECTED, SPOOLED, WAITING, Ledger
from .perspective import to_third_person
from .pipeline import Batching, EmbeddedWorker, drain
from .replica import Replica
from .server_client import ServerClient
from .policy import Policy, redact, secret_in
from .writer_lock import WriterLock

log = logging.getLogger(__name__)


class Memory:
    def __init__(self, settings: Settings, progress=None):
        self.settings = settings
        self.progress = progress
        home = Path(settings.home).expanduser()
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.model_dir = model_store.resolve(settings.model, settings.cache_dir)
        self.model, self.tokenizer = model_store.load(self.model_dir, settings.device)
        self.ledger = Ledger(home / "ledger.sqlite")
        self.policy = Policy(settings.policy)
        self.extractor = _extractor(settings)
        self.batching = Batching(settings.batch_max_facts, settings.batch_max_wait_ms)
        self.last_stats: dict = {}
        self._lock = threading.RLock()
        self._editor: WakeEditor | None = None
        self._loaded = 0  # the published version self.model holds
        self._worker: EmbeddedWorker | None = None
        self._celery = None
        self._night: threading.Thread | None = None  # a night started by sleep_later
        # with a server, ask and complete go through it, always at the newest published version
        self.server = ServerClient(settings.server_url) if settings.server_url else None
        self._replica: Replica | None = None  # reads through it only while a version serves an adapter
        if settings.redis_url:
            self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=3)
            ns = namespace_for(home)
            self.queue = RedisFactQueue(self.redis, ns)
            self.writer_lock: WriterLock | None = WriterLock(self.redis, ns, settings.lock_ttl_ms)
        else:
            self.redis = None
            self.queue = LocalFactQueue()
            self.writer_lock = None
            self._editor = self._new_editor(fence=None)
            self._loaded = self.ledger.latest_version()
            waiting = [(f["id"], Fact.parse(f["fact"])) for f in self.ledger.facts(status=(*WAITING, PENDING))]
            self._enqueue(waiting)
            self._worker = EmbeddedWorker(self.queue, self.batching, self._apply_locked)

    @classmethod
    def open(cls, home: str | Path | None = None, *, progress=None, **kwargs) -> "Memory":
        """Open (or create) the memory at `home` ($AGENTMEM_HOME or ~/.agentmem)."""
        if home is not None:
            kwargs["home"] = Path(home)
        return cls(Settings(**kwargs), progress=progress)

    # -- the writer ------------------------------------------------------

    def _new_editor(self, fence: int | None) -> WakeEditor:
        s = self.settings
        return WakeEditor(
            self.model, self.tokenizer, self.model_dir, self.home / "store", self.ledger,
            s.cache_dir, s.memit, s.cov_samples, s.cov_text, self.progress, fence=fence,
        )

    @contextmanager
    def _writing(self, wait: float = 600.0):
        """The editor, as the only writer: in Redis mode under the lock, in step with other writers."""
        with self._lock:
            try:
                if self.writer_lock is None:
                    yield self._editor
                else:
                    with self.writer_lock.hold(wait) as token:
                        if self._editor is None:
                            self._editor = self._new_editor(fence=token)
                        else:
                            self._editor.fence = token
                            self._editor.recover()
                        yield self._editor
            except BaseException:
                # a write that failed before its version was committed (a full disk, say) may have left its
                # weights in self.model, which answers and is edited next: load the published version again
                # (should that fail too, the next read tries)
                self._loaded = -1
                with suppress(Exception):
                    self._sync()
                raise
            self._loaded = self.ledger.latest_version()

    def _apply_locked(self, fn) -> None:
        with self._writing() as editor:
            fn(editor)

    @property
    def editor(self) -> WakeEditor:
        """The wake editor (embedded mode, or after this process has written in Redis mode)."""
        if self._editor is None:
            with self._writing() as editor:
                return editor
        return self._editor

    def drain(self, consumer: str, wait: float = 0.0) -> dict:
        """Apply everything waiting on the queue as the single writer (what a worker runs).

        Facts spooled while Redis was down are handed over first, so the
        periodic sweep delivers them even if no one observes again.
        """
        self.flush_spool()
        with self._writing(wait) as editor:
            if self.redis is not None:
                self._requeue_lost()
            return drain(editor, self.queue, consumer, self.batching).as_dict()

    def _requeue_lost(self) -> None:
        """Put back facts the ledger has as queued but the stream no longer holds.

        A fact is marked queued only after Redis took it, and leaves the stream
        only after it stops being queued; one missing was lost by Redis itself
        (a crash within the last second of writes it had not yet fsynced).
        Runs as the writer, after recover() has queued interrupted facts again.
        """
        queued = self.ledger.facts(status=QUEUED)
        if not queued:
            return
        held = self.queue.fact_ids()
        lost = [(f["id"], Fact.parse(f["fact"])) for f in queued if f["id"] not in held]
        if lost:
            log.warning("%d queued facts were missing from the Redis stream (lost in a crash); queued again", len(lost))
            self.queue.put(lost)

    # -- writing ---------------------------------------------------------

    def remember(self, facts: Iterable[Fact | dict]) -> list[str]:
        """Edit the facts into the weights now; returns their ids. All are validated first."""
        parsed = [Fact.parse(f) for f in _as_list(facts)]
        if not parsed:
            raise FactError("no facts given")
        with self._writing() as editor:
            ids, self.last_stats = editor.edit(parsed)
        return ids

    def forget(self, fact_id: str, wait: float = 600.0) -> None:
        """Remove a fact's edit from the weights (or its place in the queue) and publish the result.

        In Redis mode it waits up to `wait` seconds for the writer lock, then raises LockBusy.
        """
        if self.ledger.get(fact_id) is None:
            raise KeyError(f"no fact with id {fact_id!r}")
        with self._writing(wait) as editor:
            editor.forget(fact_id)

    def observe(self, messages: Iterable[Any], user_id: str = "default") -> list[Fact]:
        """The conversation hook: extract facts from the user's turns, screen them, queue them.

        Returns every extracted fact with `id`, `status` (queued, spooled when
        Redis was unreachable, known, rejected) and `reason`. Nothing is
        edited here; `wait` blocks until the queue has applied them.
        """
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError("user_id must be non-empty text")
        found: dict[tuple, tuple[Fact, str | None]] = {}
        secrets = []
        for text in user_turns(messages):
            turn_reason = self.policy.screen_turn(text)
            if self.settings.policy.secrets and (why := secret_in(text[:20_000])):
                secrets.append(why)
            for f in self.extractor.extract(text, user_id):
                found.pop(f.key, None)  # a later statement replaces an earlier one
                found[f.key] = (f, turn_reason)
        screened = [(f, why or self.policy.screen_fact(f)) for f, why in found.values()]
        world = [i for i, (f, why) in enumerate(screened) if why is None and self.policy.checks_world(f)]
        if world:
            # the model is consistent only between edits: just claims about the world wait for one to end
            with self._lock:
                self._sync()
                for i in world:
                    f = screened[i][0]
                    screened[i] = (f, self.policy.world_conflict(f, self.model, self.tokenizer))
        out, send = [], []
        with self.ledger.transaction():
            for why in secrets:
                # the statement itself is not kept: only that one was seen and refused
                self.ledger.event(None, REJECTED, reason=f"a message {why}; that statement is not kept", user_id=user_id)
            for f, why in screened:
                if why:
                    if secret_in(f"{f.subject} {f.relation} {f.object}"):
                        f = redact(f)
                    fid = f.fact_id()
                    if self.ledger.get(fid) is None:
                        self.ledger.add_fact(fid, f, REJECTED, reason=why)
                    else:
                        self.ledger.event(fid, REJECTED, reason=why)
                    out.append(_tagged(f, fid, REJECTED, why))
                    continue
                fid = f.fact_id()
                row = self.ledger.get(fid)
                if row and row["status"] in (ACTIVE, *WAITING, PENDING):
                    out.append(_tagged(f, fid, "known" if row["status"] == ACTIVE else row["status"], None))
                    continue
                if row is None:
                    self.ledger.add_fact(fid, f, SPOOLED, reason="accepted")
                else:
                    self.ledger.set_status(fid, SPOOLED, reason="stated again")
                send.append((fid, f))
        sent = self.flush_spool()
        for fid, f in send:
            status = QUEUED if fid in sent else SPOOLED
            out.append(_tagged(f, fid, status, None if status == QUEUED else "Redis unreachable; kept in the local spool"))
        return out

    def flush_spool(self) -> set[str]:
        """Hand every spooled fact to the queue; returns the ids handed over (none if Redis is down)."""
        spooled = [(f["id"], Fact.parse(f["fact"])) for f in self.ledger.facts(status=SPOOLED)]
        if not spooled:
            return set()
        try:
            self._enqueue(spooled)
        except redis.RedisError as e:
            log.warning("Redis unreachable (%s); %d facts stay in the local spool", e, len(spooled))
            return set()
        return {fid for fid, _ in spooled}

    def _enqueue(self, items: list[tuple[str, Fact]]) -> None:
        if not items:
            return
        self.queue.put(items)
        with self.ledger.transaction():
            for fid, _ in items:
                if self.ledger.get(fid)["status"] == SPOOLED:
                    self.ledger.set_status(fid, QUEUED, reason="on the queue")
        if self.redis is not None:
            self._nudge()

    def _nudge(self) -> None:
        """Wake a worker; a lost nudge only delays the facts until the periodic sweep."""
        from .workers.app import WAKE_TASK, make_app

        try:
            if self._celery is None:
                self._celery = make_app(self.settings)
            self._celery.send_task(WAKE_TASK)
        except Exception as e:
            log.warning("could not wake a worker (%s); the periodic sweep will pick the facts up", e)

    def wait(self, ids: Iterable[str] | None = None, timeout: float = 60.0) -> bool:
        """Block until the given facts (default: all) have left the queue; False on timeout.

        A writer settles a fact in the ledger before it acknowledges the fact's queue entry (a crash
        between the two re-delivers an entry the ledger already settled), so both are waited on.
        """
        ids = None if ids is None else set(ids)
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

    def sleep(self) -> dict:
        """Consolidate every active fact into the LoRA adapter now (what the nightly task runs); returns the report.

        Runs as the single writer: wake edits wait until the night is over.
        """
        from .sleep import run_night

        with self._writing(wait=3600.0) as editor:
            return run_night(editor, self.settings.sleep, self.home / "sleep", self.progress)

    def sleep_later(self) -> str:
        """Start a night without waiting for it: a Celery task for a worker in Redis mode, else a thread here.

        Returns "celery" or "thread". Raises RuntimeError if this process already runs one.
        """
        if self.redis is not None:
            from .workers.app import SLEEP_TASK, make_app

            if self._celery is None:
                self._celery = make_app(self.settings)
            self._celery.send_task(SLEEP_TASK)
            return "celery"
        if self._night is not None and self._night.is_alive():
            raise RuntimeError("a night is already running in this process")
        self._night = threading.Thread(target=self._sleep_logged, daemon=True, name="agentmem-sleep")
        self._night.start()
        return "thread"

    def _sleep_logged(self) -> None:
        try:
            log.info("night finished: %s", self.sleep().get("outcome"))
        except Exception:
            log.exception("night failed")

    # -- reading ---------------------------------------------------------

    def _sync(self) -> None:
        """Load the newest published version into self.model if another process published it."""
        latest = self.ledger.latest_version()
        if latest == self._loaded or latest == 0:
            return
        path = self.home / "store" / "versions" / f"v{latest:06d}" / "model.safetensors"
        try:
            tensors = load_file(str(path))
        except FileNotFoundError:
            return  # pruned or not yet renamed into place: the next call sees a newer one
        with torch.no_grad():
            for name, t in tensors.items():
                self.model.get_parameter(name).copy_(t)
        self._loaded = latest

    def _reader(self):
        """The model that answers for the newest version: the editor's own (which carries the served adapter
        so that it edits through it), or, in a process that has not written, a replica when an adapter is served."""
        if self._editor is not None:
            self._editor.follow_adapter()
            self._sync()
            return self._editor.adapter.net
        pub = published.newest(self.home, self.ledger)
        if pub is None or pub.adapter is None:
            self._sync()
            return self.model
        if self._replica is None:
            self._replica = Replica(self.model_dir, self.settings.device)
        if self._replica.version != pub.version:
            self._replica.apply(pub)
        return self._replica.net

    def ask(self, question: str, user_id: str = "default", max_new_tokens: int = 48) -> str:
        """Greedy chat answer from the newest published version; no memory text enters the context.

        First-person questions are put in the third person about the user
        ("Where do I live?" -> "Where does User u1 live?"), as observed facts are
        keyed, and a question worded as a known relation's template is asked in
        the wording its edits were keyed on.
        """
        _check_text(question, "question")
        q = canonical_question(to_third_person(question, user_id))
        messages = [{"role": "user", "content": q}]
        if self.server is not None:
            return self.server.chat(messages, max_new_tokens, min_version=self.version)
        with self._lock:
            return generate.chat(self._reader(), self.tokenizer, messages, max_new_tokens)

    def _conversation(self, messages: Iterable[Any], user_id: str) -> list[dict]:
        conv = chat_messages(messages)
        if not conv or conv[-1]["role"] != "user":
            raise ValueError("a conversation must end with a user turn")
        for m in conv:
            _check_text(m["content"], f"{m['role']} message")
        # a first-person question about a remembered relation is asked as its edits were keyed;
        # any other turn is left as the user wrote it
        last = to_third_person(conv[-1]["content"], user_id)
        if (keyed := canonical_question(last)) != last:
            conv[-1] = {"role": "user", "content": keyed}
        return conv

    def chat(self, messages: Iterable[Any], user_id: str = "default", max_new_tokens: int = 128) -> str:
        """Greedy reply to a conversation (LangChain messages or role/content dicts) from the newest version."""
        conv = self._conversation(messages, user_id)
        if self.server is not None:
            return self.server.chat(conv, max_new_tokens, min_version=self.version)
        with self._lock:
            return generate.chat(self._reader(), self.tokenizer, conv, max_new_tokens)

    def stream_chat(self, messages: Iterable[Any], user_id: str = "default", max_new_tokens: int = 128) -> Iterator[str]:
        """`chat`, as text pieces while they are generated."""
        conv = self._conversation(messages, user_id)
        if self.server is not None:
            yield from self.server.stream_chat(conv, max_new_tokens, min_version=self.version)
            return
        with self._lock:
            yield from generate.stream_chat(self._reader(), self.tokenizer, conv, max_new_tokens)

    def complete(self, prompt: str, max_new_tokens: int = 16) -> str:
        """Greedy raw completion from the newest published version (through the server when one is set)."""
        _check_text(prompt, "prompt")
        if self.server is not None:
            return self.server.complete(prompt, max_new_tokens, min_version=self.version)
        with self._lock:
            return generate.complete(self._reader(), self.tokenizer, prompt, max_new_tokens)

    def facts(self, user_id: str | None = None) -> list[dict]:
        return self.ledger.facts(user_id=user_id)

    def history(self, fact_id: str) -> list[dict]:
        if self.ledger.get(fact_id) is None:
            raise KeyError(f"no fact with id {fact_id!r}")
        return self.ledger.history(fact_id)

    def backlog(self) -> int | None:
        """Facts on the queue not yet applied; None if the queue cannot be reached."""
        try:
            return self.queue.backlog()
        except redis.RedisError:
            return None

    def status(self, user_id: str | None = None) -> dict:
        """Version, what is live, fact counts by status (of one user, or all), queue depth and mode."""
        return {"version": self.version, "live": self.ledger.live(), "facts": self.ledger.counts(user_id),
                "queue": self.backlog(), "mode": "redis" if self.redis is not None else "embedded"}

    @property
    def version(self) -> int:
        return self.ledger.latest_version()

    def publish_adapter(self, path: str | Path | None, wait: float = 600.0) -> int:
        """Serve the PEFT LoRA adapter in folder `path` (None: no adapter) from a new version; returns it.

        In Redis mode it waits up to `wait` seconds for the writer lock, then raises LockBusy.
        """
        with self._writing(wait) as editor:
            return editor.publish_adapter(None if path is None else Path(path))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self.redis is not None:
            self.redis.close()
        self.ledger.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _extractor(settings: Settings):
    if settings.extractor == "llm":
        if not settings.extractor_url or not settings.extractor_model:
            raise ValueError("extractor 'llm' needs extractor_url and extractor_model")
        return LLMExtractor(settings.extractor_url, settings.extractor_model)
    return RuleExtractor()


def _tagged(fact: Fact, fid: str, status: str, reason: str | None) -> Fact:
    return Fact.parse({**fact.to_json(), "id": fid, "status": status, "reason": reason})


def _as_list(facts) -> list:
    if isinstance(facts, (Fact, dict)):
        return [facts]
    return list(facts)


def _check_text(text, name: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name} must be non-empty text")
    if len(text) > 8000:
        raise ValueError(f"{name} is {len(text)} characters long; at most 8000 are allowed")
