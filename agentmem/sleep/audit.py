"""The night's fixed-size samples of held facts, and what recall measured on a sample says of them all (torch-free)."""

from __future__ import annotations

import math
import random

Z95 = 1.959964  # the standard normal's 97.5th percentile: a two-sided 95 % interval


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
