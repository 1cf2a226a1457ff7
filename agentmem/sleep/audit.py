"""Which facts a night trains, asks and graduates, so that its cost follows the day's facts and not every fact
ever learned; and what recall asked of a random sample says of them all (torch-free)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ..facts import Fact

Z95 = 1.959964  # the standard normal's 97.5th percentile: a two-sided 95 % interval


@dataclass(frozen=True)
class NightPlan:
    fresh: list[str]  # new, replacing one, or not held by the adapter the night starts from: every phrasing, every check
    held: list[str]  # recalled without their edit on an earlier night, by the adapter the night starts from
    refresh: list[str]  # held facts retrained with one question each
    audited_held: list[str]  # held facts the gate asks, a draw of its own (not biased toward the refreshed ones)
    due: list[str]  # facts whose graduation is asked: not yet at the last stage, or audited (a lost one is demoted)

    @property
    def audited(self) -> list[str]:
        return self.fresh + self.audited_held


def plan_night(facts: dict[str, Fact], stage: dict[str, int], held: set[str], last_stage: int, refresh_sample: int,
               audit_sample: int, rng: random.Random) -> NightPlan:
    """The night's plan over `facts` (in their order), `held` those the starting adapter holds."""
    held_ids = [fid for fid in facts if fid in held]
    fresh = [fid for fid in facts if fid not in held]
    # held facts of a fresh fact's relation first: tonight's training pulls their questions toward its answers
    relations = {facts[fid].relation for fid in fresh}
    refresh = nearest_first(held_ids, {fid for fid in held_ids if facts[fid].relation in relations},
                            refresh_sample, rng)
    audited_held = sample(held_ids, audit_sample, rng)
    audited = set(fresh) | set(audited_held)
    due = [fid for fid in facts if stage[fid] < last_stage or fid in audited]
    return NightPlan(fresh, held_ids, refresh, audited_held, due)


def sample(ids: list[str], k: int, rng: random.Random) -> list[str]:
    """`k` of `ids` drawn at random without replacement (all of them when there are no more), in their order."""
    if k >= len(ids):
        return list(ids)
    chosen = set(rng.sample(ids, k))
    return [i for i in ids if i in chosen]


def nearest_first(ids: list[str], near: set[str], k: int, rng: random.Random) -> list[str]:
    """`k` of `ids`: those in `near` first (drawn at random when they are more), the rest drawn from the others."""
    first = sample([i for i in ids if i in near], k, rng)
    chosen = set(first) | set(sample([i for i in ids if i not in near], k - len(first), rng))
    return [i for i in ids if i in chosen]


def wilson(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion seen as `hits` of `n` (the normal interval collapses at 0 and n)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate(hits: int, asked: int, total: int) -> dict:
    """Recall of `total` facts from `hits` of `asked` drawn at random among them, with its 95 % interval."""
    recall = round(hits / asked, 4) if asked else None
    if asked == total:  # every fact was asked: nothing is estimated
        return {"recall": recall, "asked": asked, "of": total, "ci95": [recall, recall], "method": "every fact asked"}
    lo, hi = wilson(hits, asked)
    return {"recall": recall, "asked": asked, "of": total, "ci95": [round(lo, 4), round(hi, 4)],
            "method": "Wilson score interval"}
