"""What every suite records beside its numbers (the machine, the command that reproduces it) and shared steps."""

from __future__ import annotations

import shlex
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ...measure import recall
from ..machine import machine


@contextmanager
def postgres_database(server: str | None, name: str):
    """A new PostgreSQL database on `server` (a URL without a database), dropped after; None: SQLite."""
    if server is None:
        yield None
        return
    from sqlalchemy import create_engine

    admin = create_engine(f"{server.rstrip('/')}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server.rstrip('/')}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def command(suite: str, **opts) -> str:
    """The `agentmem eval` command line that runs `suite` with these options."""
    parts = ["agentmem", "eval", suite]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            parts += [flag, ",".join(str(v) for v in value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def envelope(suite: str, opts: dict, result: dict) -> dict:
    return {"suite": suite, "command": command(suite, **opts), "sizes": opts, "machine": machine(), **result}


@contextmanager
def workdir(home: Path | None, name: str):
    """`home`, or a temporary folder removed afterwards: suites write memories they do not keep."""
    if home is not None:
        Path(home).mkdir(parents=True, exist_ok=True)
        yield Path(home)
        return
    with tempfile.TemporaryDirectory(prefix=f"agentmem-{name}-") as tmp:
        yield Path(tmp)


def rates(r: dict) -> dict:
    """recall()'s fractions without its list of misses, rounded."""
    return {k: round(r[k], 3) for k in ("raw", "chat", "paraphrase")}


def edit_in_batches(mem, facts, batch: int) -> float:
    """Edit `facts` sequentially, `batch` at a time; returns the seconds spent editing."""
    t0 = time.perf_counter()
    for i in range(0, len(facts), batch):
        mem.remember(facts[i: i + batch])
    return time.perf_counter() - t0


def recall_rates(model, tok, facts) -> dict:
    return rates(recall(model, tok, facts))
