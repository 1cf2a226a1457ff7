"""The ledger: every fact, its status and stage, every event, and the aliases of the people users name, in
SQLite (the default) or PostgreSQL.

It is the source of truth: the training copy and published versions are
rebuilt from it. Each change is one transaction, so a crash leaves the ledger
either before or after it. Both databases share one schema and one code path
(SQLAlchemy Core); Alembic brings a database's tables to the newest revision
when a ledger opens it.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (Column, Float, Index, Integer, MetaData, Table, Text, create_engine, delete, event, func,
                        insert, select, text, update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError, ResourceClosedError

from ..facts import SHARED, Fact, last_word
from .layout import Layout

METADATA = MetaData()
FACTS = Table(
    "facts", METADATA,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("relation", Text, nullable=False),
    Column("object", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("stage", Integer, nullable=False, server_default=text("0")),
    Column("scale", Float, nullable=False, server_default=text("0")),
    Column("reason", Text),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("version_added", Integer),
    Column("version_removed", Integer),
    # whose memory holds the fact: a user id, or SHARED (a ledger made before scopes has every fact there)
    Column("scope", Text, nullable=False, server_default=text("''")),
    # when the fact stops holding (Unix seconds; a plan's date): the writer forgets it then
    Column("expires", Float),
    Index("facts_user", "user_id"),
    Index("facts_status", "status"),
    Index("facts_scope", "scope", "status"),
    Index("facts_expires", "expires"),
)
EVENTS = Table(
    "events", METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("fact_id", Text),
    Column("ts", Float, nullable=False),
    Column("kind", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Index("events_fact", "fact_id", "kind", "ts"),  # a fact's events, and of a kind since a time (quotas)
    Index("events_kind", "kind"),
    sqlite_autoincrement=True,
)
META = Table(
    "meta", METADATA,
    Column("key", Text, primary_key=True),
    Column("value", Integer, nullable=False),
)
VERSIONS = Table(
    "versions", METADATA,
    Column("n", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("kind", Text, nullable=False),
    Column("detail", Text, nullable=False),
)
NIGHTS = Table(
    "nights", METADATA,
    Column("id", Text, primary_key=True),
    Column("started", Float, nullable=False),
    Column("finished", Float),
    Column("report", Text),
)
# The person each user's relation word names ("aunt" -> "Wilhelmina Fairweather"), by the fact that named them
ALIASES = Table(
    "aliases", METADATA,
    Column("user_id", Text, primary_key=True),
    Column("word", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("fact_id", Text, nullable=False),
    Column("updated", Float, nullable=False),
    Index("aliases_fact", "fact_id"),
)

# What the whole home is bound to: the base model its edits and adapters were made for ("base_model")
HOME = Table(
    "home", METADATA,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
# Each user's published memory: version n of a scope serves adapter `adapter` (None: no facts left)
USER_VERSIONS = Table(
    "user_versions", METADATA,
    Column("scope", Text, primary_key=True),
    Column("n", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("adapter", Text),
    Column("detail", Text, nullable=False),
)

# Bearer tokens issued to users while the services run (those in AGENTMEM_API_TOKENS are not here): only each
# token's SHA-256 is kept, so the ledger (and a backup of it) cannot be used to act as anyone
TOKENS = Table(
    "tokens", METADATA,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("digest", Text, nullable=False, unique=True),
    Column("created", Float, nullable=False),
    Index("tokens_user", "user_id"),
)

MIGRATIONS = Path(__file__).with_name("migrations")
# the databases the ledger runs on, each with its INSERT ... ON CONFLICT (the same statement, spelled per dialect)
UPSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
# a key of PostgreSQL's advisory locks: servers opening a new database at once migrate it one after another
MIGRATION_LOCK = 0x61676D6C  # "agml"
USER_LOCK = 0x61677175  # "agqu": with a hash of the user id, the key of one user's quota count

# Errors after which the same change may well succeed: SQLite locked, full or failing to write; PostgreSQL's
# serialization failures and deadlocks, a connection lost (and replaced by the pool for the next try).
TRY_AGAIN = (OperationalError,)

# Statuses a fact moves through. Only "active" facts have an edit in the weights.
# spooled: accepted but not yet handed to Redis; queued: waiting for a worker;
# pending: its edit is being computed; rejected: refused by the policy;
# superseded: replaced by a newer object for the same subject and relation.
SPOOLED, QUEUED, PENDING, ACTIVE = "spooled", "queued", "pending", "active"
FORGOTTEN, FAILED, REJECTED, SUPERSEDED = "forgotten", "failed", "rejected", "superseded"
WAITING = (SPOOLED, QUEUED)

# Event kinds besides the statuses (each status change is also an event of that status's name).
RECEIVED, LIVE, RE_EDITED, UNLEARNED, SLEEP_ROLLED_BACK = "received", "live", "re-edited", "unlearned", "sleep_rolled_back"
USER_FORGOTTEN, RESTATED = "user_forgotten", "restated"


class FencedOut(RuntimeError):
    """A writer whose lock has passed to a newer writer tried to commit."""


class Ledger:
    """The ledger at a SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB (see Ledger.open)."""

    def __init__(self, url: str | URL):
        url = make_url(url)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")  # a bare postgresql:// means the driver installed with us
        backend = url.get_backend_name()
        if backend not in UPSERT:
            raise ValueError(f"the ledger runs on SQLite or PostgreSQL, not {backend!r} ({url})")
        self._upsert = UPSERT[backend]
        self._sqlite = backend == "sqlite"
        if self._sqlite:
            if url.database in (None, "", ":memory:"):
                raise ValueError(f"a SQLite ledger is a file that outlives its process: sqlite:///PATH, not {url}")
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            # no cap on connections: each thread had its own before, and a cap would make threads wait
            self.engine = create_engine(url, connect_args={"timeout": 30}, max_overflow=-1)
            event.listen(self.engine, "connect", _sqlite_connection)
        else:
            # a connection the server dropped (a restart, say) is replaced before it is handed out
            self.engine = create_engine(url, pool_pre_ping=True)
        # this thread's open transaction: a statement of one thread never lands in another's transaction
        self._local = threading.local()
        self._closed = False
        self._migrate()

    @classmethod
    def open(cls, layout: Layout, database_url: str | None = None) -> Ledger:
        """The ledger of a home: the database at `database_url` if one is given, else HOME/ledger.sqlite."""
        return cls(database_url or URL.create("sqlite", database=str(layout.ledger)))

    def close(self):
        self._closed = True
        self.engine.dispose()

    def _migrate(self) -> None:
        """Bring the tables to the newest revision; a ledger made before migrations keeps its rows."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._begin() as conn:
            if not self._sqlite:
                conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _connect(self):
        if self._closed:
            raise ResourceClosedError(f"the ledger {self.engine.url} is closed")
        return self.engine.connect()

    @contextmanager
    def _begin(self):
        """A connection in a transaction that holds SQLite's write lock from its start (one writer at a time)."""
        # SQLAlchemy rolls back a transaction whose body or COMMIT failed, so the pooled connection stays usable
        with self._connect() as conn, conn.begin():
            if self._sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    @contextmanager
    def transaction(self, fence: int | None = None, shard: int = 0):
        """One atomic change. With `fence`, it commits only if no newer writer's token was seen (of writer
        shard `shard`: each shard has its own tokens): a writer that lost its lock while paused cannot
        overwrite its successor's work."""
        if getattr(self._local, "conn", None) is not None:
            raise RuntimeError("a ledger transaction is already open in this thread")
        with self._begin() as conn:
            self._local.conn = conn
            try:
                if fence is not None:
                    self._check_fence(conn, fence, "fence" if shard == 0 else f"fence:{shard}")
                yield self
            finally:
                self._local.conn = None

    def _check_fence(self, conn, fence: int, key: str) -> None:
        """Record `fence` as the newest token seen, or raise FencedOut if a newer one was.

        The row stays locked until the transaction ends, so on PostgreSQL too fenced writers commit one after
        another (unfenced transactions do not wait); a token equal to the newest is the same writer again."""
        stmt = self._upsert(META).values(key=key, value=fence)
        stmt = stmt.on_conflict_do_update(index_elements=[META.c.key], set_={"value": stmt.excluded.value},
                                          where=META.c.value <= stmt.excluded.value)
        if conn.execute(stmt.returning(META.c.value)).first() is None:
            seen = conn.execute(select(META.c.value).where(META.c.key == key)).scalar_one()
            raise FencedOut(f"writer token {fence} is older than {seen}")

    @contextmanager
    def _db(self):
        """This thread's open transaction, or else a short one of its own (a write outside one commits at once)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
        else:
            with self._connect() as conn, conn.begin():
                yield conn

    def _execute(self, stmt) -> list:
        """Run a write; the rows it returns (with RETURNING)."""
        with self._db() as conn:
            result = conn.execute(stmt)
            return result.all() if result.returns_rows else []

    def _rows(self, stmt) -> list[dict]:
        with self._db() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]

    def _first(self, stmt) -> dict | None:
        rows = self._rows(stmt.limit(1))
        return rows[0] if rows else None

    # -- writes (call inside a transaction) ------------------------------

    def event(self, fact_id: str | None, kind: str, **detail):
        self._execute(insert(EVENTS).values(fact_id=fact_id, ts=time.time(), kind=kind,
                                            detail=json.dumps(detail, sort_keys=True)))

    def add_fact(self, fid: str, fact: Fact, status: str, reason: str | None = None) -> bool:
        """Record a fact the ledger does not hold yet; False, and nothing written, if it holds it."""
        now = time.time()
        stmt = self._upsert(FACTS).values(
            id=fid, user_id=fact.scope, scope=fact.scope, subject=fact.subject, relation=fact.relation,
            object=fact.object, expires=fact.expires,
            data=json.dumps(fact.to_json(), sort_keys=True), status=status, reason=reason, created=now, updated=now)
        # the same fact added by another transaction at the same moment is waited for, not a key violation
        if not self._execute(stmt.on_conflict_do_nothing(index_elements=[FACTS.c.id]).returning(FACTS.c.id)):
            return False
        self.event(fid, RECEIVED, fact=fact.to_json())
        if status != PENDING:
            self.event(fid, status, reason=reason)
        return True

    def set_status(self, fid: str, status: str, reason: str | None = None, **fields):
        for k in fields:
            if k not in {"stage", "scale", "version_added", "version_removed"}:
                raise ValueError(f"unknown fact field {k}")
        self._execute(update(FACTS).where(FACTS.c.id == fid)
                      .values(status=status, updated=time.time(), reason=reason, **fields))
        self.event(fid, status, reason=reason, **fields)

    # -- the transitions of a fact (call inside a transaction) --------------

    def spool(self, fid: str, fact: Fact, reason: str) -> None:
        """Accepted by the hook, not yet on the queue."""
        if not self.add_fact(fid, fact, SPOOLED, reason=reason):
            self.set_status(fid, SPOOLED, reason=reason)

    def queued(self, fid: str, reason: str = "on the queue") -> None:
        self.set_status(fid, QUEUED, reason=reason)

    def reject(self, fid: str, fact: Fact, reason: str) -> None:
        """Refused by the policy: recorded once, and each refusal after as an event."""
        if not self.add_fact(fid, fact, REJECTED, reason=reason):
            self.event(fid, REJECTED, reason=reason)

    def start_edit(self, fid: str, fact: Fact) -> None:
        if not self.add_fact(fid, fact, PENDING):
            # in the scope it is edited into (a fact queued before scopes existed is its user's now)
            self._execute(update(FACTS).where(FACTS.c.id == fid).values(scope=fact.scope))
            self.set_status(fid, PENDING, reason="editing")

    def activate(self, fid: str, version: int) -> None:
        """Its edit is in version `version`, at full scale."""
        self.set_status(fid, ACTIVE, stage=0, scale=1.0, version_added=version)

    def supersede(self, fid: str, by: str, fact: Fact | None = None, version: int | None = None,
                  same_batch: bool = False) -> None:
        """Replaced by fact `by`: in the same batch (never edited), or from `version` on (its edit removed)."""
        if same_batch:
            why = f"superseded by {by} in the same batch"
            if not self.add_fact(fid, fact, SUPERSEDED, reason=why):
                self.set_status(fid, SUPERSEDED, reason=why)
        else:
            self.set_status(fid, SUPERSEDED, reason=f"superseded by {by}", scale=0.0, version_removed=version)

    def fail(self, fid: str, reason: str) -> None:
        self.set_status(fid, FAILED, reason=reason)

    def forget(self, fid: str, version: int | None = None, reason: str = "forgotten on request") -> None:
        """Forgotten (on request, or when it expired); `version` is the first without its edit (None: it had
        none). An alias the fact bound goes with it."""
        fields = {"scale": 0.0} if version is None else {"scale": 0.0, "version_removed": version}
        self.set_status(fid, FORGOTTEN, reason=reason, **fields)
        self._execute(delete(ALIASES).where(ALIASES.c.fact_id == fid))

    def bind_alias(self, user_id: str, word: str, name: str, fid: str) -> None:
        """The user's `word` ("aunt") names `name`, as fact `fid` says; naming them again rebinds it."""
        stmt = self._upsert(ALIASES).values(user_id=user_id, word=word, name=name, fact_id=fid, updated=time.time())
        self._execute(stmt.on_conflict_do_update(
            index_elements=[ALIASES.c.user_id, ALIASES.c.word],
            set_={"name": stmt.excluded.name, "fact_id": stmt.excluded.fact_id, "updated": stmt.excluded.updated}))

    def move(self, fid: str, scope: str) -> None:
        """Moved out of the shared weights into `scope` (its user's memory), queued to be edited there."""
        self._execute(update(FACTS).where(FACTS.c.id == fid).values(scope=scope))
        self.set_status(fid, QUEUED, reason="moved to its user's own memory; queued to be edited there", scale=0.0)

    def restage(self, fid: str, stage: int, scale: float) -> None:
        """A night moved the fact to `stage`, its edit now at `scale`."""
        self.set_status(fid, ACTIVE, reason=f"sleep: stage {stage}", stage=stage, scale=scale)

    def add_version(self, n: int, kind: str, **detail):
        self._execute(insert(VERSIONS).values(n=n, ts=time.time(), kind=kind,
                                              detail=json.dumps(detail, sort_keys=True)))

    def add_user_version(self, scope: str, n: int, adapter: str | None, **detail) -> None:
        self._execute(insert(USER_VERSIONS).values(scope=scope, n=n, ts=time.time(), adapter=adapter,
                                                   detail=json.dumps(detail, sort_keys=True)))

    def drop_user(self, scope: str) -> int:
        """Remove every fact of a user's scope with its events, aliases, versions and tokens: the ledger keeps no
        value of theirs, only an event that they were forgotten and how many facts went. Returns that number."""
        ids = select(FACTS.c.id).where(FACTS.c.scope == scope).scalar_subquery()
        self._execute(delete(EVENTS).where(EVENTS.c.fact_id.in_(ids)))
        n = len(self._execute(delete(FACTS).where(FACTS.c.scope == scope).returning(FACTS.c.id)))
        self._execute(delete(ALIASES).where(ALIASES.c.user_id == scope))
        self._execute(delete(USER_VERSIONS).where(USER_VERSIONS.c.scope == scope))
        self._execute(delete(TOKENS).where(TOKENS.c.user_id == scope))
        self.event(None, USER_FORGOTTEN, facts=n)
        return n

    def start_night(self, night: str) -> None:
        """A scheduled night began (again, if an earlier try of it never finished)."""
        stmt = self._upsert(NIGHTS).values(id=night, started=time.time())
        self._execute(stmt.on_conflict_do_update(index_elements=[NIGHTS.c.id],
                                                 set_={"started": stmt.excluded.started}))

    def end_night(self, night: str, report: dict) -> None:
        """The night is done: record it in the transaction that commits its outcome, so it lands once."""
        now = time.time()
        stmt = self._upsert(NIGHTS).values(id=night, started=now, finished=now,
                                           report=json.dumps(report, sort_keys=True))
        self._execute(stmt.on_conflict_do_update(
            index_elements=[NIGHTS.c.id], set_={"finished": stmt.excluded.finished, "report": stmt.excluded.report}))

    def set_live(self, n: int, **detail):
        """Record that a model server now answers from version n."""
        stmt = self._upsert(META).values(key="live_version", value=n)
        self._execute(stmt.on_conflict_do_update(index_elements=[META.c.key], set_={"value": stmt.excluded.value}))
        self.event(None, LIVE, version=n, **detail)

    # -- reads -----------------------------------------------------------

    def get(self, fid: str) -> dict | None:
        """The fact's row; inside a transaction it stays locked until the end (on PostgreSQL: SQLite's write lock
        covers it already), so a change decided on what was read is not undone by another transaction meanwhile."""
        q = select(FACTS).where(FACTS.c.id == fid)
        row = self._first(q.with_for_update() if getattr(self._local, "conn", None) is not None else q)
        return row and _fact(row)

    def facts(self, user_id: str | None = None, status: str | tuple[str, ...] | None = None,
              scope: str | None = None) -> list[dict]:
        q = select(FACTS)
        if user_id is not None:
            q = q.where(FACTS.c.user_id == user_id)
        if scope is not None:
            q = q.where(FACTS.c.scope == scope)
        if status is not None:
            q = q.where(FACTS.c.status.in_((status,) if isinstance(status, str) else tuple(status)))
        return [_fact(r) for r in self._rows(q.order_by(FACTS.c.created, FACTS.c.id))]

    def active_with_key(self, scope: str, subject: str, relation: str) -> list[dict]:
        """Active facts of `scope` stating something about the same subject and relation (any object)."""
        q = select(FACTS).where(FACTS.c.status == ACTIVE, FACTS.c.scope == scope,
                                func.lower(FACTS.c.subject) == subject.lower(),
                                func.lower(FACTS.c.relation) == relation.lower())
        return [_fact(r) for r in self._rows(q)]

    def active_about(self, scope: str, subjects: set[str], by_last_word: bool = False) -> list[dict]:
        """Active facts of `scope` whose subject is one of `subjects` (exactly: the weights key on its
        tokens), or with `by_last_word` ends in the same word as one of them (see facts.last_word)."""
        if not subjects:
            return []
        q = (select(FACTS).where(FACTS.c.status == ACTIVE, FACTS.c.scope == scope)
             .order_by(FACTS.c.created, FACTS.c.id))
        if by_last_word:
            words = {last_word(s) for s in subjects}
            return [_fact(r) for r in self._rows(q) if last_word(r["subject"]) in words]
        return [_fact(r) for r in self._rows(q.where(FACTS.c.subject.in_(sorted(subjects))))]

    def aliases(self, user_id: str) -> dict[str, str]:
        """The user's aliases: relation word -> the person's name."""
        rows = self._rows(select(ALIASES.c.word, ALIASES.c.name).where(ALIASES.c.user_id == user_id))
        return {r["word"]: r["name"] for r in rows}

    def hold_user(self, user_id: str) -> None:
        """Until this transaction ends, no other transaction holds `user_id` (one count of their quota at a time).
        SQLite's write lock already holds the whole ledger; PostgreSQL takes an advisory lock on the user."""
        if getattr(self._local, "conn", None) is None:
            raise RuntimeError("hold_user is held until its transaction ends: call it inside one")
        if not self._sqlite:
            self._local.conn.execute(select(func.pg_advisory_xact_lock(USER_LOCK, func.hashtext(user_id))))

    def add_token(self, token_id: str, user_id: str, digest: str) -> dict:
        row = {"id": token_id, "user_id": user_id, "digest": digest, "created": time.time()}
        self._execute(insert(TOKENS).values(**row))
        return {k: row[k] for k in ("id", "user_id", "created")}

    def token_user(self, digest: str) -> str | None:
        """The user an issued token acts for, by the token's digest; None if no such token is held."""
        row = self._first(select(TOKENS.c.user_id).where(TOKENS.c.digest == digest))
        return row and row["user_id"]

    def tokens(self, user_id: str | None = None) -> list[dict]:
        """Issued tokens (id, user_id, created; never the token), oldest first: one user's, or everyone's."""
        q = select(TOKENS.c.id, TOKENS.c.user_id, TOKENS.c.created).order_by(TOKENS.c.created, TOKENS.c.id)
        return self._rows(q if user_id is None else q.where(TOKENS.c.user_id == user_id))

    def drop_token(self, token_id: str, user_id: str | None = None) -> str | None:
        """Revoke an issued token (only if it is `user_id`'s, when given); returns the user it acted for, None if
        there was no such token."""
        q = delete(TOKENS).where(TOKENS.c.id == token_id)
        rows = self._execute((q if user_id is None else q.where(TOKENS.c.user_id == user_id)).returning(TOKENS.c.user_id))
        return rows[0][0] if rows else None

    def spooled_times(self, user_id: str, since: float) -> list[float]:
        """When each of the user's facts was accepted toward the queue since `since`, oldest first (a fact stated
        again after it left counts again)."""
        # through the user's facts (facts_user) to their events (events_fact): events_kind would read every
        # spooled event of every user
        mine = select(FACTS.c.id).where(FACTS.c.user_id == user_id).scalar_subquery()
        q = (select(EVENTS.c.ts).where(EVENTS.c.fact_id.in_(mine), EVENTS.c.kind == SPOOLED, EVENTS.c.ts >= since)
             .order_by(EVENTS.c.ts))
        return [r["ts"] for r in self._rows(q)]

    def counts(self, user_id: str | None = None) -> dict[str, int]:
        q = select(FACTS.c.status, func.count().label("n")).group_by(FACTS.c.status)
        if user_id is not None:
            q = q.where(FACTS.c.user_id == user_id)
        return {r["status"]: r["n"] for r in self._rows(q)}

    def edit_latencies(self, limit: int = 10_000) -> list[float]:
        """Seconds from each of the newest `limit` commits' start (received or last pending) to the commit."""
        p = EVENTS.alias("p")
        start = (select(func.max(p.c.ts))
                 .where(p.c.fact_id == EVENTS.c.fact_id, p.c.kind.in_((RECEIVED, PENDING)), p.c.seq < EVENTS.c.seq)
                 .scalar_subquery())
        # a commit is an "active" event with version_added; a night's restage is one without (read in Python:
        # the two databases spell JSON paths differently)
        q = (select(EVENTS.c.detail, (EVENTS.c.ts - start).label("s")).where(EVENTS.c.kind == ACTIVE)
             .order_by(EVENTS.c.seq.desc()).execution_options(yield_per=1000))
        with self._db() as conn, conn.execute(q) as rows:
            commits = (s for detail, s in rows if json.loads(detail).get("version_added") is not None)
            return [s for s in islice(commits, limit) if s is not None]

    def publish_latencies(self, limit: int = 10_000) -> list[float]:
        """Seconds from each of the newest `limit` versions' commit until a model server first served it."""
        first: dict[int, float] = {}
        with self._db() as conn:
            lives = select(EVENTS.c.ts, EVENTS.c.detail).where(EVENTS.c.kind == LIVE).execution_options(yield_per=1000)
            with conn.execute(lives) as rows:
                for ts, detail in rows:
                    n = json.loads(detail).get("version")
                    first[n] = min(ts, first.get(n, ts))
            versions = (select(VERSIONS.c.n, VERSIONS.c.ts).order_by(VERSIONS.c.n.desc())
                        .execution_options(yield_per=1000))
            with conn.execute(versions) as rows:
                return list(islice((first[n] - ts for n, ts in rows if n in first), limit))

    def base_model(self) -> dict | None:
        """The base model the home is bound to ({"fingerprint", "model"}), or None before any process bound it."""
        row = self._first(select(HOME.c.value).where(HOME.c.key == "base_model"))
        return row and json.loads(row["value"])

    def bind_base_model(self, fingerprint: str, model: str) -> dict:
        """Bind the home to this base model unless one is bound already; returns the one bound (the first wins,
        also between processes opening a new home at once)."""
        value = json.dumps({"fingerprint": fingerprint, "model": model})
        self._execute(self._upsert(HOME).values(key="base_model", value=value).on_conflict_do_nothing())
        return self.base_model()

    def copy_into(self, dst: "Ledger", chunk: int = 1000) -> dict[str, int]:
        """Copy every row into the empty ledger `dst` (either database), as one moment of this one, in one
        transaction of `dst`; returns the rows copied per table. Left out is what belongs to this home's running
        processes: writers' fence tokens and the version a server last reported serving; facts handed to a
        queue go back to the spool, for the queue of the home `dst` serves."""
        if dst.facts() or dst.latest_version():
            raise ValueError(f"the ledger {dst.engine.url} already holds a memory: a copy goes into an empty one")
        counts = {}
        with self._snapshot() as src, dst._begin() as out:
            for table in METADATA.sorted_tables:
                counts[table.name] = 0
                rows = src.execute(select(table).execution_options(yield_per=chunk)).mappings()
                for part in iter(lambda: [dict(r) for r in islice(rows, chunk)], []):
                    if table is META:
                        part = [r for r in part if not r["key"].startswith("fence") and r["key"] != "live_version"]
                    elif table is FACTS:
                        part = [{**r, "status": SPOOLED} if r["status"] in (QUEUED, PENDING) else r for r in part]
                    if part:
                        out.execute(insert(table), part)
                    counts[table.name] += len(part)
            if not dst._sqlite and counts[EVENTS.name]:
                # rows inserted with their own seq leave PostgreSQL's sequence behind them (SQLite's follows)
                out.execute(text("SELECT setval(pg_get_serial_sequence('events', 'seq'), (SELECT max(seq) FROM events))"))
        return counts

    @contextmanager
    def _snapshot(self):
        """A connection whose reads all see one moment of the database."""
        with self._connect() as conn:
            if self._sqlite:
                conn.exec_driver_sql("BEGIN")  # a read transaction: WAL readers see the moment it began
                try:
                    yield conn
                finally:
                    conn.exec_driver_sql("ROLLBACK")
            else:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn

    def history(self, fid: str) -> list[dict]:
        rows = self._rows(select(EVENTS).where(EVENTS.c.fact_id == fid).order_by(EVENTS.c.seq))
        return [{"seq": r["seq"], "ts": r["ts"], "kind": r["kind"], **json.loads(r["detail"])} for r in rows]

    def version(self, n: int) -> dict | None:
        row = self._first(select(VERSIONS).where(VERSIONS.c.n == n))
        return row and {"n": row["n"], "ts": row["ts"], "kind": row["kind"], **json.loads(row["detail"])}

    def live(self) -> dict | None:
        """What a model server last reported serving: version, adapter, server, time."""
        row = self._first(select(META.c.value).where(META.c.key == "live_version"))
        if row is None:
            return None
        ev = self._first(select(EVENTS.c.ts, EVENTS.c.detail).where(EVENTS.c.kind == LIVE).order_by(EVENTS.c.seq.desc()))
        return {"version": int(row["value"]), **({"ts": ev["ts"], **json.loads(ev["detail"])} if ev else {})}

    def night(self, night: str) -> dict | None:
        """A scheduled night's start, end (None until done) and report."""
        row = self._first(select(NIGHTS).where(NIGHTS.c.id == night))
        return row and {**row, "report": row["report"] and json.loads(row["report"])}

    def latest_version(self) -> int:
        with self._db() as conn:
            return int(conn.execute(select(func.max(VERSIONS.c.n))).scalar() or 0)

    def user_version(self, scope: str, n: int | None = None) -> dict | None:
        """A user's version n (default: their newest): n, ts, adapter (None: nothing to serve) and its detail."""
        q = select(USER_VERSIONS).where(USER_VERSIONS.c.scope == scope)
        q = q.where(USER_VERSIONS.c.n == n) if n is not None else q.order_by(USER_VERSIONS.c.n.desc())
        row = self._first(q)
        return row and {"n": row["n"], "ts": row["ts"], "adapter": row["adapter"], **json.loads(row["detail"])}

    def latest_user_version(self, scope: str) -> int:
        with self._db() as conn:
            q = select(func.max(USER_VERSIONS.c.n)).where(USER_VERSIONS.c.scope == scope)
            return int(conn.execute(q).scalar() or 0)

    def restate(self, row: dict, fact: Fact) -> None:
        """The fact of `row` (as `get` read it) said again: its newest statement's expiry (none, or another date)
        is the one kept."""
        if row["expires"] != fact.expires:
            data = {k: v for k, v in row["fact"].items() if k != "expires"}
            data |= {"expires": fact.expires} if fact.expires is not None else {}
            self._execute(update(FACTS).where(FACTS.c.id == row["id"]).values(
                expires=fact.expires, data=json.dumps(data, sort_keys=True), updated=time.time()))
            self.event(row["id"], RESTATED, expires=fact.expires)

    def expired(self, now: float) -> list[dict]:
        """The facts still held or waiting whose expiry has come: id, scope and expiry, the earliest first."""
        q = (select(FACTS.c.id, FACTS.c.scope, FACTS.c.expires)
             .where(FACTS.c.expires <= now, FACTS.c.status.in_((ACTIVE, PENDING, *WAITING)))
             .order_by(FACTS.c.expires))
        return self._rows(q)

    def users(self, limit: int = 100, offset: int = 0) -> list[dict]:
        """The users with facts (of any status), by id: each one's facts by status and newest user version."""
        page = (select(FACTS.c.user_id).where(FACTS.c.user_id != SHARED).distinct().order_by(FACTS.c.user_id)
                .limit(limit).offset(offset))
        ids = [r["user_id"] for r in self._rows(page)]
        out = {u: {"user_id": u, "facts": {}, "version": 0} for u in ids}
        counts = (select(FACTS.c.user_id, FACTS.c.status, func.count().label("n")).where(FACTS.c.user_id.in_(ids))
                  .group_by(FACTS.c.user_id, FACTS.c.status))
        for r in self._rows(counts):
            out[r["user_id"]]["facts"][r["status"]] = r["n"]
        versions = (select(USER_VERSIONS.c.scope, func.max(USER_VERSIONS.c.n).label("n"))
                    .where(USER_VERSIONS.c.scope.in_(ids)).group_by(USER_VERSIONS.c.scope))
        for r in self._rows(versions):
            out[r["scope"]]["version"] = r["n"]
        return list(out.values())

    def scopes(self) -> dict[str, int]:
        """Facts per scope (any status): SHARED and every user that has some."""
        q = select(FACTS.c.scope, func.count().label("n")).group_by(FACTS.c.scope)
        return {r["scope"]: r["n"] for r in self._rows(q)}


def _sqlite_connection(conn, _record) -> None:
    """Each new SQLite connection: transactions begun by the ledger alone, a write-ahead log, every commit synced."""
    conn.isolation_level = None  # else the driver would begin its own transactions before ours
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")


def _fact(row: dict) -> dict:
    row["fact"] = json.loads(row.pop("data"))
    return row
