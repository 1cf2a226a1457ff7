"""CounterFact applied sequentially in batches: efficacy, generalisation, specificity and fluency per editing mode.

Modes: "none" is MEMIT without cross-edit constraints, "alphaedit" the AlphaEdit
null-space projection, "nullspace" ours (earlier edits' keys held as constraints).
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

from ...measure import perplexity
from ...memory import Memory
from ...serving import generate
from ...serving.model_store import load
from ...storage.atomic import write_json
from ..edit import run_counterfact
from ..machine import revision
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
    """Each mode edits the first `records` records in sequential batches; scores are taken after the last batch.

    With a kept `home`, each finished mode's scores are saved there beside the sizes they were measured at, and a
    later run with the same sizes reuses them: a run of hours that stops loses only the mode it was in, and modes
    can run as separate processes (`--modes none --home H`, ...) before one run with all of them writes the report.
    """
    say = progress or (lambda m: None)
    if quick:
        records, batch, modes = 4, 4, ("nullspace",)
    rows = json.loads(Path(data).read_text())[:records]
    prompts = [r["prompt"] for r in rows]
    sizes = {"records": records, "batch": batch, "data": str(data)}
    out: dict = {"modes": {}}
    with workdir(home, "counterfact") as root:
        base_file = root / "cf-base.json"
        if _saved(base_file, sizes):
            out["base"] = _saved(base_file, sizes)
        for mode in modes:
            done = root / f"cf-{mode}.json"
            if _saved(done, sizes):
                out["modes"][mode] = _saved(done, sizes)
                say(f"counterfact {mode}: reusing the scores saved in {done}")
                continue
            # a memory left by a run that stopped mid-mode holds part of the edits: start it again from the base
            shutil.rmtree(root / f"cf-{mode}", ignore_errors=True)
            scores = run_counterfact([dict(r) for r in rows], mode, batch, root / f"cf-{mode}", None, say)
            # run_counterfact closes its memory; opening it again loads the edited weights
            with Memory.open(root / f"cf-{mode}") as mem:
                if "base" not in out:
                    base, _ = load(mem.model_dir)
                    out["base"] = {"fluency": fluency(base, mem.tokenizer, prompts),
                                   "perplexity": round(perplexity(base, mem.tokenizer), 3)}
                    del base
                    write_json(base_file, {"sizes": sizes, "scores": out["base"]})
                scores.update(fluency=fluency(mem.model, mem.tokenizer, prompts),
                              perplexity=round(perplexity(mem.model, mem.tokenizer), 3), git=revision())
            write_json(done, {"sizes": sizes, "scores": scores})
            out["modes"][mode] = scores
            say(f"counterfact {mode}: {scores}")
    return envelope("counterfact", {"records": records, "batch": batch, "modes": modes, "data": str(data)}, out)


def _saved(path: Path, sizes: dict) -> dict | None:
    """Scores an earlier run saved at `path`, if it ran at the same sizes."""
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    return saved["scores"] if saved.get("sizes") == sizes else None
