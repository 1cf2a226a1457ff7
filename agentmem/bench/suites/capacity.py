"""Capacity and retention: recall as sequential MEMIT batches accumulate, with cross-edit constraints and without.

Both suites run the same sequential edit; capacity reads the recall of every fact
so far, retention that of the first batch only.
"""

from __future__ import annotations

import time
from pathlib import Path

from ...edit.config import MemitConfig
from ...memory import Memory
from ..data import fictional_facts
from .common import envelope, recall_rates, workdir


def _sequential(root: Path, mode: str, facts, batch: int, checkpoints: set[int], measure, say) -> list[dict]:
    rows, edit_s = [], 0.0
    with Memory.open(root / mode, memit=MemitConfig(constraints=mode)) as mem:
        for i in range(0, len(facts), batch):
            t0 = time.perf_counter()
            mem.remember(facts[i: i + batch])
            edit_s += time.perf_counter() - t0
            n = min(i + batch, len(facts))
            if n in checkpoints:
                rows.append({"facts": n, **measure(mem, n), "edit_seconds": round(edit_s, 1)})
                say(f"{mode}: {rows[-1]}")
    return rows


def capacity(sizes: tuple[int, ...] = (10, 20, 50, 100, 200, 500), batch: int = 10,
             modes: tuple[str, ...] = ("nullspace", "none"), quick: bool = False, home: Path | None = None,
             progress=None) -> dict:
    """Recall of all facts edited so far at each size in `sizes`, one sequential run per constraint mode."""
    say = progress or (lambda m: None)
    if quick:
        sizes, batch, modes = (3, 6), 3, ("nullspace",)
    sizes = tuple(sorted(sizes))
    facts = fictional_facts(sizes[-1], seed=11)
    # a size that is not a multiple of the batch is measured when the batch that passes it lands
    checkpoints = {min(-(-s // batch) * batch, sizes[-1]) for s in sizes}

    def measure(mem, n):
        return {"recall": recall_rates(mem.model, mem.tokenizer, facts[:n])}

    with workdir(home, "capacity") as root:
        runs = {mode: _sequential(root, mode, facts, batch, checkpoints, measure, say) for mode in modes}
    return envelope("capacity", {"sizes": sizes, "batch": batch, "modes": modes}, {"runs": runs})


def retention(batches: int = 5, batch: int = 10, modes: tuple[str, ...] = ("nullspace", "none"),
              quick: bool = False, home: Path | None = None, progress=None) -> dict:
    """Recall of the first batch after each later batch arrives, one sequential run per constraint mode."""
    say = progress or (lambda m: None)
    if quick:
        batches, batch, modes = 2, 3, ("nullspace",)
    facts = fictional_facts(batches * batch, seed=13)

    def measure(mem, n):
        return {"first_batch": recall_rates(mem.model, mem.tokenizer, facts[:batch])}

    with workdir(home, "retention") as root:
        runs = {mode: _sequential(root, mode, facts, batch, set(range(batch, batches * batch + 1, batch)),
                                  measure, say) for mode in modes}
    return envelope("retention", {"batches": batches, "batch": batch, "modes": modes},
                    {"runs": runs})
