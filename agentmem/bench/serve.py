"""The serving benchmark: publish latency (commit to visible in the server), bytes per publish, chat throughput.

Run with `agentmem eval serve [--engine vllm|embedded] [--servers N] [--postgres URL]`; it starts N real
`agentmem serve` processes on a fresh home and edits facts into it one at a time.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from ..memory import Memory
from ..serving.model_store import load
from ..serving.process import ServeProcess
from .data import fictional_facts
from .pipeline import percentile
from .machine import machine
from .suites.common import postgres_database

CHAT_PROMPTS = [
    "Write a short paragraph about the history of sailing.",
    "Explain how a bicycle works.",
    "Describe a quiet morning in a small town.",
    "Give three tips for learning a new language.",
]


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _visible_after(url: str, n: int, timeout: float = 30.0) -> float:
    """Wall-clock time at which the server first reports version >= n to new requests."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=10) as http:
        while time.monotonic() < deadline:
            if http.get("/v1/models").json()["data"][0]["agentmem"]["version"] >= n:
                return time.time()
            time.sleep(0.005)
    raise RuntimeError(f"version {n} was not visible within {timeout:.0f} s")


def _throughput(url: str, requests: int, concurrency: int, max_tokens: int) -> dict:
    def one(i: int) -> int:
        r = httpx.post(f"{url}/v1/chat/completions", timeout=600, json={
            "model": "agentmem", "temperature": 0, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": CHAT_PROMPTS[i % len(CHAT_PROMPTS)]}]})
        r.raise_for_status()
        return r.json()["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, range(requests)))
    seconds = time.perf_counter() - t0
    return {"requests": requests, "concurrency": concurrency, "completion_tokens": tokens,
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}


def _random_adapter(model_dir: Path, dest: Path, rank: int = 16) -> Path:
    """A LoRA adapter of realistic shape (every attention and MLP projection) with non-zero weights."""
    from peft import LoraConfig, get_peft_model

    model, _ = load(model_dir)
    cfg = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, lora_dropout=0.0,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft = get_peft_model(model, cfg)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data.mul_(1e-3)  # small: the answers stay sensible, the compute is the same
    peft.save_pretrained(dest)
    return dest


def serve_benchmark(home: Path | None = None, engine: str = "auto", edits: int = 10, requests: int = 16,
                    concurrency: int = 4, max_tokens: int = 64, quick: bool = False, progress=None,
                    servers: int = 1, postgres: str | None = None) -> dict:
    """`servers` model servers follow one home's ledger (in a fresh PostgreSQL database on server `postgres`, else
    SQLite): the publish latency is measured on each, and until every one answers with the version."""
    say = progress or (lambda m: None)
    if quick:
        edits, requests, concurrency, max_tokens = 3, 4, 2, 16
    tmp = tempfile.TemporaryDirectory(prefix="agentmem-serve-bench-") if home is None else None
    home = Path(tmp.name if tmp else home)
    with postgres_database(postgres, f"agentmem_serve_bench_{os.getpid()}") as database_url:
        env = {"AGENTMEM_DATABASE_URL": database_url} if database_url else {}
        procs = [ServeProcess(home, engine, env=env) for _ in range(servers)]
        try:
            for i, server in enumerate(procs):
                say(f"starting agentmem serve --engine {engine} ({i + 1} of {servers})")
                server.start()
            urls = [s.url for s in procs]
            with Memory.open(home, server_url=urls[0], database_url=database_url) as mem:
                latencies, applies, sizes = [[] for _ in urls], [], []
                for i, fact in enumerate(fictional_facts(edits, seed=23)):
                    mem.remember([fact])
                    n = mem.version
                    committed = mem.ledger.version(n)["ts"]
                    for seen, url in zip(latencies, urls):
                        seen.append(_visible_after(url, n) - committed)
                    sizes.append(_dir_bytes(mem.layout.version_dir(n)))
                    live = mem.ledger.live()
                    if live and live["version"] == n:
                        applies.append(live["apply_s"])
                    say(f"edit {i + 1}/{edits}: visible on every server {max(s[-1] for s in latencies):.3f} s "
                        "after commit")
                checkpoint = sum(p.stat().st_size for p in mem.model_dir.glob("*.safetensors"))
                say("chat throughput without an adapter")
                plain = _throughput(urls[0], requests, concurrency, max_tokens)
                adapter = _random_adapter(mem.model_dir, home / "bench-adapter")
                n = mem.publish_adapter(adapter)
                adapter_latency = [_visible_after(url, n, timeout=600) - mem.ledger.version(n)["ts"] for url in urls]
                say("chat throughput with an adapter")
                with_adapter = _throughput(urls[0], requests, concurrency, max_tokens)
                engine_name = httpx.get(f"{urls[0]}/health").json()["engine"]
        finally:
            for server in procs:
                server.stop()
            if tmp:
                tmp.cleanup()
    every = [max(per_edit) for per_edit in zip(*latencies)]  # until the last server answers with it
    return {
        "machine": machine(),
        "engine": engine_name,
        "servers": servers,
        "ledger": "postgresql" if postgres else "sqlite",
        "publish_latency_s": {"p50": percentile(every, 0.5), "p95": percentile(every, 0.95),
                              "max": round(max(every), 3), "n": len(every),
                              "per_server_p50": [percentile(s, 0.5) for s in latencies],
                              "server_apply_p50": percentile(applies, 0.5)},
        "adapter_publish_latency_s": round(max(adapter_latency), 3),
        "bytes_per_publish": int(statistics.median(sizes)),
        "checkpoint_bytes": checkpoint,
        "bytes_fraction": round(statistics.median(sizes) / checkpoint, 4),
        "chat": {"max_tokens": max_tokens, "no_adapter": plain, "adapter": with_adapter},
        "goals": {"publish_p50_s": 1.0, "bytes_fraction": 0.05},
    }


def _as_user(url: str, user: str | None, prompt: str, max_tokens: int) -> httpx.Response:
    r = httpx.post(f"{url}/v1/chat/completions", timeout=600, json={
        "model": "agentmem", "temperature": 0, "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}], **({"user": user} if user else {})})
    r.raise_for_status()
    return r


def _users_throughput(url: str, users: list[str | None], requests: int, max_tokens: int) -> dict:
    """Chat tokens/s with `requests` requests in flight at once, request i asking as users[i % len(users)]."""
    def one(i: int) -> int:
        r = _as_user(url, users[i % len(users)], CHAT_PROMPTS[i % len(CHAT_PROMPTS)], max_tokens)
        return r.json()["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(requests) as pool:
        tokens = sum(pool.map(one, range(requests)))
    seconds = time.perf_counter() - t0
    return {"adapters": len({u for u in users if u}), "requests": requests, "completion_tokens": tokens,
            "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}


def users_serving_benchmark(home: Path | None = None, engine: str = "auto", users: int = 8, requests: int = 16,
                            max_tokens: int = 64, quick: bool = False, progress=None) -> dict:
    """Per-user serving: each user's adapter publish latency (user version committed -> answered with it), and
    chat throughput with every user's adapter in flight against one adapter and against none (`--dev`: the
    benchmark names the user in each request)."""
    from ..facts import Fact

    say = progress or (lambda m: None)
    if quick:
        users, requests, max_tokens = 2, 4, 16
    tmp = tempfile.TemporaryDirectory(prefix="agentmem-serve-users-") if home is None else None
    home = Path(tmp.name if tmp else home)
    names = [f"user{i}" for i in range(users)]
    server = ServeProcess(home, engine, args=["--dev"])
    say(f"starting agentmem serve --engine {engine} --dev")
    server.start()
    try:
        with Memory.open(home) as mem:
            latencies = []
            for u, fact in zip(names, fictional_facts(users, seed=37)):
                mem.remember([Fact.parse({**fact.to_json(), "user_id": u})])
                row = mem.ledger.user_version(u)
                deadline = time.monotonic() + 60
                while int(_as_user(server.url, u, "hi", 1).headers["X-AgentMem-User-Version"]) < row["n"]:
                    assert time.monotonic() < deadline, f"{u}'s version {row['n']} never served"
                latencies.append(time.time() - row["ts"])
                say(f"{u}: answered with their adapter {latencies[-1]:.3f} s after its commit")
            ranks = [mem.ledger.user_version(u)["rank"] for u in names]
        chat = {}
        for label, who in [("no_adapter", [None]), ("one_adapter", names[:1]), ("every_users_adapter", names)]:
            say(f"chat throughput: {label}")
            chat[label] = _users_throughput(server.url, who, requests, max_tokens)
        engine_name = httpx.get(f"{server.url}/health").json()["engine"]
    finally:
        server.stop()
        if tmp:
            tmp.cleanup()
    return {"machine": machine(), "engine": engine_name, "users": users, "adapter_ranks": ranks,
            "user_publish_latency_s": {"p50": percentile(latencies, 0.5), "max": round(max(latencies), 3)},
            "chat": {"max_tokens": max_tokens, **chat}, "goals": {"user_publish_p50_s": 1.0}}
