"""The wake pipeline benchmark: extraction quality, observe-to-recallable latency, queue throughput.

Run with `agentmem eval pipeline`; with a Redis URL it starts real `agentmem
worker` processes, without one it measures the embedded pipeline.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..extract import RuleExtractor
from .extraction import EXTRACTION_SET, score_dataset
from .machine import machine

# (statement pattern, first-person question, objects): what people say about themselves
STATEMENTS = [
    ("I live in {o}.", "Where do I live?", ["Tromso", "Lisbon", "Nairobi", "Montreal", "Kyoto", "Dublin", "Vienna"]),
    ("I work at {o}.", "Where do I work?", ["Quillon Robotics", "Halden Shipping", "Siemens", "Nintendo", "Spotify"]),
    ("My dog is called {o}.", "What is my dog called?", ["Biscuit", "Pepper", "Waffles", "Nugget", "Ziggy"]),
    ("I speak {o}.", "What language do I speak?", ["Icelandic", "Finnish", "Swahili", "Welsh", "Korean"]),
    ("I play the {o}.", "What instrument do I play?", ["cello", "banjo", "harp", "trumpet", "flute"]),
    ("My cat is called {o}.", "What is my cat called?", ["Miso", "Tofu", "Luna", "Pixel", "Mochi"]),
    ("I'm allergic to {o}.", "What am I allergic to?", ["peanuts", "penicillin", "shellfish", "latex"]),
    ("I drive a {o}.", "What car do I drive?", ["Volvo", "Subaru", "Fiat", "Mazda", "Saab"]),
]


def user_statements(n: int, seed: int = 0) -> list[dict]:
    """`n` first-person statements spread over users, each user stating each relation at most once."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = f"b{i // len(STATEMENTS)}"
        text, question, objects = STATEMENTS[(i + seed) % len(STATEMENTS)]
        obj = rng.choice(objects)
        out.append({"user_id": user, "text": text.format(o=obj), "question": question, "object": obj})
    return out


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))], 3)


def extraction_scores(dataset: Path) -> dict:
    rows = [json.loads(line) for line in dataset.read_text().splitlines() if line.strip()]
    s = score_dataset(rows, RuleExtractor())
    return {"snippets": len(rows), "precision": round(s.precision, 3), "recall": round(s.recall, 3),
            "tp": s.tp, "fp": s.fp, "fn": s.fn}


def latency(mem, items: list[dict], timeout: float, say) -> dict:
    """One statement at a time: seconds from `observe` until `ask` in a new conversation answers it."""
    took, applied, asking, missed = [], [], [], []
    for it in items:
        t0 = time.perf_counter()
        out = mem.observe([{"role": "user", "content": it["text"]}], user_id=it["user_id"])
        ok = mem.wait([f.id for f in out], timeout=timeout)
        t1 = time.perf_counter()
        # the first 16 tokens: what a streaming client shows first, and where the object must be
        answer = mem.ask(it["question"], user_id=it["user_id"], max_new_tokens=16) if ok else ""
        dt = time.perf_counter() - t0
        applied.append(t1 - t0)
        asking.append(dt - (t1 - t0))
        if it["object"].lower() in answer.lower():
            took.append(dt)
        else:
            missed.append({"said": it["text"], "asked": it["question"], "answer": answer[:120]})
        say(f"observe->recallable {len(took) + len(missed)}/{len(items)}: {dt:.1f} s")
    final = [it for it in items
             if it["object"].lower() in mem.ask(it["question"], user_id=it["user_id"], max_new_tokens=16).lower()]
    return {"facts": len(items), "recalled_right_after": len(took) / len(items),
            "recalled_at_the_end": len(final) / len(items),
            "p50_s": percentile(took, 0.5), "p95_s": percentile(took, 0.95),
            "of_which_until_published_p50_s": percentile(applied, 0.5), "of_which_answering_p50_s": percentile(asking, 0.5),
            "misses": missed[:5]}


def throughput(mem, items: list[dict], timeout: float) -> dict:
    """All statements observed at once: facts applied per second until the queue is empty."""
    t0 = time.perf_counter()
    ids = []
    for it in items:
        ids += [f.id for f in mem.observe([{"role": "user", "content": it["text"]}], user_id=it["user_id"])]
    observed = time.perf_counter() - t0
    ok = mem.wait(ids, timeout=timeout)
    total = time.perf_counter() - t0
    return {"facts": len(ids), "observe_s_per_call": round(observed / len(items), 4), "drained": ok,
            "seconds": round(total, 2), "facts_per_s": round(len(ids) / total, 3)}


def _start_worker(home: Path, redis_url: str) -> tuple[subprocess.Popen, Path]:
    log = home / "bench-worker.log"
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "agentmem", "worker", "--home", str(home), "--redis-url", redis_url],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ})
    deadline = time.monotonic() + 300
    while "wake: {" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"benchmark worker did not start; see {log}")
        time.sleep(0.5)
    return proc, log


def pipeline_benchmark(dataset: Path = EXTRACTION_SET, home: Path | None = None, redis_url: str | None = None,
                       facts: int = 20, quick: bool = False, progress=None) -> dict:
    from ..memory import Memory

    say = progress or (lambda m: None)
    n = 4 if quick else facts
    out: dict = {"mode": "redis+celery" if redis_url else "embedded", "extraction": extraction_scores(dataset)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(home) if home else Path(tmp)
        worker = None
        if redis_url:
            worker, _ = _start_worker(root / "mem", redis_url)
        try:
            with Memory.open(root / "mem", redis_url=redis_url, progress=say) as mem:
                items = user_statements(2 * n, seed=5)
                out["observe_to_recallable"] = latency(mem, items[:n], 300, say)
                out["throughput"] = throughput(mem, items[n:], 60 * n)
                out["version"] = mem.version
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(30)
    return {**out, "machine": machine()}  # taken at the end: its "finished" is when the run ended
