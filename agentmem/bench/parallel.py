"""Writers in parallel: facts per second with 1 and with 2 worker processes (one thread each) on 2 users whose
writer shards differ, every fact observed at once; the same facts each time, on a fresh home."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..writer.shards import shard_of
from .data import fictional_facts
from .suites.common import machine

USERS = ("ana", "ben")  # on different shards of two


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


def parallel_writers_benchmark(redis_url: str, facts_per_user: int = 8, quick: bool = False, progress=None) -> dict:
    from ..facts import Fact
    from ..memory import Memory

    say = progress or (lambda m: None)
    if quick:
        facts_per_user = 2
    assert shard_of(USERS[0], 2) != shard_of(USERS[1], 2)
    pool = fictional_facts(2 * facts_per_user, seed=43)
    told = [Fact.parse({**f.to_json(), "user_id": USERS[i % 2]}) for i, f in enumerate(pool)]
    # one thread per worker: what is measured is processes in parallel, not threads inside one
    env = {**os.environ, "AGENTMEM_WRITER_SHARDS": "2", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out: dict = {"machine": machine(), "facts": len(told), "users": len(USERS), "shards": 2}
    for n in (1, 2):
        with tempfile.TemporaryDirectory(prefix="agentmem-parallel-") as tmp:
            home = Path(tmp) / "home"
            procs = _workers(home, redis_url, n, env)
            try:
                with Memory.open(home, redis_url=redis_url, writer_shards=2) as mem:
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
    out["speedup"] = round(out["workers_2"]["facts_per_s"] / out["workers_1"]["facts_per_s"], 2)
    out["goal"] = {"speedup": 1.7}
    return out
