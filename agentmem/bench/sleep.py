"""The sleep benchmark: simulated days of new facts with a night after each.

Run with `agentmem eval sleep`; it prints, per day, chat and paraphrase recall
of every fact so far, perplexity against the base model, the fraction of MEMIT
edits dissolved and the night's duration.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..measure import perplexity, recall
from ..memory import Memory
from ..serving.model_store import load
from ..storage.ledger import ACTIVE
from .data import fictional_facts


def sleep_benchmark(home: Path | None = None, days: int = 3, facts_per_day: int = 50, quick: bool = False,
                    progress=None) -> dict:
    say = progress or (lambda m: None)
    if quick:
        days, facts_per_day = 2, 6
    tmp = tempfile.TemporaryDirectory(prefix="agentmem-sleep-bench-") if home is None else None
    home = Path(tmp.name if tmp else home)
    facts = fictional_facts(days * facts_per_day, seed=31)
    out = {"days": [], "facts_per_day": facts_per_day}
    try:
        with Memory.open(home, progress=progress) as mem:
            base, tok = load(mem.model_dir)
            ppl_base = perplexity(base, tok)
            del base
            out["perplexity_base"] = round(ppl_base, 3)
            for day in range(days):
                today = facts[day * facts_per_day: (day + 1) * facts_per_day]
                t0 = time.perf_counter()
                for i in range(0, len(today), 10):
                    mem.remember(today[i: i + 10])
                wake_s = time.perf_counter() - t0
                say(f"day {day + 1}: {len(today)} facts edited in {wake_s:.0f} s; sleeping")
                night = mem.sleep()
                so_far = facts[: (day + 1) * facts_per_day]
                with mem.reading() as reader:
                    r = recall(reader, tok, so_far)
                    ppl = perplexity(reader, tok)
                active = mem.ledger.facts(status=ACTIVE)
                row = {
                    "day": day + 1, "facts_so_far": len(so_far), "wake_seconds": round(wake_s, 1),
                    "night": night["outcome"], "night_seconds": night["seconds"],
                    "chat_recall": round(r["chat"], 3), "paraphrase_recall": round(r["paraphrase"], 3),
                    "raw_recall": round(r["raw"], 3),
                    "perplexity": round(ppl, 3), "perplexity_vs_base": round(ppl / ppl_base - 1, 4),
                    "dissolved": round(sum(f["scale"] == 0 for f in active) / max(len(active), 1), 3),
                    "stage_counts": {s: sum(f["stage"] == s for f in active) for s in range(4)},
                }
                out["days"].append(row)
                say(f"day {day + 1}: {row}")
    finally:
        if tmp:
            tmp.cleanup()
    out["goals"] = {"chat_recall": 0.95, "paraphrase_recall": 0.85, "perplexity_vs_base": 0.05,
                    "night_seconds": 900}
    return out
