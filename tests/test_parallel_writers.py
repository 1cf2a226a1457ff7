"""Writers in parallel, integration: two real Celery worker processes, each with a cache of its own, one store
folder, the ledger on the real PostgreSQL, real Redis, two writer shards. Two users' facts arriving at once are
edited at the same time, each user's in order and exactly once, and the night fans out into one task per user,
run on both workers; two model servers follow the one ledger, and each answers a user with their newest memory;
a worker killed mid-batch loses nothing and doubles nothing."""

import json
import os
import re
import shutil
import signal
import time

import pytest

from agentmem import Memory
from agentmem.serving.process import ServeProcess
from agentmem.storage.ledger import ACTIVE, PENDING, SUPERSEDED
from agentmem.writer.shards import shard_of
from checks import consistent
from test_workers import client, home, observer, said, workers  # noqa: F401 - fixtures

# two users on different shards
USERS = ("ana", "ben")
assert shard_of("ana", 2) != shard_of("ben", 2)
TOLD = {
    "ana": ["I live in Lisbon.", "I work as a nurse.", "My dog is called Biscuit.", "I moved to Porto."],
    "ben": ["I live in Nairobi.", "I work as a pilot.", "My cat is called Miso.", "I moved to Mombasa."],
}


@pytest.fixture
def sharded(monkeypatch, observer, workers, empty_postgres, cache_dir, tmp_path):  # noqa: F811
    """test_workers' observer, with every process of the home (the workers too) on two writer shards and one
    PostgreSQL ledger (and nights of one epoch without replayed text: here they only show where nights run).
    Each worker started with `sharded.host(i)` has a cache of its own, as on its own host: only the store
    folder is shared."""
    monkeypatch.setenv("AGENTMEM_WRITER_SHARDS", "2")
    monkeypatch.setenv("AGENTMEM_DATABASE_URL", empty_postgres)
    monkeypatch.setenv("AGENTMEM_SLEEP", json.dumps({"text_replay": 0, "epochs": 1, "replay_ratio": 0.1}))

    def host(i: int) -> dict:
        cache = tmp_path / f"host-{i}-cache"
        if not cache.exists():  # a folder no other worker uses
            shutil.copytree(cache_dir, cache, copy_function=_link_or_copy)
        # the "hosts" share this machine's cores: one torch thread each, or their threads fight over them
        return {"AGENTMEM_CACHE": str(cache), "OMP_NUM_THREADS": "1"}

    observer.host = host
    return observer


def _link_or_copy(src, dest):
    """The same bytes without copying them where both sides are on one filesystem."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _asked_on_every_server(servers, home, expected):
    """Each user's question to each server, as `Memory` asks (at least the newest versions the ledger has):
    whichever server a request lands on answers with the user's newest memory."""
    for server in servers:
        with Memory.open(home, server_url=server.url, read_only=True) as reader:
            for user, city in expected.items():
                assert city in reader.ask("Where do I live?", user_id=user).lower(), (server.url, user)
            assert not any(city in reader.ask("Where do I live?", user_id="carl").lower() for city in expected.values())


def _windows(mem, user):
    """(start, commit) of each of a user's wake edits: the first PENDING event of its facts to its version."""
    out = []
    for v in range(1, mem.ledger.latest_user_version(user) + 1):
        row = mem.ledger.user_version(user, v)
        if row["kind"] == "wake":
            start = min(e["ts"] for f in row["facts"] for e in mem.history(f) if e["kind"] == PENDING)
            out.append((start, row["ts"]))
    return out


@pytest.mark.full
def test_two_workers_edit_two_users_at_once_each_in_order_and_exactly_once(sharded, workers, home):  # noqa: F811
    # two model servers following the one ledger, each with a cache of its own, as on hosts of their own
    servers = [ServeProcess(home, "embedded", env=sharded.host(3 + i), args=["--dev"]) for i in range(2)]
    for server in servers:
        server.start()
    try:
        _edit_and_sleep_two_users(sharded, workers, servers, home)
    finally:
        for server in servers:
            server.stop()


def _edit_and_sleep_two_users(sharded, workers, servers, home):  # noqa: F811
    workers.start(env=sharded.host(0))
    workers.start(warm=False, env=sharded.host(1))  # ready to consume; its own first wake may well go to the other one
    mem = sharded()
    ids = {u: [] for u in USERS}
    for i in range(4):  # both users talk at once; each one's statements in the order they said them
        for u in USERS:
            ids[u] += [f.id for f in mem.observe(said(TOLD[u][i]), user_id=u)]
    assert mem.wait(timeout=600), workers.logs()[-3000:]
    consistent(mem)
    assert "porto" in mem.ask("Where do I live?", user_id="ana").lower()
    assert "mombasa" in mem.ask("Where do I live?", user_id="ben").lower()
    for u in USERS:  # the first city was replaced by the later one, not the other way round
        first_city = mem.ledger.get(ids[u][0])
        assert first_city["status"] == SUPERSEDED and mem.ledger.get(ids[u][-1])["status"] == ACTIVE
    # the work was shared: each worker committed some, and the two users' edits overlapped in time
    logs = [log.read_text() for _, log in workers.procs]
    assert all(re.search(r"wake: \{'batches': [1-9]", t) for t in logs), [t[-2000:] for t in logs]
    overlap = any(a0 < b1 and b0 < a1 for a0, a1 in _windows(mem, "ana") for b0, b1 in _windows(mem, "ben"))
    assert overlap, (_windows(mem, "ana"), _windows(mem, "ben"))
    _asked_on_every_server(servers, home, {"ana": "porto", "ben": "mombasa"})

    # the night: the shared one (nothing to do), then one task per user, spread over the workers
    wake = {u: mem.ledger.latest_user_version(u) for u in USERS}
    assert mem.sleep_later() == "celery"
    deadline = time.monotonic() + 900
    while any(mem.ledger.latest_user_version(u) == wake[u] for u in USERS):
        assert time.monotonic() < deadline, workers.logs()[-3000:]
        time.sleep(1)
    assert {mem.ledger.user_version(u)["kind"] for u in USERS} == {"sleep"}
    logs = [log.read_text() for _, log in workers.procs]
    assert all("agentmem.sleep_user" in t and "succeeded" in t for t in logs), [t[-2000:] for t in logs]
    assert "porto" in mem.ask("Where do I live?", user_id="ana").lower()
    assert "mombasa" in mem.ask("Where do I live?", user_id="ben").lower()
    _asked_on_every_server(servers, home, {"ana": "porto", "ben": "mombasa"})


def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(sharded, workers):  # noqa: F811
    first = workers.start(env=sharded.host(0))
    workers.start(warm=False, env=sharded.host(1))
    mem = sharded()
    out = [f for u in USERS for f in mem.observe(said(" ".join(TOLD[u][:3])), user_id=u)]
    deadline = time.monotonic() + 300
    while not any(mem.ledger.get(f.id)["status"] == PENDING for f in out):
        assert time.monotonic() < deadline, workers.logs()[-3000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    workers.start(env=sharded.host(2))
    assert mem.wait([f.id for f in out], timeout=600), workers.logs()[-3000:]
    assert all(mem.ledger.get(f.id)["status"] == ACTIVE for f in out)
    consistent(mem)  # every fact committed exactly once, each user's adapter equal to their edits
    assert "lisbon" in mem.ask("Where do I live?", user_id="ana").lower()
    assert "nairobi" in mem.ask("Where do I live?", user_id="ben").lower()
