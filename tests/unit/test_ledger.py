"""The ledger on SQLite and on PostgreSQL: transactions stay apart across threads and connections, the fence
refuses an older writer, a failed COMMIT or a lost connection leaves it usable, nights are recorded, and a
ledger made before migrations opens with its rows."""

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, ResourceClosedError

from agentmem.config import Settings, settings_error
from agentmem.facts import SHARED, Fact
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import (ACTIVE, EVENTS, FORGOTTEN, METADATA, MIGRATIONS, QUEUED, SPOOLED, TRY_AGAIN,
                                     FencedOut, Ledger)
from agentmem.writer.pipeline import TRANSIENT

ROOT = Path(__file__).resolve().parents[2]
FACT = Fact(subject="Thea Albescu", relation="lives in", object="Oslo")
HEAD = "0006"  # the newest migration (storage/migrations/versions)
@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """None (the home's SQLite file, the default) or the URL of an emptied PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    yield request.getfixturevalue("empty_postgres")


@pytest.fixture
def ledger(tmp_path, database_url):
    ledger = Ledger.open(Layout(tmp_path), database_url)
    yield ledger
    ledger.close()


@pytest.fixture
def other(ledger, tmp_path, database_url):
    """A second ledger on the same database, with connections of its own, as another process opens it."""
    other = Ledger.open(Layout(tmp_path), database_url)
    yield other
    other.close()


def kinds(ledger: Ledger) -> list[str]:
    with ledger.engine.connect() as conn:
        return list(conn.execute(select(EVENTS.c.kind).order_by(EVENTS.c.seq)).scalars())


def in_threads(*targets, timeout: float = 20.0) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread is still waiting"


def test_a_rolled_back_transaction_does_not_take_another_threads_write_with_it(ledger):
    inside, errors = threading.Event(), []

    def doomed():
        try:
            with ledger.transaction():
                ledger.event(None, "doomed")
                inside.set()
                threading.Event().wait(0.3)  # the other thread writes meanwhile
                raise RuntimeError("the edit failed")
        except RuntimeError:
            pass

    def other():
        inside.wait(5)
        try:
            with ledger.transaction():
                ledger.event(None, "kept")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    in_threads(doomed, other)
    assert errors == []
    assert kinds(ledger) == ["kept"]
    ledger.close()
    with pytest.raises(ResourceClosedError):
        ledger.event(None, "after close")


def test_active_facts_are_found_by_the_last_word_of_their_subject(ledger):
    with ledger.transaction():
        for i, (subject, status) in enumerate([("Thea Albescu", ACTIVE), ("Elio Albescu", ACTIVE),
                                               ("Ana Albescu", FORGOTTEN), ("Elio Brennan", ACTIVE),
                                               ("Albescu", ACTIVE), ("Thea Albescuson", ACTIVE)]):
            ledger.add_fact(f"f{i}", Fact(subject=subject, relation="lives in", object="Oslo"), status)
        # a user's own fact about the same person is in that user's scope only
        ledger.add_fact("u", Fact(subject="Thea Albescu", relation="lives in", object="Rome", user_id="u1"), ACTIVE)
    found = ledger.active_about(SHARED, {"Albescu"}, by_last_word=True)
    assert [r["subject"] for r in found] == ["Thea Albescu", "Elio Albescu", "Albescu"]
    assert ledger.active_about(SHARED, set(), by_last_word=True) == []
    assert [r["id"] for r in ledger.active_about(SHARED, {"Elio Brennan", "Ana Albescu"})] == ["f3"]
    assert [r["id"] for r in ledger.active_with_key(SHARED, "thea albescu", "LIVES IN")] == ["f0"]
    assert [r["id"] for r in ledger.active_with_key("u1", "thea albescu", "LIVES IN")] == ["u"]
    assert [r["id"] for r in ledger.active_about("u1", {"Albescu"}, by_last_word=True)] == ["u"]
    assert ledger.counts() == {ACTIVE: 6, FORGOTTEN: 1}
    assert ledger.scopes() == {SHARED: 6, "u1": 1}


def test_latencies_count_commits_and_first_serves_not_restages(ledger):
    with ledger.transaction():
        ledger.start_edit("f1", FACT)
        ledger.activate("f1", 1)
        ledger.add_version(1, "wake", facts=["f1"])
        ledger.restage("f1", 1, 0.5)  # an "active" event too, but no commit
        ledger.add_version(2, "sleep", facts=["f1"])
        ledger.set_live(1, adapter=None)
        ledger.set_live(1, adapter=None)  # a second server: the first serve counts
    assert len(ledger.edit_latencies()) == 1 and ledger.edit_latencies()[0] >= 0
    assert len(ledger.publish_latencies()) == 1  # version 2 was never served
    assert ledger.live()["version"] == 1 and ledger.latest_version() == 2
    assert ledger.version(2) == {"n": 2, "ts": ledger.version(2)["ts"], "kind": "sleep", "facts": ["f1"]}


def test_a_commit_that_fails_is_rolled_back_and_the_ledger_stays_usable(ledger, other, monkeypatch):
    dialect = ledger.engine.dialect
    commit = dialect.do_commit

    def fails_once(dbapi_connection):
        monkeypatch.setattr(dialect, "do_commit", commit)
        # as a busy SQLite's COMMIT fails: the transaction, and its locks, stay open
        raise dialect.loaded_dbapi.OperationalError("database is locked")

    monkeypatch.setattr(dialect, "do_commit", fails_once)
    with pytest.raises(TRY_AGAIN) as e:
        with ledger.transaction(fence=1):
            ledger.event(None, "lost")
    assert isinstance(e.value, TRANSIENT)

    def writes():
        with other.transaction(fence=1):  # the write lock and the fence row were let go
            other.event(None, "other")

    in_threads(writes, timeout=10)
    with ledger.transaction(fence=1):
        ledger.event(None, "kept")
    assert kinds(ledger) == ["other", "kept"]


def test_a_statement_that_fails_ends_its_transaction_and_the_next_one_works(ledger):
    with ledger.transaction():
        ledger.add_version(1, "wake")
    with pytest.raises(IntegrityError):
        with ledger.transaction():
            ledger.event(None, "lost")
            ledger.add_version(1, "wake")  # PostgreSQL aborts the transaction here; it must not stick
    with ledger.transaction():
        ledger.event(None, "kept")
    assert kinds(ledger) == ["kept"]


# a SQLite file has no connection to lose: this runs on PostgreSQL only
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_lost_connection_is_an_error_to_try_again_and_the_next_transaction_reconnects(ledger, database_url):
    admin = create_engine(ledger.engine.url)
    with pytest.raises(TRY_AGAIN) as e:
        with ledger.transaction():
            ledger.event(None, "lost")
            with admin.connect() as conn:  # the server ends every other connection, as a restart does
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                  " WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            ledger.event(None, "lost too")
    admin.dispose()
    assert isinstance(e.value, TRANSIENT)
    with ledger.transaction(fence=1):
        ledger.event(None, "kept")
    assert kinds(ledger) == ["kept"]


DISK_FULL_AT_COMMIT = """
import os, resource, signal, sys
from pathlib import Path
from sqlalchemy import select
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import EVENTS, TRY_AGAIN, Ledger
ledger = Ledger.open(Layout(Path(sys.argv[1])))
with ledger.transaction():
    ledger.event(None, "first")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(sys.argv[1] + "/ledger.sqlite-wal") + 4096, hard))
try:
    with ledger.transaction():
        ledger.event(None, "lost", blob="x" * 200_000)  # held in the page cache until COMMIT writes it
    print("committed")
except TRY_AGAIN as e:
    print("failed:", e.orig)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
with ledger.transaction():
    ledger.event(None, "kept")
with ledger.engine.connect() as conn:
    print(list(conn.execute(select(EVENTS.c.kind).order_by(EVENTS.c.seq)).scalars()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_commit_that_cannot_write_raises_an_error_to_try_again_and_the_ledger_stays_usable(tmp_path):
    out = subprocess.run([sys.executable, "-c", DISK_FULL_AT_COMMIT, str(tmp_path)],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
    failed, kinds = out.stdout.splitlines()
    assert failed.startswith("failed: ") and kinds == "['first', 'kept']", out.stdout


def test_nights_are_recorded_when_started_and_when_done(ledger):
    assert ledger.night("n1") is None
    with ledger.transaction():
        ledger.start_night("n1")
    assert ledger.night("n1")["finished"] is None and ledger.night("n1")["report"] is None
    with ledger.transaction():
        ledger.end_night("n1", {"outcome": "published", "version": 3})
    done = ledger.night("n1")
    assert done["finished"] >= done["started"] and done["report"] == {"outcome": "published", "version": 3}


@pytest.mark.parametrize("seen_before", [None, 1])
def test_an_older_token_waits_for_the_newer_writers_commit_and_is_refused(ledger, other, seen_before):
    if seen_before is not None:
        with ledger.transaction(fence=seen_before):
            pass
    inside, finishing, refused = threading.Event(), [], []

    def newer():
        with ledger.transaction(fence=3):
            ledger.event(None, "newer")
            inside.set()
            time.sleep(0.5)  # the older writer tries meanwhile
            finishing.append(time.monotonic())

    def older():
        inside.wait(5)
        try:
            with other.transaction(fence=2):
                other.event(None, "older")
        except FencedOut as e:
            refused.append((time.monotonic(), str(e)))

    in_threads(newer, older)
    assert len(refused) == 1 and refused[0][1] == "writer token 2 is older than 3"
    assert refused[0][0] >= finishing[0]  # it waited for the newer writer's transaction, then saw its token
    assert kinds(ledger) == ["newer"]


def test_two_writers_in_threads_commit_alternately_with_increasing_tokens(ledger, other):
    turns = [threading.Event() for _ in range(7)]
    refused, errors = [], []

    def writer(me: Ledger, first: int):
        try:
            for token in range(first, 7, 2):
                assert turns[token - 1].wait(10)
                if token > 2:
                    try:  # this writer's last token, after the other writer committed a newer one
                        with me.transaction(fence=token - 2):
                            me.event(None, "stale")
                    except FencedOut:
                        refused.append(token - 2)
                with me.transaction(fence=token):
                    me.event(None, f"w{token}")
                turns[token].set()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
            for t in turns:
                t.set()

    turns[0].set()
    in_threads(lambda: writer(ledger, 1), lambda: writer(other, 2))
    assert errors == []
    assert kinds(ledger) == ["w1", "w2", "w3", "w4", "w5", "w6"]
    assert refused == [1, 2, 3, 4]


def test_the_same_fact_spooled_by_two_writers_at_once_is_one_fact(ledger, other):
    inside = threading.Event()

    def first():
        with ledger.transaction():
            ledger.spool("f1", FACT, "accepted")
            inside.set()
            time.sleep(0.3)

    def second():
        inside.wait(5)
        with other.transaction():
            if other.get("f1") is None:  # not committed yet: PostgreSQL waits at the insert, SQLite at BEGIN
                other.spool("f1", FACT, "accepted")
            else:
                other.spool("f1", FACT, "stated again")

    in_threads(first, second)
    assert ledger.get("f1")["status"] == SPOOLED
    assert [e["kind"] for e in ledger.history("f1")] == ["received", SPOOLED, SPOOLED]


def test_a_change_decided_on_a_fact_read_in_the_same_transaction_is_made_once(ledger, other):
    with ledger.transaction():
        ledger.spool("f1", FACT, "accepted")
    read = threading.Barrier(2, timeout=5)

    def enqueue(me: Ledger):
        with me.transaction():
            spooled = me.get("f1")["status"] == SPOOLED
            try:
                read.wait(0.5)  # on PostgreSQL the second reader waits for the first's commit, so this times out
            except threading.BrokenBarrierError:
                pass
            if spooled:
                me.queued("f1")

    in_threads(lambda: enqueue(ledger), lambda: enqueue(other))
    assert [e["kind"] for e in ledger.history("f1")] == ["received", SPOOLED, QUEUED]


# SQLite takes one writer at a time by design (BEGIN IMMEDIATE): this runs on PostgreSQL only
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_writes_to_different_facts_do_not_wait_for_each_other(ledger, other, database_url):
    inside, done = threading.Event(), threading.Event()

    def slow():
        with ledger.transaction():
            ledger.spool("f1", FACT, "accepted")
            inside.set()
            assert done.wait(10)  # still open while the other writer commits

    def quick():
        inside.wait(5)
        with other.transaction():
            other.spool("f2", Fact(subject="Elio Brennan", relation="works at", object="Hollin Labs"), "accepted")
        done.set()

    in_threads(slow, quick)
    assert done.is_set() and {f["id"] for f in ledger.facts()} == {"f1", "f2"}


def test_the_migrations_build_the_tables_the_ledger_uses_and_take_them_down(ledger, tmp_path, database_url):
    with ledger.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), METADATA) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with ledger.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert inspect(ledger.engine).get_table_names() == ["alembic_version"]
    again = Ledger.open(Layout(tmp_path), database_url)
    assert again.facts() == [] and again.latest_version() == 0
    again.close()


def test_a_forgotten_user_leaves_no_value_of_theirs_and_other_users_keep_theirs(ledger, other):
    told = {u: Fact(subject=f"User {u}", relation="lives in", object=f"{u}-town", user_id=u) for u in ("u1", "u2")}
    with ledger.transaction():
        for u, f in told.items():
            ledger.spool(f"f-{u}", f, "accepted")
            ledger.bind_alias(u, "aunt", f"Aunt of {u}", f"f-{u}")
            ledger.add_user_version(u, 1, f"a-{u}", facts=[f"f-{u}"])
            ledger.add_user_version(u, 2, None, facts=[])
    assert other.latest_user_version("u1") == 2 and other.user_version("u1")["adapter"] is None
    assert other.user_version("u1", 1)["adapter"] == "a-u1" and other.user_version("u3") is None
    with ledger.transaction():
        assert ledger.drop_user("u1") == 1
    assert other.facts(scope="u1") == [] and other.history("f-u1") == [] and other.aliases("u1") == {}
    assert other.latest_user_version("u1") == 0
    with ledger.engine.connect() as conn:
        # nothing anywhere in the ledger still says where u1 lives
        dump = [str(r) for t in ("facts", "events", "aliases", "user_versions") for r in conn.execute(text(f"SELECT * FROM {t}"))]
    assert dump and not any("u1-town" in r or "Aunt of u1" in r for r in dump)
    assert [f["id"] for f in other.facts(scope="u2")] == ["f-u2"] and other.latest_user_version("u2") == 2


def naming(user_id: str, relation: str, name: str) -> Fact:
    return Fact(subject=f"User {user_id}", relation=relation, object=name, user_id=user_id)


def test_aliases_are_kept_per_user_rebound_by_a_new_name_and_forgotten_with_the_fact_that_bound_them(ledger,
                                                                                                     other):
    with ledger.transaction():
        for fid, user, word, name in [("f1", "u1", "aunt", "Wilhelmina Fairweather"),
                                      ("f2", "u2", "aunt", "Hilde Brandt"), ("f3", "u1", "neighbour", "Corentin Dubois")]:
            ledger.spool(fid, naming(user, f"has {'an' if word == 'aunt' else 'a'} {word} named", name), "accepted")
            ledger.bind_alias(user, word, name, fid)
    assert other.aliases("u1") == {"aunt": "Wilhelmina Fairweather", "neighbour": "Corentin Dubois"}
    assert other.aliases("u2") == {"aunt": "Hilde Brandt"} and other.aliases("u3") == {}
    with ledger.transaction():
        ledger.spool("f4", naming("u1", "has an aunt named", "Hilde Brandt"), "accepted")
        ledger.bind_alias("u1", "aunt", "Hilde Brandt", "f4")
    assert other.aliases("u1")["aunt"] == "Hilde Brandt"
    with ledger.transaction():
        ledger.forget("f1")  # the alias is f4's now
    assert other.aliases("u1")["aunt"] == "Hilde Brandt"
    with ledger.transaction():
        ledger.forget("f4")
    assert other.aliases("u1") == {"neighbour": "Corentin Dubois"} and other.aliases("u2") == {"aunt": "Hilde Brandt"}


def test_an_alias_bound_in_a_transaction_that_fails_is_not_kept(ledger):
    with pytest.raises(RuntimeError), ledger.transaction():
        ledger.spool("f1", naming("u1", "has an aunt named", "Wilhelmina Fairweather"), "accepted")
        ledger.bind_alias("u1", "aunt", "Wilhelmina Fairweather", "f1")
        raise RuntimeError("the hook failed after")
    assert ledger.aliases("u1") == {} and ledger.get("f1") is None


def test_a_ledger_that_gains_aliases_binds_those_its_facts_name(ledger, tmp_path, database_url):
    with ledger.transaction():
        ledger.spool("f1", naming("u1", "has an aunt named", "Wilhelmina Fairweather"), "accepted")
        ledger.spool("f2", naming("u1", "has an aunt named", "Hilde Brandt"), "accepted")
        ledger.spool("f3", naming("u1", "is married to", "Anna Berg"), "accepted")
        ledger.spool("f4", naming("u2", "has a neighbour named", "Corentin Dubois"), "accepted")
        ledger.forget("f4")
        ledger.spool("f5", Fact(subject="User u1's aunt", relation="has a son named", object="Bo Lee", user_id="u1"),
                     "accepted")
        ledger.spool("f6", FACT, "accepted")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with ledger.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert "aliases" not in inspect(ledger.engine).get_table_names()
    again = Ledger.open(Layout(tmp_path), database_url)
    assert again.aliases("u1") == {"aunt": "Hilde Brandt", "spouse": "Anna Berg"} and again.aliases("u2") == {}
    again.close()


# The ledger's statements before migrations; older homes also lack nights and events_kind.
SCHEMA_BEFORE_MIGRATIONS = """
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


@pytest.mark.parametrize("older", [False, True])
def test_a_sqlite_ledger_made_before_migrations_opens_with_its_facts_and_keeps_working(tmp_path, older):
    db = sqlite3.connect(Layout(tmp_path).ledger)
    db.executescript(SCHEMA_BEFORE_MIGRATIONS)
    if older:
        db.executescript("DROP TABLE nights; DROP INDEX events_kind;")
    db.execute("INSERT INTO facts(id, user_id, subject, relation, object, data, status, stage, scale, created,"
               " updated, version_added) VALUES ('f1', 'default', ?, ?, ?, ?, 'active', 0, 1.0, 1.0, 2.0, 1)",
               (FACT.subject, FACT.relation, FACT.object, json.dumps(FACT.to_json(), sort_keys=True)))
    db.executemany("INSERT INTO events(fact_id, ts, kind, detail) VALUES ('f1', ?, ?, ?)",
                   [(1.0, "received", json.dumps({"fact": FACT.to_json()})), (2.0, ACTIVE, '{"version_added": 1}')])
    db.execute("INSERT INTO versions(n, ts, kind, detail) VALUES (1, 2.0, 'wake', '{\"facts\": [\"f1\"]}')")
    db.execute("INSERT INTO meta(key, value) VALUES ('fence', 5)")
    db.commit()
    db.close()

    ledger = Ledger.open(Layout(tmp_path))
    row = ledger.get("f1")
    assert row["status"] == ACTIVE and Fact.parse(row["fact"]) == FACT and ledger.latest_version() == 1
    assert row["scope"] == SHARED  # where its edit is: the home answers as before
    assert row["expires"] is None  # it holds until forgotten, as before
    assert [e["kind"] for e in ledger.history("f1")] == ["received", ACTIVE]
    assert ledger.edit_latencies() == [1.0]
    with pytest.raises(FencedOut):
        with ledger.transaction(fence=4):
            pass
    with ledger.transaction(fence=5):
        ledger.forget("f1", version=2)
        ledger.start_night("n1")
    assert [e["seq"] for e in ledger.history("f1")] == [1, 2, 3] and ledger.get("f1")["status"] == FORGOTTEN
    assert ledger.night("n1")["finished"] is None
    with ledger.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
        assert {i["name"] for i in inspect(conn).get_indexes("events")} == {"events_fact", "events_kind"}
    ledger.close()


def test_the_database_url_setting_names_the_ledger_the_command_line_reads(tmp_path, database_url):
    ledger = Ledger.open(Layout(tmp_path), database_url)
    with ledger.transaction():
        ledger.spool("f1", FACT, "accepted")
    ledger.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AGENTMEM_HOME": str(tmp_path)}
    env.pop("AGENTMEM_DATABASE_URL", None)
    if database_url is not None:
        env["AGENTMEM_DATABASE_URL"] = database_url
    code = "import sys; sys.argv = ['agentmem', 'facts', '--json']; from agentmem.cli import run; run()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert [f["id"] for f in json.loads(out.stdout)] == ["f1"]
    assert (tmp_path / "ledger.sqlite").exists() == (database_url is None)


@pytest.mark.parametrize("url", ["mysql://root@127.0.0.1/agentmem", "not a url"])
def test_a_database_other_than_postgresql_or_sqlite_is_refused_naming_the_setting(url):
    with pytest.raises(ValidationError) as e:
        Settings(database_url=url)
    assert settings_error(e.value).startswith("AGENTMEM_DATABASE_URL: ")


def test_the_ledger_refuses_a_database_other_than_postgresql_or_a_sqlite_file():
    with pytest.raises(ValueError, match="SQLite or PostgreSQL, not 'mysql'"):
        Ledger("mysql://root@127.0.0.1/agentmem")
    with pytest.raises(ValueError, match="a SQLite ledger is a file"):
        Ledger("sqlite://")


def test_the_users_are_listed_by_id_with_their_facts_versions_and_last_night(ledger, tmp_path):
    from agentmem.storage.overview import users_overview

    with ledger.transaction():
        for user, obj in [("u2", "Oslo"), ("u1", "Rome"), ("u1", "figs"), (None, "Paris")]:
            f = Fact(subject="User " + user if user else "Mira Lund", relation="likes", object=obj, user_id=user)
            ledger.spool(f.fact_id(), f, "accepted")
        ledger.add_user_version("u1", 1, "u1-v1")
        ledger.add_user_version("u1", 2, "u1-v2")
    layout = Layout(tmp_path)
    night = layout.user_sleep_reports("u1") / "night-20261207-030000.json"
    night.parent.mkdir(parents=True)
    night.write_text(json.dumps({"started": 1.0, "outcome": "published", "seconds": 60.0, "facts": 2, "version": 2,
                                 "config": {}}))
    rows = users_overview(ledger, layout)
    assert rows == [
        {"user_id": "u1", "facts": {SPOOLED: 2}, "version": 2,
         "night": {"started": 1.0, "outcome": "published", "seconds": 60.0, "facts": 2, "version": 2}},
        {"user_id": "u2", "facts": {SPOOLED: 1}, "version": 0, "night": None},
    ]  # the shared scope is no user
    assert [u["user_id"] for u in ledger.users(limit=1, offset=1)] == ["u2"]


def test_facts_whose_expiry_came_are_found_until_forgotten_and_a_restatement_moves_it(ledger):
    plans = {obj: Fact(subject="User u1", relation="is planning to", object=obj, user_id="u1", expires=when)
             for obj, when in [("fly to Boston", 100.0), ("move to Oslo", 300.0), ("learn Italian", None)]}
    with ledger.transaction():
        for f in plans.values():
            ledger.spool(f.fact_id(), f, "accepted")
    boston, oslo = plans["fly to Boston"].fact_id(), plans["move to Oslo"].fact_id()
    assert [r["id"] for r in ledger.expired(now=200.0)] == [boston]
    assert [(r["id"], r["scope"]) for r in ledger.expired(now=400.0)] == [(boston, "u1"), (oslo, "u1")]
    with ledger.transaction():
        ledger.forget(boston, reason="expired at 1970-01-01T00:01:40+00:00")
        # Oslo said again of a later date, and without one: the newest statement's expiry is kept
        ledger.restate(ledger.get(oslo), plans["move to Oslo"].model_copy(update={"expires": 500.0}))
    assert ledger.expired(now=400.0) == [] and ledger.get(boston)["reason"].startswith("expired at")
    row = ledger.get(oslo)
    assert row["expires"] == 500.0 and Fact.parse(row["fact"]).expires == 500.0
    with ledger.transaction():
        ledger.restate(ledger.get(oslo), plans["move to Oslo"].model_copy(update={"expires": None}))
    assert ledger.get(oslo)["expires"] is None and "expires" not in ledger.get(oslo)["fact"]
    assert ledger.expired(now=10_000.0) == []
