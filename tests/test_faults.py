"""Faults, injected into the real parts: Redis crashed and restarted (append-only on) and workers killed
repeatedly in the middle of a stream of facts; a full disk during a publish; the model server down during
a publish, and unable to read a version until it is fixed. No fact may be lost or applied twice.

Real Celery worker processes, a private redis-server, `agentmem serve --engine embedded` in its own
process, and the bundled model throughout.
"""

import errno
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
import torch
from prometheus_client.parser import text_string_to_metric_families
from safetensors.torch import load_file
from sqlalchemy.exc import OperationalError

from checks import Workers, consistent
from test_workers import said
from agentmem import Fact, Memory
from agentmem.metrics import MemoryCollector, render
from agentmem.serving.engines import free_port
from agentmem.serving.gateway import MIN_VERSION_HEADER, VERSION_HEADER
from agentmem.serving.process import ServeProcess
from agentmem.storage import atomic, published
from agentmem.storage.ledger import ACTIVE, PENDING, QUEUED, SPOOLED


class PrivateRedis:
    """A redis-server of the test's own, every write in its append-only file fsynced, that can crash and restart."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=(self.folder / "redis.log").open("a"), stderr=subprocess.STDOUT)
        client = self.client()
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline and self.proc.poll() is None, (self.folder / "redis.log").read_text()
                time.sleep(0.1)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def crash(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def _wait_for(predicate, timeout: float, why) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, why()
        time.sleep(0.05)


def test_redis_crash_and_repeated_worker_kills_lose_nothing_and_apply_each_fact_once(tmp_path, monkeypatch):
    r = PrivateRedis(tmp_path)
    r.start()
    # a killed worker's lock expires in 5 s rather than 30: the test waits for each expiry
    monkeypatch.setenv("AGENTMEM_LOCK_TTL_MS", "5000")
    monkeypatch.setenv("AGENTMEM_LOG_FORMAT", "json")
    home = tmp_path / "home"
    home.mkdir()
    workers = Workers(home, redis_url=r.url)
    mem = None
    try:
        w1 = workers.start()
        mem = Memory.open(home, redis_url=r.url)
        ids = []

        def observe(text):
            out = mem.observe(said(text), user_id="zed")
            assert len(out) == 1, out
            ids.append(out[0].id)
            return out[0]

        def edits_started() -> int:
            return sum(1 for i in ids for e in mem.history(i) if e["kind"] == PENDING)

        observe("I live in Tromso.")
        _wait_for(lambda: edits_started() > 0, 120, workers.logs)
        r.crash()  # in the middle of the worker's batch: its acknowledgement cannot reach Redis
        assert observe("I work at Halden Shipping.").status == SPOOLED
        r.start()  # the stream and its unacknowledged entries come back from the append-only file
        # ... all but one: what a Redis fsyncing every second (not every write) can lose in a crash
        (entry,) = [e for e, fields in r.client().xrange(mem.queue.stream) if fields[b"id"] == ids[0].encode()]
        r.client().xdel(mem.queue.stream, entry)
        w1.send_signal(signal.SIGKILL)  # kill 1
        w1.wait()

        started = edits_started()
        w2 = workers.start(warm=False)  # a starting worker hands over the spool, waits out the lock and drains
        _wait_for(lambda: edits_started() > started, 120, workers.logs)
        w2.send_signal(signal.SIGKILL)  # kill 2, in the middle of a batch
        w2.wait()
        observe("I play the cello.")
        workers.start(warm=False)
        assert mem.wait(ids, timeout=240), workers.logs()[-3000:]

        assert [mem.ledger.get(i)["status"] for i in ids] == [ACTIVE] * 3, "a fact was lost"
        # each killed worker's batch went back to the queue at the next writer's start, then landed once
        requeued = [e for i in ids for e in mem.history(i)
                    if e["kind"] == QUEUED and "interrupted before its edit was committed" in (e.get("reason") or "")]
        assert len(requeued) >= 2, requeued
        assert mem.queue.backlog() == 0
        consistent(mem)  # every fact committed exactly once, training copy = base + their edits
        served = published.newest(mem.layout, mem.ledger).tensors()
        training = load_file(str(home / "store" / "training" / "model.safetensors"))
        assert served.keys() == training.keys() and all(torch.equal(served[k], training[k]) for k in served)
        # the workers logged JSON lines (Celery's own handlers included)
        logged = [json.loads(line) for line in workers.logs().splitlines() if line.startswith("{")]
        assert any(e["msg"].startswith("wake: {") and e["level"] == "info" for e in logged)
        assert any(e["logger"].startswith("celery") for e in logged)
    finally:
        workers.stop_all()
        if mem is not None:
            mem.close()
        if r.proc.poll() is None:
            r.crash()


FACT = Fact(subject="Ilse Vandermeer", relation="lives in", object="Reykjavik")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An embedded Memory with FACT remembered, and `agentmem serve --engine embedded` on the same home."""
    home = tmp_path_factory.mktemp("faults") / "home"
    mem = Memory.open(home)
    mem.remember([FACT])
    server = ServeProcess(home, "embedded")
    server.start()
    yield mem, server
    server.stop()
    mem.close()


def _ask(server: ServeProcess, min_version: int = 0) -> tuple[int, str]:
    """(version, answer) from the server to FACT's question."""
    r = httpx.post(f"{server.url}/v1/chat/completions", timeout=120, headers={MIN_VERSION_HEADER: str(min_version)},
                   json={"model": "agentmem", "messages": [{"role": "user", "content": FACT.questions()[0]}],
                         "temperature": 0, "max_tokens": 16})
    assert r.status_code == 200, r.text
    return int(r.headers[VERSION_HEADER]), r.json()["choices"][0]["message"]["content"].lower()


def test_a_full_disk_during_a_publish_leaves_the_previous_version_served(served, monkeypatch):
    mem, server = served
    fid = FACT.fact_id()
    version = mem.version
    served_version, answer = _ask(server, version)
    assert served_version == version and "reykjavik" in answer
    versions = mem.home / "store" / "versions"
    before = sorted(p.name for p in versions.iterdir())

    def full_disk(tensors, path, *args, **kwargs):
        if "versions" in Path(path).relative_to(mem.home / "store").parts:  # staged or in place
            Path(path).write_bytes(b"\0" * 4096)  # what the disk took before it filled up
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(tensors, path, *args, **kwargs)

    real_save = atomic.save_file
    monkeypatch.setattr(atomic, "save_file", full_disk)
    with pytest.raises(OSError) as e:
        mem.forget(fid)
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()

    # nothing half-written, nothing committed, and the previous version answers everywhere
    assert sorted(p.name for p in versions.iterdir()) == before
    assert mem.version == version and mem.ledger.get(fid)["status"] == ACTIVE
    assert published.newest(mem.layout, mem.ledger).tensors()
    assert _ask(server) == (served_version, answer)
    assert "reykjavik" in mem.ask(FACT.questions()[0], max_new_tokens=16).lower(), \
        "this process answers from weights that were never published"
    assert mem.publish_adapter(None) == version + 1  # the disk has room again
    consistent(mem)


def test_a_model_server_down_during_a_publish_serves_it_once_back_and_retries_an_unreadable_version(
        served, monkeypatch):
    mem, server = served
    live_before = _ask(server, mem.version)[0]
    server.stop()
    mem.forget(FACT.fact_id())  # published while no server runs
    n = mem.version
    assert n == live_before + 1 and mem.ledger.live()["version"] == live_before
    consistent(mem)
    server.start()
    # the port opens only once the newest version is applied: no request sees the old one
    assert mem.ledger.live()["version"] == n
    version, answer = _ask(server)
    assert version == n and "reykjavik" not in answer

    # the next version reaches the server torn (a shared volume that has not caught up): retried until whole
    weights = mem.home / "store" / "versions" / f"v{n + 1:06d}" / "model.safetensors"
    whole = weights.parent.parent / "whole.safetensors"

    def torn(tensors, path, *args, **kwargs):
        real_save(tensors, path, *args, **kwargs)
        if Path(path).parent.name.startswith(f".{weights.parent.name}."):
            whole.write_bytes(Path(path).read_bytes())
            Path(path).write_bytes(whole.read_bytes()[:1000])

    real_save = atomic.save_file
    monkeypatch.setattr(atomic, "save_file", torn)
    assert mem.publish_adapter(None) == n + 1
    monkeypatch.undo()
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(_ask(server, n + 1)))
    waiting.start()
    deadline = time.monotonic() + 60
    while "applying version" not in server.tail():
        assert time.monotonic() < deadline, server.tail()
        time.sleep(0.1)
    time.sleep(1.0)
    assert mem.ledger.live()["version"] == n and not answers  # held back, not answered from version n
    os.replace(whole, weights)
    waiting.join(120)
    assert answers and answers[0][0] == n + 1
    assert mem.ledger.live()["version"] == n + 1
    consistent(mem)

    samples = {s.name: s.value for fam in text_string_to_metric_families(
        render(MemoryCollector(mem.ledger, mem.backlog, mem.layout.sleep_reports)).decode()) for s in fam.samples}
    assert samples["agentmem_edit_latency_seconds_count"] == 1  # FACT's edit
    assert samples["agentmem_publish_latency_seconds_count"] == 4  # versions 2-5 went live; 1 never did
    assert samples["agentmem_live_version"] == n + 1

    # the only model path a caller can send the server is the model's name, and only "agentmem" exists
    for model in ("../../etc/passwd", str(mem.model_dir), "agentmem/../..", "/"):
        r = httpx.post(f"{server.url}/v1/completions", json={"model": model, "prompt": "Hi", "max_tokens": 1})
        assert r.status_code == 404, (model, r.text)


@pytest.fixture
def small_disks(tmp_path):
    """A home on a 256 MB tmpfs with its ledger on a 2 MB one (through a symlink: SQLite writes its WAL beside
    the real file), so each can be filled for real."""
    home, ledger_fs = tmp_path / "home", tmp_path / "ledger-fs"
    mounted = []
    for where, size in ((home, "256m"), (ledger_fs, "2m")):
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
        if r.returncode:
            for m in mounted:
                subprocess.run(["umount", str(m)])
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}): the full disk is only simulated "
                        "(test_a_full_disk_during_a_publish_leaves_the_previous_version_served)")
        mounted.append(where)
    (ledger_fs / "ledger.sqlite").touch()
    (home / "ledger.sqlite").symlink_to(ledger_fs / "ledger.sqlite")
    yield home, ledger_fs
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)])


def _fill(fs: Path, leave: int) -> Path:
    """Take all of the filesystem at `fs` but `leave` bytes, for real."""
    st = os.statvfs(fs)
    filler = fs / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def _snapshot(home: Path) -> dict:
    store = home / "store"
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*")
            if p.is_file() and "staging" not in p.relative_to(store).parts}


# where the disk fills: while the new edit is staged, while the training copy and version are staged, at the
# ledger's commit (after the files were renamed into place, which then go back)
@pytest.mark.parametrize("full", ["edit", "version", "ledger"])
def test_a_really_full_disk_leaves_nothing_half_written_and_the_write_lands_once_there_is_room(small_disks, full):
    home, ledger_fs = small_disks
    first = Fact(subject="Ottilie Brandvold", relation="lives in", object="Narvik")
    second = Fact(subject="Ottilie Brandvold", relation="plays the", object="tuba")
    with Memory.open(home) as mem:
        mem.remember([first])
        before, version = _snapshot(home), mem.version
        if full == "ledger":
            publish = mem.editor.store.publish

            def publish_then_fill(*args, **kwargs):
                publish(*args, **kwargs)
                # an emptied write-ahead log must grow to take the commit: there is no room left for it
                db = sqlite3.connect(home / "ledger.sqlite")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.close()
                fillers.append(_fill(ledger_fs, 0))

            mem.editor.store.publish = publish_then_fill
        fillers = [] if full == "ledger" else [_fill(home, 100_000 if full == "edit" else 4_000_000)]
        with pytest.raises((OSError, OperationalError)) as e:
            mem.remember([second])
        assert "No space" in str(e.value) or "disk is full" in str(e.value) or e.value.errno == errno.ENOSPC
        if full == "ledger":
            mem.editor.store.publish = publish
        for f in fillers:
            f.unlink()
        # nothing the failed write touched is left changed, and the ledger holds the first fact alone
        assert _snapshot(home) == before
        assert mem.version == version and mem.ledger.get(first.fact_id())["status"] == ACTIVE
        assert (mem.ledger.get(second.fact_id()) or {}).get("status") != ACTIVE
        assert "narvik" in mem.ask(first.questions()[0]).lower()
        # with room again, the same write lands once and everything is consistent
        mem.remember([second])
        assert mem.ledger.get(second.fact_id())["status"] == ACTIVE and mem.version == version + 1
        consistent(mem)


def test_a_full_disk_under_the_wake_loop_keeps_the_fact_queued_until_there_is_room(small_disks):
    home, _ = small_disks
    with Memory.open(home) as mem:
        mem.wait(timeout=60)
        filler = _fill(home, 100_000)
        (fact,) = mem.observe(said("I live in Narvik."), user_id="ott")
        assert not mem.wait([fact.id], timeout=20)  # the embedded worker cannot write its edit ...
        history = [e["kind"] for e in mem.history(fact.id)]
        assert "failed" not in history and mem.ledger.get(fact.id)["status"] in ("queued", "pending"), history
        filler.unlink()  # ... and, with room again, applies it on its own
        assert mem.wait([fact.id], timeout=180)
        assert mem.ledger.get(fact.id)["status"] == ACTIVE
        assert "narvik" in mem.ask("Where do I live?", user_id="ott").lower()
