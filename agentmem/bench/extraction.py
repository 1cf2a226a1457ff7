"""Scoring an extractor against hand-written snippets: precision and recall of (subject, relation, object),
overall and per category (`agentmem eval extraction`)."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..extract import Both, ExtractionError, Extractor, extract_messages, make_extractor, user_turns
from ..facts import Fact
from ..serving.client import DEFAULT_URL
from ..serving.wire import MODEL_ID

DATA = Path(__file__).parents[1] / "data"
# the in-sample snippets: the rules were fixed against them
EXTRACTION_SET = DATA / "extraction.jsonl"
# written blind (by a writer who read only the conventions in agentmem/extract/__init__.py, none of the rules or
# other sets) and never tuned against: what `agentmem eval extraction` scores by default
HELDOUT_SET = DATA / "extraction-heldout2.jsonl"
# the first held-out set: its misses were listed in the README after it was scored, so it is no longer unseen
FIRST_HELDOUT_SET = DATA / "extraction-heldout.jsonl"
# the same categories, different snippets: what rule work is checked against
DEV_SET = DATA / "extraction-dev.jsonl"
# written once the rules had learned all of DEV_SET, weighted to the weak categories: rule work since
DEV2_SET = DATA / "extraction-dev2.jsonl"

GOALS = {"precision": 0.95, "recall": 0.9, "category_recall": 0.8}
NO_MODEL = "no model extractor asked for: --extractor llm (or AGENTMEM_EXTRACTOR=llm), with agentmem serve running"


def _normalised(subject: str, relation: str, obj: str) -> tuple[str, str, str]:
    words = re.sub(r"[^\w\s]", " ", obj.lower()).split()
    return subject.strip().lower(), relation.strip().lower(), " ".join(w for w in words if w not in ("a", "an", "the"))


def score(predicted: list[Fact], expected: list[dict]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives); objects compared without articles or punctuation."""
    got = Counter(_normalised(f.subject, f.relation, f.object) for f in predicted)
    want = Counter(_normalised(e["subject"], e["relation"], e["object"]) for e in expected)
    tp = sum((got & want).values())
    return tp, sum(got.values()) - tp, sum(want.values()) - tp


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    errors: list[dict] = field(default_factory=list)  # per snippet with a mistake: id, missed and spurious triples

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def add(self, other: "Score") -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn
        self.errors += other.errors

    def summary(self) -> dict:
        return {"precision": round(self.precision, 3), "recall": round(self.recall, 3),
                "tp": self.tp, "fp": self.fp, "fn": self.fn}


def score_row(row: dict, extractor: Extractor) -> Score:
    """One snippet {"id", "user_id", "messages", "expected"} scored."""
    predicted = extract_messages(row["messages"], extractor, row.get("user_id", "default"))
    tp, fp, fn = score(predicted, row["expected"])
    errors = []
    if fp or fn:
        got = {_normalised(f.subject, f.relation, f.object) for f in predicted}
        want = {_normalised(e["subject"], e["relation"], e["object"]) for e in row["expected"]}
        errors.append({"id": row.get("id"), "missed": sorted(want - got), "spurious": sorted(got - want)})
    return Score(tp, fp, fn, errors)


def score_dataset(rows: Iterable[dict], extractor: Extractor) -> Score:
    """Score an extractor on snippets (agentmem/data/extraction.jsonl's layout)."""
    total = Score()
    for row in rows:
        total.add(score_row(row, extractor))
    return total


def load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def by_category(rows: list[dict], extractor: Extractor) -> dict:
    """Precision and recall overall and per category (a row's "category"; "uncategorised" without one),
    with every snippet that had a mistake."""
    overall, categories, counts, exact = Score(), {}, Counter(), Counter()
    for row in rows:
        s = score_row(row, extractor)
        cat = row.get("category", "uncategorised")
        categories.setdefault(cat, Score()).add(s)
        counts[cat] += 1
        exact[cat] += not s.errors
        overall.add(s)
    # a category that expects no facts has recall 1.0 whatever is extracted: "exact" counts its clean snippets
    return {"overall": {"snippets": len(rows), "exact": sum(exact.values()), **overall.summary()},
            "categories": {c: {"snippets": counts[c], "exact": exact[c], **s.summary()} for c, s in categories.items()},
            "goals_met": {"precision": overall.precision >= GOALS["precision"],
                          "recall": overall.recall >= GOALS["recall"],
                          "category_recall": all(s.recall >= GOALS["category_recall"] for s in categories.values())},
            "errors": overall.errors}


def extraction_benchmark(dataset: Path = HELDOUT_SET, extractor: str = "rules", url: str | None = None,
                         model: str | None = None, concurrency: int = 4) -> dict:
    """The rule extractor on `dataset`; with a model extractor (`extractor` "llm" or "both"; by default the
    model of `agentmem serve` at 127.0.0.1:8000), also the model alone and both (the rules' object kept where
    they disagree), with the seconds per snippet (`concurrency` messages asked at once)."""
    rows = load_rows(dataset)
    rules = make_extractor("rules")
    where = f"agentmem/data/{dataset.name}" if Path(dataset).parent.resolve() == DATA.resolve() else str(dataset)
    out = {"dataset": where, "snippets": len(rows), "expected_facts": sum(len(r["expected"]) for r in rows),
           "goals": GOALS, "rules": by_category(rows, rules)}
    if extractor not in ("llm", "both"):
        out["llm"] = out["both"] = {"skipped": NO_MODEL}
        return out
    url, model = url or DEFAULT_URL, model or MODEL_ID
    llm = make_extractor("llm", url, model, timeout=600.0)
    # every message asked once, a few at once (the server batches them: on vLLM's CPU path about 3x the
    # tokens/s); a message the model could not answer gave no facts
    asked = sorted({(text, r.get("user_id", "default")) for r in rows for text in user_turns(r["messages"])})
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        got = dict(zip(asked, pool.map(lambda k: _or_error(llm, *k), asked)))
    seconds = round((time.perf_counter() - t0) / max(len(rows), 1), 3)
    failed = [str(g) for g in got.values() if isinstance(g, ExtractionError)]
    answered = Answered({k: [] if isinstance(g, ExtractionError) else g for k, g in got.items()})
    for name, ex in (("llm", answered), ("both", Both(rules, answered))):
        out[name] = {"url": url, "model": model, "seconds_per_snippet": seconds, "concurrency": concurrency,
                     "failed_messages": len(failed), "first_failure": failed[0] if failed else None,
                     **by_category(rows, ex)}
    return out


class Answered:
    """The model's answers, asked beforehand, as an extractor."""

    def __init__(self, answers: dict[tuple[str, str], list[Fact]]):
        self.answers = answers

    def extract(self, text: str, user_id: str = "default") -> list[Fact]:
        return self.answers[(text, user_id)]


def _or_error(extractor: Extractor, text: str, user_id: str):
    try:
        return extractor.extract(text, user_id)
    except ExtractionError as e:
        return e
