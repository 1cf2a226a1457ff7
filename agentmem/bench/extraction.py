"""Scoring an extractor against hand-written snippets: precision and recall of (subject, relation, object)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from ..extract import Extractor, extract_messages
from ..facts import Fact


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
    tp: int
    fp: int
    fn: int
    errors: list[dict]  # per snippet with a mistake: id, missed and spurious triples

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def score_dataset(rows: Iterable[dict], extractor: Extractor) -> Score:
    """Score an extractor on snippets {"id", "user_id", "messages", "expected"} (tests/data/extraction.jsonl)."""
    total = Score(0, 0, 0, [])
    for row in rows:
        predicted = extract_messages(row["messages"], extractor, row.get("user_id", "default"))
        tp, fp, fn = score(predicted, row["expected"])
        total.tp, total.fp, total.fn = total.tp + tp, total.fp + fp, total.fn + fn
        if fp or fn:
            got = {_normalised(f.subject, f.relation, f.object) for f in predicted}
            want = {_normalised(e["subject"], e["relation"], e["object"]) for e in row["expected"]}
            total.errors.append({"id": row.get("id"), "missed": sorted(want - got), "spurious": sorted(got - want)})
    return total
