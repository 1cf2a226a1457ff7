"""Writers in parallel: facts per second with 1, 2, ... worker processes (one thread each) on as many users,
each on a writer shard of their own, every fact observed at once; the same facts each time, on a fresh home,
with the ledger on SQLite or in a fresh PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..writer.shards import shard_of
from .data import fictional_facts
from .machine import machine
from .suites.common import postgres_database


def users_on_shards(shards: int) -> list[str]:
    """One user per writer shard: the first ids of the form u0, u1, ... that land on each."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < shards:
        found.setdefault(shard_of(f"u{i}", shards), f"u{i}")
        i += 1
    return [found[k] for k in range(shards)]


def _workers(home: Path, redis_url: str, n: int, env: dict) -> list[subprocess.Popen]:
    home.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(n):
        log = home / f"bench-worker-{i}.log"
        procs.append(subprocess.Popen([sys.executable, "-m", "agentmem", "worker", "--home", str(home),
                                       "--redis-url", redis_url], stdout=log.open("w"), stderr=subprocess.STDOUT,
                                      env=env))
        deadline = time.monotonic() + 300
        while " ready." not in log.read_text():
            if procs[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"benchmark worker did not start; see {log}")
            time.sleep(0.5)
    return procs


def parallel_writers_benchmark(redis_url: str, facts_per_user: int = 8, quick: bool = False, progress=None,
                               workers: tuple[int, ...] = (1, 2), postgres: str | None = None) -> dict:
    """Facts/s with each number of `workers` (one thread each) on as many users' shards, the same facts each
    time; the ledger in a fresh PostgreSQL database on server `postgres` per run, else the home's SQLite."""
    from ..facts import Fact
    from ..memory import Memory

    say = progress or (lambda m: None)
    if quick:
        facts_per_user = 2
    shards = max(workers)
    users = users_on_shards(shards)
    pool = fictional_facts(len(users) * facts_per_user, seed=43)
    told = [Fact.parse({**f.to_json(), "user_id": users[i % len(users)]}) for i, f in enumerate(pool)]
    # one thread per worker: what is measured is processes in parallel, not threads inside one
    env = {**os.environ, "AGENTMEM_WRITER_SHARDS": str(shards), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out: dict = {"facts": len(told), "users": len(users), "shards": shards,
                 "ledger": "postgresql" if postgres else "sqlite"}
    for n in workers:
        with tempfile.TemporaryDirectory(prefix="agentmem-parallel-") as tmp, \
                postgres_database(postgres, f"agentmem_bench_{os.getpid()}_{n}") as database_url:
            home = Path(tmp) / "home"
            procs = _workers(home, redis_url, n, {**env, **({"AGENTMEM_DATABASE_URL": database_url}
                                                             if database_url else {})})
            try:
                with Memory.open(home, redis_url=redis_url, writer_shards=shards, database_url=database_url) as mem:
                    time.sleep(2)  # the workers' own first wakes are done
                    t0 = time.perf_counter()
                    # what the hook does with accepted facts, without the extraction: spooled, then queued
                    with mem.ledger.transaction():
                        for f in told:
                            mem.ledger.spool(f.fact_id(), f, "benchmark")
                    ids = mem.flush_spool()
                    drained = mem.wait(ids, timeout=3600)
                    seconds = time.perf_counter() - t0
                    for key in mem.redis.scan_iter(mem.layout.namespace + "*"):
                        mem.redis.delete(key)
            finally:
                for p in procs:
                    p.terminate()
                    p.wait(60)
            out[f"workers_{n}"] = {"seconds": round(seconds, 2), "facts_per_s": round(len(ids) / seconds, 3),
                                   "drained": drained}
            say(f"{n} worker(s): {len(ids)} facts in {seconds:.1f} s")
    first = out[f"workers_{workers[0]}"]["facts_per_s"]
    out["speedup"] = {n: round(out[f"workers_{n}"]["facts_per_s"] / first, 2) for n in workers}
    out["goal"] = {"speedup_2_workers": 1.7}
    return {**out, "machine": machine()}  # taken at the end: its "finished" is when the run ended
