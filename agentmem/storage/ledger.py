"""The ledger: every fact, its status and stage, and every event, in SQLite.

It is the source of truth: the training copy and published versions are
rebuilt from it. Each change is one transaction, so a crash leaves the ledger
either before or after it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..facts import Fact, last_word

SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    relation TEXT NOT NULL,
    object TEXT NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL,
    stage INTEGER NOT NULL DEFAULT 0,
    scale REAL NOT NULL DEFAULT 0,
    reason TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    version_added INTEGER,
    version_removed INTEGER
);
CREATE INDEX IF NOT EXISTS facts_user ON facts(user_id);
CREATE INDEX IF NOT EXISTS facts_status ON facts(status);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    fact_id TEXT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_fact ON events(fact_id);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    n INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nights (
    id TEXT PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    report TEXT
);
"""

# Statuses a fact moves through. Only "active" facts have an edit in the weights.
# spooled: accepted but not yet handed to Redis; queued: waiting for a worker;
# pending: its edit is being computed; rejected: refused by the policy;
# superseded: replaced by a newer object for the same subject and relation.
SPOOLED, QUEUED, PENDING, ACTIVE = "spooled", "queued", "pending", "active"
FORGOTTEN, FAILED, REJECTED, SUPERSEDED = "forgotten", "failed", "rejected", "superseded"
WAITING = (SPOOLED, QUEUED)

# Event kinds besides the statuses (each status change is also an event of that status's name).
RECEIVED, LIVE, RE_EDITED, UNLEARNED, SLEEP_ROLLED_BACK = "received", "live", "re-edited", "unlearned", "sleep_rolled_back"


class FencedOut(RuntimeError):
    """A writer whose lock has passed to a newer writer tried to commit."""


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per thread: an embedded worker thread and its callers share a Ledger,
        # and a shared connection would let one thread's statements land in another's transaction.
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._closed = False
        self.db.executescript(SCHEMA)

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise sqlite3.ProgrammingError(f"the ledger {self.path} is closed")
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            with self._opened_lock:
                self._opened.append(conn)
            self._local.conn = conn
        return conn

    def close(self):
        self._closed = True
        with self._opened_lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
        self._local = threading.local()

    @contextmanager
    def transaction(self, fence: int | None = None):
        """One atomic change. With `fence`, it commits only if no newer writer's token was seen:
        a writer that lost its lock while paused cannot overwrite its successor's work."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if fence is not None:
                seen = self.db.execute("SELECT value FROM meta WHERE key = 'fence'").fetchone()
                if seen is not None and seen["value"] > fence:
                    raise FencedOut(f"writer token {fence} is older than {seen['value']}")
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('fence', ?)", (fence,))
            yield self
            self.db.execute("COMMIT")
        except BaseException:
            # a failed COMMIT (locked, say) can leave the transaction open, and every later BEGIN would fail;
            # some errors (disk full, I/O) have rolled it back already
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    # -- writes (call inside a transaction) ------------------------------

    def event(self, fact_id: str | None, kind: str, **detail):
        self.db.execute(
            "INSERT INTO events(fact_id, ts, kind, detail) VALUES (?, ?, ?, ?)",
            (fact_id, time.time(), kind, json.dumps(detail, sort_keys=True)),
        )

    def add_fact(self, fid: str, fact: Fact, status: str, reason: str | None = None):
        now = time.time()
        self.db.execute(
            "INSERT INTO facts(id, user_id, subject, relation, object, data, status, reason, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (fid, fact.user_id, fact.subject, fact.relation, fact.object,
             json.dumps(fact.to_json(), sort_keys=True), status, reason, now, now),
        )
        self.event(fid, RECEIVED, fact=fact.to_json())
        if status != PENDING:
            self.event(fid, status, reason=reason)

    def set_status(self, fid: str, status: str, reason: str | None = None, **fields):
        sets = ["status = ?", "updated = ?", "reason = ?"]
        vals: list = [status, time.time(), reason]
        for k, v in fields.items():
            if k not in {"stage", "scale", "version_added", "version_removed"}:
                raise ValueError(f"unknown fact field {k}")
            sets.append(f"{k} = ?")
            vals.append(v)
        self.db.execute(f"UPDATE facts SET {', '.join(sets)} WHERE id = ?", (*vals, fid))
        self.event(fid, status, reason=reason, **fields)

    # -- the transitions of a fact (call inside a transaction) --------------

    def spool(self, fid: str, fact: Fact, reason: str) -> None:
        """Accepted by the hook, not yet on the queue."""
        if self.get(fid) is None:
            self.add_fact(fid, fact, SPOOLED, reason=reason)
        else:
            self.set_status(fid, SPOOLED, reason=reason)

    def queued(self, fid: str, reason: str = "on the queue") -> None:
        self.set_status(fid, QUEUED, reason=reason)

    def reject(self, fid: str, fact: Fact, reason: str) -> None:
        """Refused by the policy: recorded once, and each refusal after as an event."""
        if self.get(fid) is None:
            self.add_fact(fid, fact, REJECTED, reason=reason)
        else:
            self.event(fid, REJECTED, reason=reason)

    def start_edit(self, fid: str, fact: Fact) -> None:
        if self.get(fid) is None:
            self.add_fact(fid, fact, PENDING)
        else:
            self.set_status(fid, PENDING, reason="editing")

    def activate(self, fid: str, version: int) -> None:
        """Its edit is in version `version`, at full scale."""
        self.set_status(fid, ACTIVE, stage=0, scale=1.0, version_added=version)

    def supersede(self, fid: str, by: str, fact: Fact | None = None, version: int | None = None,
                  same_batch: bool = False) -> None:
        """Replaced by fact `by`: in the same batch (never edited), or from `version` on (its edit removed)."""
        if same_batch:
            why = f"superseded by {by} in the same batch"
            if self.get(fid) is None:
                self.add_fact(fid, fact, SUPERSEDED, reason=why)
            else:
                self.set_status(fid, SUPERSEDED, reason=why)
        else:
            self.set_status(fid, SUPERSEDED, reason=f"superseded by {by}", scale=0.0, version_removed=version)

    def fail(self, fid: str, reason: str) -> None:
        self.set_status(fid, FAILED, reason=reason)

    def forget(self, fid: str, version: int | None = None) -> None:
        """Forgotten on request; `version` is the first without its edit (None: it had none)."""
        fields = {"scale": 0.0} if version is None else {"scale": 0.0, "version_removed": version}
        self.set_status(fid, FORGOTTEN, reason="forgotten on request", **fields)

    def restage(self, fid: str, stage: int, scale: float) -> None:
        """A night moved the fact to `stage`, its edit now at `scale`."""
        self.set_status(fid, ACTIVE, reason=f"sleep: stage {stage}", stage=stage, scale=scale)

    def add_version(self, n: int, kind: str, **detail):
        self.db.execute(
            "INSERT INTO versions(n, ts, kind, detail) VALUES (?, ?, ?, ?)",
            (n, time.time(), kind, json.dumps(detail, sort_keys=True)),
        )

    def start_night(self, night: str) -> None:
        """A scheduled night began (again, if an earlier try of it never finished)."""
        self.db.execute("INSERT INTO nights(id, started) VALUES (?, ?)"
                        " ON CONFLICT(id) DO UPDATE SET started = excluded.started", (night, time.time()))

    def end_night(self, night: str, report: dict) -> None:
        """The night is done: record it in the transaction that commits its outcome, so it lands once."""
        now = time.time()
        self.db.execute("INSERT INTO nights(id, started, finished, report) VALUES (?, ?, ?, ?)"
                        " ON CONFLICT(id) DO UPDATE SET finished = excluded.finished, report = excluded.report",
                        (night, now, now, json.dumps(report, sort_keys=True)))

    def set_live(self, n: int, **detail):
        """Record that a model server now answers from version n."""
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('live_version', ?)", (n,))
        self.event(None, LIVE, version=n, **detail)

    # -- reads -----------------------------------------------------------

    def get(self, fid: str) -> dict | None:
        row = self.db.execute("SELECT * FROM facts WHERE id = ?", (fid,)).fetchone()
        return _row(row) if row else None

    def facts(self, user_id: str | None = None, status: str | tuple[str, ...] | None = None) -> list[dict]:
        q, args = "SELECT * FROM facts WHERE 1=1", []
        if user_id is not None:
            q += " AND user_id = ?"
            args.append(user_id)
        if status is not None:
            statuses = (status,) if isinstance(status, str) else tuple(status)
            q += f" AND status IN ({', '.join('?' * len(statuses))})"
            args.extend(statuses)
        return [_row(r) for r in self.db.execute(q + " ORDER BY created, id", args)]

    def active_with_key(self, user_id: str, subject: str, relation: str) -> list[dict]:
        """Active facts stating something about the same subject and relation (any object)."""
        rows = self.db.execute(
            "SELECT * FROM facts WHERE status = ? AND user_id = ? AND lower(subject) = ? AND lower(relation) = ?",
            (ACTIVE, user_id, subject.lower(), relation.lower()),
        )
        return [_row(r) for r in rows]

    def active_about(self, subjects: set[str], by_last_word: bool = False) -> list[dict]:
        """Active facts, of any user, whose subject is one of `subjects` (exactly: the weights key on its
        tokens), or with `by_last_word` ends in the same word as one of them (see facts.last_word)."""
        if not subjects:
            return []
        if by_last_word:
            words = {last_word(s) for s in subjects}
            rows = self.db.execute("SELECT * FROM facts WHERE status = ? ORDER BY created, id", (ACTIVE,))
            return [_row(r) for r in rows if last_word(r["subject"]) in words]
        marks = ", ".join("?" * len(subjects))
        rows = self.db.execute(f"SELECT * FROM facts WHERE status = ? AND subject IN ({marks}) ORDER BY created, id",
                               (ACTIVE, *sorted(subjects)))
        return [_row(r) for r in rows]

    def counts(self, user_id: str | None = None) -> dict[str, int]:
        q, args = "SELECT status, COUNT(*) AS n FROM facts", ()
        if user_id is not None:
            q, args = q + " WHERE user_id = ?", (user_id,)
        return {r["status"]: r["n"] for r in self.db.execute(q + " GROUP BY status", args)}

    def edit_latencies(self, limit: int = 10_000) -> list[float]:
        """Seconds from each of the newest `limit` commits' start (received or last pending) to the commit."""
        rows = self.db.execute(
            "SELECT a.ts - (SELECT MAX(p.ts) FROM events p WHERE p.fact_id = a.fact_id"
            "               AND p.kind IN ('received', 'pending') AND p.seq < a.seq) AS s"
            " FROM events a WHERE a.kind = ? AND json_extract(a.detail, '$.version_added') IS NOT NULL"
            " ORDER BY a.seq DESC LIMIT ?", (ACTIVE, limit))
        return [r["s"] for r in rows if r["s"] is not None]

    def publish_latencies(self, limit: int = 10_000) -> list[float]:
        """Seconds from each of the newest `limit` versions' commit until a model server first served it."""
        rows = self.db.execute(
            "SELECT MIN(e.ts) - v.ts AS s FROM versions v"
            " JOIN events e ON e.kind = 'live' AND json_extract(e.detail, '$.version') = v.n"
            " GROUP BY v.n ORDER BY v.n DESC LIMIT ?", (limit,))
        return [r["s"] for r in rows]

    def history(self, fid: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM events WHERE fact_id = ? ORDER BY seq", (fid,))
        return [{"seq": r["seq"], "ts": r["ts"], "kind": r["kind"], **json.loads(r["detail"])} for r in rows]

    def version(self, n: int) -> dict | None:
        row = self.db.execute("SELECT * FROM versions WHERE n = ?", (n,)).fetchone()
        return row and {"n": row["n"], "ts": row["ts"], "kind": row["kind"], **json.loads(row["detail"])}

    def live(self) -> dict | None:
        """What a model server last reported serving: version, adapter, server, time."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'live_version'").fetchone()
        if row is None:
            return None
        ev = self.db.execute("SELECT ts, detail FROM events WHERE kind = 'live' ORDER BY seq DESC LIMIT 1").fetchone()
        return {"version": int(row["value"]), **({"ts": ev["ts"], **json.loads(ev["detail"])} if ev else {})}

    def night(self, night: str) -> dict | None:
        """A scheduled night's start, end (None until done) and report."""
        row = self.db.execute("SELECT * FROM nights WHERE id = ?", (night,)).fetchone()
        return row and {**dict(row), "report": row["report"] and json.loads(row["report"])}

    def latest_version(self) -> int:
        row = self.db.execute("SELECT MAX(n) AS n FROM versions").fetchone()
        return int(row["n"] or 0)


def _row(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["fact"] = json.loads(d.pop("data"))
    return d
