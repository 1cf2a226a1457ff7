"""`Memory`: the public entry point that ties settings, model, hook, policy, writer and readers together.

Embedded mode (no redis_url): a thread in this process applies observed
facts. Redis mode: observed facts go to a Redis stream and Celery workers
apply them under a cross-process writer lock; this process only reads the
newest published version, and writes (remember, forget) take the same lock
(see writer/service.py). With a server_url, answers come from `agentmem serve`.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from .config import Settings
from .extract import chat_messages, make_extractor, replies
from .extract.answers import answered
from .extract.corrections import corrected
from .extract.people import naming, resolve_facts
from .extract.when import dated
from .facts import SHARED, Fact, FactError
from .facts.policy import Policy, names_another_user, redact, secret_in
from .serving import generate
from .serving.client import DEFAULT_URL, ServerClient
from .serving.keyed import keyed, keyed_conversation
from .serving.replica import Replica
from .serving.wire import MODEL_ID
from .serving.world import world_conflict
from .sleep.night import run_night, run_user_night, users_due
from .storage import backup, published
from .storage.ledger import ACTIVE, PENDING, QUEUED, REJECTED, SPOOLED, WAITING
from .storage.overview import overview
from .storage.quota import check_user_quota
from .writer.dispatch import SLEEP_TASK, SLEEP_USER_TASK
from .writer.editor import WakeEditor
from .writer.service import Writer

log = logging.getLogger(__name__)


class Memory:
    def __init__(self, settings: Settings, progress=None, read_only: bool = False):
        self.settings = settings
        self.progress = progress
        self.writer = Writer(settings, progress, read_only=read_only)
        self.layout, self.home = self.writer.layout, self.writer.layout.home
        self.model_dir, self.model, self.tokenizer = self.writer.model_dir, self.writer.model, self.writer.tokenizer
        self.ledger, self.queue, self.redis = self.writer.ledger, self.writer.queue, self.writer.redis
        self.policy = Policy(settings.policy)
        self.extractor = _extractor(settings)
        self.last_stats: dict = {}
        self._night: threading.Thread | None = None  # a night started by sleep_later
        # with a server, ask and complete go through it, always at the newest published version
        self.server = ServerClient(settings.server_url, token=settings.server_token) if settings.server_url else None
        self._replica: Replica | None = None  # reads through it only while a version serves an adapter

    @classmethod
    def open(cls, home: str | Path | None = None, *, progress=None, read_only: bool = False, **kwargs) -> "Memory":
        """Open (or create) the memory at `home` ($AGENTMEM_HOME or ~/.agentmem).

        `read_only`: answer from what is published and never write (nor recover another process's work);
        a second process may then read a home that another one writes in embedded mode.
        """
        if home is not None:
            kwargs["home"] = Path(home)
        return cls(Settings(**kwargs), progress=progress, read_only=read_only)

    @property
    def editor(self) -> WakeEditor:
        """The wake editor (embedded mode, or after this process has written in Redis mode)."""
        if self.writer.editor is None:
            with self.writer.writing() as editor:
                return editor
        return self.writer.editor

    def drain(self, consumer: str, wait: float = 0.0) -> dict:
        """Apply everything waiting on the queue as the single writer (what a worker runs)."""
        return self.writer.drain(consumer, wait)

    # -- writing ---------------------------------------------------------

    def remember(self, facts: Iterable[Fact | dict]) -> list[str]:
        """Edit the facts into the weights now; returns their ids. All are validated first.

        Each fact goes to its user's memory (`user_id`), or with none to the shared scope every user reads.
        """
        parsed = _parse_facts(facts)
        stats = []
        for shard in sorted({self.writer.shard_of(f.scope) for f in parsed}):
            with self.writer.writing(shard=shard) as editor:
                stats.append(editor.edit([f for f in parsed if self.writer.shard_of(f.scope) == shard])[1])
        self.last_stats = stats[0] if len(stats) == 1 else {"edited": sum(s["edited"] for s in stats),
                                                             "shards": stats}
        # a person named in a remembered fact is "my aunt" to that user, as when the user said it
        named = [(f, alias) for f in parsed if f.user_id is not None and (alias := naming(f))]
        if named:
            with self.ledger.transaction():
                for f, alias in named:
                    self.ledger.bind_alias(f.user_id, *alias, f.fact_id())
        return [f.fact_id() for f in parsed]

    def forget(self, fact_id: str, wait: float = 600.0) -> None:
        """Remove a fact's edit from the weights (or its place in the queue) and publish the result. A user's
        night adapter trained on it goes in the same version, and a night of that user starts at once to
        train it again without the fact.

        In Redis mode it waits up to `wait` seconds for the writer lock, then raises LockBusy.
        """
        row = self.ledger.get(fact_id)
        if row is None:
            raise KeyError(f"no fact with id {fact_id!r}")
        scope = row["scope"]
        with self.writer.writing(wait, self.writer.shard_of(scope)) as editor:
            retrain = editor.night_holds(scope, fact_id)
            editor.forget(fact_id)
        if retrain:  # the user's night adapter went with the fact: train it again without the fact, now
            self._retrain_later(scope)

    def _retrain_later(self, scope: str) -> None:
        try:
            self.sleep_later(scope)
        except RuntimeError as e:
            log.warning("the night that retrains user memory without a forgotten fact waits: %s", e)

    def expire(self, wait: float = 600.0) -> list[str]:
        """Forget now every fact whose expiry has come, as `forget` does; returns their ids. Workers do this each
        time they drain their queue, and a night first; an embedded home between nights does it here."""
        gone, retrain = self._expire(wait)
        for scope in retrain:
            self._retrain_later(scope)
        return gone

    def _expire(self, wait: float) -> tuple[list[str], set[str]]:
        gone, retrain = [], set()
        for shard in range(self.writer.shards):
            with self.writer.writing(wait, shard) as editor:
                ids, users = self.writer.expire(editor, shard)
            gone += ids
            retrain |= users
        return gone, retrain

    def backup(self, dest: str | Path, wait: float = 3600.0) -> dict:
        """Copy this home whole into the new folder `dest` (`agentmem restore` makes it a home again): the
        ledger's rows and the store's files as one moment, taken while no writer may commit (edits and nights
        wait). Returns what was copied.

        In Redis mode it waits up to `wait` seconds for each writer's lock, then raises LockBusy.
        """
        with self.writer.quiet(wait) as leases:
            manifest = backup.write(self.ledger, self.layout, Path(dest))
            if any(lease.lost.is_set() for lease in leases):
                shutil.rmtree(dest, ignore_errors=True)
                raise RuntimeError("a writer's lock lapsed while the backup was copied (Redis out of reach?), so "
                                   "it may not be one moment: it was removed; take it again")
        return manifest

    def forget_user(self, user_id: str, wait: float = 600.0) -> int:
        """Remove everything of a user at once: their facts (queued ones too), edits, adapters and versions; the
        ledger keeps no value of theirs. Returns how many facts went. Nothing of theirs is answerable after.

        In Redis mode it waits up to `wait` seconds for the writer lock, then raises LockBusy.
        """
        _check_user(user_id)
        with self.writer.writing(wait, self.writer.shard_of(user_id)) as editor:
            return editor.forget_user(user_id)

    def move_to_users(self, wait: float = 600.0, timeout: float = 3600.0) -> dict:
        """Move the users' facts an existing home keeps in its shared weights into each user's own memory
        (see WakeEditor.move_to_users) and wait up to `timeout` s for them to be edited there; returns what
        was moved. Nothing is lost: a crash part-way leaves the facts queued for their users."""
        with self.writer.writing(wait) as editor:
            report, facts = editor.move_to_users()
        if facts:
            self.writer.enqueue([(f.id, f) for f in facts])
            report["applied"] = self.wait([f.id for f in facts], timeout)
        return report

    def observe(self, messages: Iterable[Any], user_id: str = "default") -> list[Fact]:
        """The conversation hook: extract facts from the user's turns, screen them, queue them.

        Returns every extracted fact with `id`, `status` (queued, spooled when
        Redis was unreachable, known, rejected) and `reason`. Nothing is
        edited here; `wait` blocks until the queue has applied them. A fact
        that names one of the user's people ("User u1 has an aunt named ...")
        binds the alias ("aunt") in the ledger, and what is said after of
        "my aunt" is stored about her by name (see extract/people.py).
        Raises QuotaExceeded, with nothing recorded, past the user's quota
        (`user_facts_per_hour`, `user_max_facts`).
        """
        _check_user(user_id)
        self.writer.check_writable()
        found: dict[tuple, tuple[Fact, str | None, bool]] = {}
        secrets = []
        aliases = self.ledger.aliases(user_id)
        said: list[Fact] = []  # the turn before's facts, for a turn that only corrects them
        for question, text in replies(messages):
            turn_reason = self.policy.screen_turn(text)
            if self.settings.policy.secrets and (why := secret_in(text[:20_000])):
                secrets.append(why)
            # what the user says of "my aunt" once she is named in full is about her by name; a short reply
            # answers the assistant's question ("Where do you live?" "Lisbon.")
            said = (self.extractor.extract(text, user_id) or answered(question, text, user_id)
                    or corrected(said, text))
            facts = dated(resolve_facts(said, aliases), text, time.time())
            for f, secret in zip(facts, self.policy.screen_secrets(text, facts)):
                found.pop(f.key, None)  # a later statement replaces an earlier one
                found[f.key] = (f, turn_reason or secret, secret is not None)
        return self._screen_and_queue(list(found.values()), secrets, user_id)

    def remember_later(self, facts: Iterable[Fact | dict]) -> list[Fact]:
        """Queue facts for the wake editor, screened as the hook screens what a user says (secrets, instructions,
        world knowledge), each in its own scope (`user_id`; none: the shared scope); returns them tagged as
        `observe` does. All are validated first, so one malformed fact queues none; past a user's quota,
        QuotaExceeded and none is queued either. `remember` edits at once, and screens and counts nothing."""
        parsed = _parse_facts(facts)
        self.writer.check_writable()
        found = {f.fact_id(): (f, None, False) for f in parsed}  # a fact given twice is queued once
        return self._screen_and_queue(list(found.values()), [], None)

    def _screen_and_queue(self, found: list[tuple[Fact, str | None, bool]], secrets: list[str],
                          user_id: str | None) -> list[Fact]:
        """Screen (fact, reason so far, carries a secret) with the policy, record each in the ledger (refused,
        known, or spooled) and hand the spooled ones to the queue. `secrets`: reasons a turn of `user_id` was
        refused whole."""
        screened = [(f, why or self.policy.screen_fact(f), secret) for f, why, secret in found]
        world = [i for i, (f, why, _) in enumerate(screened) if why is None and self.policy.checks_world(f)]
        if world:
            # the model is consistent only between edits: just claims about the world wait for one to end
            with self.writer.lock:
                self.writer.sync()
                for i in world:
                    f = screened[i][0]
                    screened[i] = (f, world_conflict(f, self.model, self.tokenizer, self.settings.policy), False)
        out, send = [], []
        with self.ledger.transaction():
            for why in secrets:
                # the statement itself is not kept: only that one was seen and refused
                self.ledger.event(None, REJECTED, reason=f"a message {why}; that statement is not kept", user_id=user_id)
            for f, why, secret in screened:
                if why:
                    if secret or secret_in(f"{f.subject} {f.relation} {f.object}"):
                        f = redact(f)
                    fid = f.fact_id()
                    self.ledger.reject(fid, f, why)
                    out.append(_tagged(f, fid, REJECTED, why))
                    continue
                fid = f.fact_id()
                if f.user_id is not None and (alias := naming(f)):
                    # a person named again, or by another name ("my aunt is actually called ..."), rebinds it
                    self.ledger.bind_alias(f.user_id, *alias, fid)
                row = self.ledger.get(fid)
                if row and row["status"] in (ACTIVE, *WAITING, PENDING):
                    self.ledger.restate(row, f)  # "I'm flying to Boston on Friday", said again of another Friday
                    out.append(_tagged(f, fid, "known" if row["status"] == ACTIVE else row["status"], None))
                    continue
                self.ledger.spool(fid, f, "accepted" if row is None else "stated again")
                send.append((fid, f))
            # users in one order, so that two calls naming the same users never wait on each other's holds
            for user, n in sorted(Counter(f.user_id for _, f in send if f.user_id is not None).items()):
                check_user_quota(self.ledger, user, n, self.settings.user_facts_per_hour, self.settings.user_max_facts)
        sent = self.flush_spool()
        for fid, f in send:
            status = QUEUED if fid in sent else SPOOLED
            out.append(_tagged(f, fid, status, None if fid in sent else "Redis unreachable; kept in the local spool"))
        return out

    def flush_spool(self) -> set[str]:
        """Hand every spooled fact to the queue; returns the ids handed over (none if Redis is down)."""
        return self.writer.flush_spool()

    def wait(self, ids: Iterable[str] | None = None, timeout: float = 60.0) -> bool:
        """Block until the given facts (default: all) have left the queue; False on timeout."""
        return self.writer.wait(None if ids is None else set(ids), timeout)

    def sleep(self, user_id: str | None = None) -> dict:
        """Consolidate now (what the nightly task runs); returns the report.

        Without a user: the shared scope's night, then the night of every user with facts to consolidate,
        each gated and published on its own (`report["users"]`: each one's outcome and user version); with
        `user_id`: that user's night alone. Each runs as the single writer of its scope: wake edits wait.
        """
        if user_id is not None:
            _check_user(user_id)
            return self._user_night(user_id)
        self._expire(wait=3600.0)  # a user whose night adapter went with an expired fact is due below anyway
        with self.writer.writing(wait=3600.0) as editor:
            report = run_night(editor, self.settings.sleep, self.layout.sleep_reports, self.progress)
        report["users"] = {}
        for scope in users_due(self.ledger, self.layout, self.settings.sleep):
            try:
                night = self._user_night(scope)
                report["users"][scope] = {"outcome": night["outcome"], "version": night["version"]}
            except Exception as e:  # one user's failed night holds back no other's
                log.exception("a user's night failed")
                report["users"][scope] = {"outcome": f"failed: {type(e).__name__}: {e}", "version": None}
        return report

    def _user_night(self, scope: str) -> dict:
        with self.writer.writing(wait=3600.0, shard=self.writer.shard_of(scope)) as editor:
            return run_user_night(editor, scope, self.settings.sleep, self.layout.user_sleep_reports(scope),
                                  self.progress)

    def sleep_later(self, user_id: str | None = None) -> str:
        """Start a night (of `user_id` alone, if given) without waiting for it: a Celery task for a worker in
        Redis mode, else a thread here.

        Returns "celery" or "thread". Raises RuntimeError if this process already runs one.
        """
        if user_id is not None:
            _check_user(user_id)
        if self.writer.dispatch is not None:
            if user_id is None:
                self.writer.dispatch.send(SLEEP_TASK)
            else:
                self.writer.dispatch.send(SLEEP_USER_TASK, [user_id])
            return "celery"
        if self._night is not None and self._night.is_alive():
            raise RuntimeError("a night is already running in this process")
        self._night = threading.Thread(target=self._sleep_logged, args=(user_id,), daemon=True,
                                       name="agentmem-sleep")
        self._night.start()
        return "thread"

    def _sleep_logged(self, user_id: str | None = None) -> None:
        try:
            log.info("night finished: %s", self.sleep(user_id).get("outcome"))
        except Exception:
            log.exception("night failed")

    # -- reading ---------------------------------------------------------

    @contextmanager
    def reading(self, user_id: str | None = None) -> Iterator[Any]:
        """The model that answers for the newest version, with the newest adapter of `user_id` (None: the
        shared memory alone), held still (no write lands) while the block runs."""
        with self.writer.lock:
            yield self._reader(SHARED if user_id is None else user_id)

    def _reader(self, scope: str):
        """The editor's own model (which carries the served adapter so that it edits through it), or, in a
        process that has not written, the model itself, or a replica while a version serves an adapter;
        with the user's adapter of `scope` added in."""
        user = published.newest_user(self.layout, self.ledger, scope)
        editor = self.writer.editor
        if editor is not None:
            editor.follow_adapter()
            self.writer.sync()
            editor.overlay.hold_user(user)
            return editor.adapter.net
        pub = published.newest(self.layout, self.ledger)
        if pub is None or pub.adapter is None:
            self.writer.sync()
            self.writer.overlay.hold_user(user)
            return self.model
        if self._replica is None:
            self._replica = Replica(self.model_dir, self.settings.device)
        if self._replica.version != pub.version:
            self._replica.apply(pub)
        self._replica.overlay.hold_user(user)
        return self._replica.net

    def ask(self, question: str, user_id: str | None = "default", max_new_tokens: int = 48) -> str:
        """Greedy chat answer from the newest published version with `user_id`'s memory (None: the shared
        memory alone); no memory text enters the context.

        One of the user's people named in full is asked about by name ("What
        does my aunt do?" -> "What does Wilhelmina Fairweather do?"), other
        first-person questions are put in the third person about the user
        ("Where do I live?" -> "Where does User u1 live?"), as observed facts are
        keyed, and a question worded as a known relation's template is asked in
        the wording its edits were keyed on.
        """
        _check_text(question, "question")
        if user_id is not None:
            _check_user(user_id)
        messages = [{"role": "user", "content": keyed(self.ledger, question, user_id)}]
        if self.server is not None:
            return self.server.chat(messages, max_new_tokens, **self._at_least(user_id))
        with self.reading(user_id) as net:
            return generate.chat(net, self.tokenizer, messages, max_new_tokens)

    def _conversation(self, messages: Iterable[Any], user_id: str | None) -> list[dict]:
        conv = chat_messages(messages)
        if not conv or conv[-1]["role"] != "user":
            raise ValueError("a conversation must end with a user turn")
        for m in conv:
            _check_text(m["content"], f"{m['role']} message")
        if user_id is not None:
            _check_user(user_id)
        # a question about a remembered relation is asked as its edits were keyed, one about "my aunt" names her
        return keyed_conversation(self.ledger, conv, user_id)

    def chat(self, messages: Iterable[Any], user_id: str | None = "default", max_new_tokens: int = 128) -> str:
        """Greedy reply to a conversation (LangChain messages or role/content dicts) from the newest version,
        with `user_id`'s memory (None: the shared memory alone)."""
        conv = self._conversation(messages, user_id)
        if self.server is not None:
            return self.server.chat(conv, max_new_tokens, **self._at_least(user_id))
        with self.reading(user_id) as net:
            return generate.chat(net, self.tokenizer, conv, max_new_tokens)

    def stream_chat(self, messages: Iterable[Any], user_id: str | None = "default",
                    max_new_tokens: int = 128) -> Iterator[str]:
        """`chat`, as text pieces while they are generated."""
        conv = self._conversation(messages, user_id)
        if self.server is not None:
            yield from self.server.stream_chat(conv, max_new_tokens, **self._at_least(user_id))
            return
        with self.reading(user_id) as net:
            yield from generate.stream_chat(net, self.tokenizer, conv, max_new_tokens)

    def complete(self, prompt: str, max_new_tokens: int = 16, user_id: str | None = None) -> str:
        """Greedy raw completion from the newest published version (through the server when one is set), with
        `user_id`'s memory (default: the shared memory alone)."""
        _check_text(prompt, "prompt")
        if user_id is not None:
            _check_user(user_id)
        if self.server is not None:
            return self.server.complete(prompt, max_new_tokens, **self._at_least(user_id))
        with self.reading(user_id) as net:
            return generate.complete(net, self.tokenizer, prompt, max_new_tokens)

    def _at_least(self, user_id: str | None) -> dict:
        """What a server must answer with: the newest shared version, and the user's newest version."""
        mine = self.ledger.latest_user_version(user_id) if user_id else 0
        # a user with no memory yet is answered by the shared model: no need to name them
        return {"min_version": self.version, "user": user_id if mine else None, "min_user_version": mine}

    def facts(self, user_id: str | None = None) -> list[dict]:
        return self.ledger.facts(user_id=user_id)

    def history(self, fact_id: str) -> list[dict]:
        if self.ledger.get(fact_id) is None:
            raise KeyError(f"no fact with id {fact_id!r}")
        return self.ledger.history(fact_id)

    def backlog(self) -> int | None:
        """Facts on the queue not yet applied; None if the queue cannot be reached."""
        return self.writer.backlog()

    def status(self, user_id: str | None = None) -> dict:
        """The home at a glance (`storage.overview`: version, what is live, facts by status of one user or all, base
        model, newest night of that user or the shared scope), the queue's depth and the mode."""
        return {**overview(self.ledger, self.layout, user_id), "queue": self.backlog(),
                "mode": "redis" if self.redis is not None else "embedded"}

    @property
    def version(self) -> int:
        return self.ledger.latest_version()

    def publish_adapter(self, path: str | Path | None, wait: float = 600.0) -> int:
        """Serve the PEFT LoRA adapter in folder `path` (None: no adapter) from a new version; returns it.

        In Redis mode it waits up to `wait` seconds for the writer lock, then raises LockBusy.
        """
        with self.writer.writing(wait) as editor:
            return editor.publish_adapter(None if path is None else Path(path))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _extractor(s: Settings):
    """The hook's extractor; a model one asks this home's own `agentmem serve` unless told otherwise."""
    own = s.extractor_url is None
    return make_extractor(s.extractor, s.extractor_url or s.server_url or DEFAULT_URL, s.extractor_model or MODEL_ID,
                          s.extractor_token or (s.server_token if own else None), s.extractor_timeout_s)


def _tagged(fact: Fact, fid: str, status: str, reason: str | None) -> Fact:
    return Fact.parse({**fact.to_json(), "id": fid, "status": status, "reason": reason})


def _parse_facts(facts) -> list[Fact]:
    """Every fact validated, or FactError naming the first bad one: nothing is written for a batch with one."""
    parsed = [Fact.parse(f) for f in _as_list(facts)]
    if not parsed:
        raise FactError("no facts given")
    now = time.time()
    for f in parsed:
        if why := names_another_user(f):
            raise FactError(f"invalid fact: field 'subject' {why}")
        if f.expires is not None and f.expires <= now:
            raise FactError("invalid fact: field 'expires' is in the past: the fact would be forgotten at once")
    return parsed


def _as_list(facts) -> list:
    if isinstance(facts, (Fact, dict)):
        return [facts]
    return list(facts)


def _check_user(user_id) -> None:
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError("user_id must be non-empty text")


def _check_text(text, name: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name} must be non-empty text")
    if len(text) > 8000:
        raise ValueError(f"{name} is {len(text)} characters long; at most 8000 are allowed")
