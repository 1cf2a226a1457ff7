"""A simulated week: facts arrive each day and a night consolidates them; recall and perplexity per day."""

from __future__ import annotations

from pathlib import Path

from ...measure import KNOWLEDGE
from ..sleep import sleep_benchmark
from .common import envelope


def week(days: int = 7, facts_per_day: int = 20, quick: bool = False, home: Path | None = None,
         progress=None, resume: bool = False, probes: list[dict] = KNOWLEDGE) -> dict:
    """sleep_benchmark's days (recall, held-out paraphrase recall, perplexity, dissolved edits, night time and
    work); `resume` continues the run saved in `home` from its last finished day."""
    if quick:
        days, facts_per_day = 1, 3
    result = sleep_benchmark(home=home, days=days, facts_per_day=facts_per_day, progress=progress, resume=resume,
                             probes=probes)
    return envelope("week", {"days": days, "facts_per_day": facts_per_day}, result)
