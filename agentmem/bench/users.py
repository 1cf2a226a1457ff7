"""Per-user memory benchmark: each user's own recall against the same facts in one shared memory, cross-user
leaks over every probe, bytes on disk per user and per fact, and the time to forget a user."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..facts import Fact
from .data import fictional_facts
from .machine import machine


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _hits(mem, facts: list[Fact], asker) -> list[bool]:
    """For each of `facts`, whether its object is in the answer to its own question, asked as `asker`."""
    return [f.object.lower() in mem.ask(f.questions()[0], user_id=asker(f)).lower() for f in facts]


def _recall(mem, facts: list[Fact], asker) -> float:
    hits = _hits(mem, facts, asker)
    return round(sum(hits) / len(hits), 3)


def users_benchmark(users: int = 3, facts_per_user: int = 5, home: Path | None = None, quick: bool = False,
                    progress=None) -> dict:
    """`users` users each told `facts_per_user` facts about their own people (fictional, so the unedited model
    knows none); every user's questions are also asked by every other user and with no user (the leaks)."""
    from ..memory import Memory

    say = progress or (lambda m: None)
    if quick:
        users, facts_per_user = 2, 2
    pool = fictional_facts(users * facts_per_user, seed=29)
    names = [f"user{i}" for i in range(users)]
    told = {u: [Fact.parse({**f.to_json(), "user_id": u}) for f in pool[i::users]] for i, u in enumerate(names)}
    out: dict = {"users": users, "facts_per_user": facts_per_user}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(home) if home else Path(tmp)
        with Memory.open(root / "shared", progress=say) as mem:
            say(f"users: {len(pool)} facts in one shared memory (the single-scope baseline)")
            mem.remember(pool)
            out["shared_recall"] = _recall(mem, pool, lambda f: None)
        with Memory.open(root / "users", progress=say) as mem:
            # what the unedited model says anyway (a common instrument, say): a chance hit, not a leak
            chance = dict(zip([f.key[1:] for f in pool], _hits(mem, pool, lambda f: None)))
            t0 = time.perf_counter()
            for u in names:
                say(f"users: {facts_per_user} facts of {u}")
                mem.remember(told[u])
            out["edit_seconds_per_fact"] = round((time.perf_counter() - t0) / len(pool), 3)
            out["own_recall"] = round(sum(_recall(mem, told[u], lambda f: f.user_id) for u in names) / users, 3)
            leaks, by_chance, probes = [], 0, 0
            for u in names:
                for asker in [*[v for v in names if v != u], None]:
                    for f, hit in zip(told[u], _hits(mem, told[u], lambda f: asker)):
                        probes += 1
                        if hit and chance[f.key[1:]]:
                            by_chance += 1
                        elif hit:
                            leaks.append({"owner": u, "asker": asker, "question": f.questions()[0]})
            out["leaks"] = {"answers": len(leaks), "probes": probes, "unedited_model_says_it_too": by_chance,
                            "examples": leaks[:5]}
            sizes = [_size(mem.layout.user_dir(u)) for u in names]
            edits = sum(_size(mem.layout.edit_file(r["id"])) for r in mem.facts())
            out["bytes"] = {"adapter_per_user": round(sum(sizes) / users),
                            "adapter_per_fact": round(sum(sizes) / len(pool)),
                            "edits_per_fact": round(edits / len(pool)),
                            "ranks": [mem.ledger.user_version(u)["rank"] for u in names]}
            t0 = time.perf_counter()
            mem.forget_user(names[0])
            out["forget_user_seconds"] = round(time.perf_counter() - t0, 3)
            out["forgotten_recall"] = _recall(mem, told[names[0]], lambda f: f.user_id)
    return {**out, "machine": machine()}  # taken at the end: its "finished" is when the run ended
