"""CounterFact applied sequentially in batches: efficacy, generalisation, specificity and fluency per editing mode.

Modes: "none" is MEMIT without cross-edit constraints, "alphaedit" the AlphaEdit
null-space projection, "nullspace" ours (earlier edits' keys held as constraints).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from .. import generate
from ..evaluate import perplexity, run_counterfact
from ..memory import Memory
from ..model_store import load
from .common import envelope, workdir

DEFAULT_DATA = Path("../shared/data/counterfact-2k.json")


def ngram_entropy(text: str, ns: tuple[int, ...] = (2, 3), weights: tuple[float, ...] = (2 / 3, 4 / 3)) -> float:
    """ROME's fluency measure: weighted entropy of a text's bigram and trigram distributions.

    Text that loops on a few words scores low; varied text scores high.
    """
    words = text.split()
    total = 0.0
    for n, w in zip(ns, weights):
        grams = Counter(tuple(words[i: i + n]) for i in range(len(words) - n + 1))
        count = sum(grams.values())
        total += w * -sum(c / count * math.log2(c / count) for c in grams.values()) if count else 0.0
    return total / len(ns)


def fluency(model, tok, prompts: list[str], tokens: int = 48) -> float:
    texts = generate.complete_many(model, tok, prompts, tokens)
    return round(sum(ngram_entropy(t) for t in texts) / max(len(texts), 1), 3)


def counterfact(records: int = 1000, batch: int = 10, modes: tuple[str, ...] = ("none", "alphaedit", "nullspace"),
                data: Path = DEFAULT_DATA, quick: bool = False, home: Path | None = None, progress=None) -> dict:
    """Each mode edits the first `records` records in sequential batches; scores are taken after the last batch."""
    say = progress or (lambda m: None)
    if quick:
        records, batch, modes = 4, 4, ("nullspace",)
    rows = json.loads(Path(data).read_text())[:records]
    prompts = [r["prompt"] for r in rows]
    out: dict = {"modes": {}}
    with workdir(home, "counterfact") as root:
        for mode in modes:
            scores = run_counterfact([dict(r) for r in rows], mode, batch, root / f"cf-{mode}", None, say)
            # run_counterfact closes its memory; opening it again loads the edited weights
            with Memory.open(root / f"cf-{mode}") as mem:
                if "base" not in out:
                    base, _ = load(mem.model_dir)
                    out["base"] = {"fluency": fluency(base, mem.tokenizer, prompts),
                                   "perplexity": round(perplexity(base, mem.tokenizer), 3)}
                    del base
                scores.update(fluency=fluency(mem.model, mem.tokenizer, prompts),
                              perplexity=round(perplexity(mem.model, mem.tokenizer), 3))
            out["modes"][mode] = scores
            say(f"counterfact {mode}: {scores}")
    return envelope("counterfact", {"records": records, "batch": batch, "modes": modes, "data": str(data)}, out)
