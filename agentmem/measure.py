"""Measuring a memory: recall (raw, chat, paraphrase), specificity on unrelated probes, perplexity and its drift.

The probes and the held-out texts live here, so the tests, the sleep gate and `agentmem eval` measure the same thing.
"""

from __future__ import annotations

import json
import math
from importlib.resources import files

import torch
import torch.nn.functional as F

from .facts import Fact
from .serving import generate
from .serving.generate import pad_rows

# Chat questions and raw prompts about other people and the world: an edit must not change their answers.
UNRELATED_CHAT = [
    "What is the capital of France?", "Who wrote Hamlet?", "Where does Tom Hanks live?",
    "What is the largest planet in the solar system?", "Who painted the Mona Lisa?",
    "What language is spoken in Brazil?", "Where was Albert Einstein born?", "What is the boiling point of water?",
    "Where does Maria Lopez work?", "What instrument does Yo-Yo Ma play?",
]

UNRELATED_RAW = [
    "The capital of France is", "The Eiffel Tower is located in", "Barack Obama was born in",
    "The largest ocean on Earth is the", "Water is made of hydrogen and", "Michael Jordan played",
    "Anna Kowalski lives in", "John Smith works at", "The official language of Japan is", "Paris is the capital of",
]

# What a right answer to each probe names (any of), in the order probe_answers gives them; None where the
# person is unknown or made up. Exact answers flip on near-ties (several probes' greedy paths have a token
# whose runner-up is within 0.01 nats), so whether a right answer stays right is measured beside them.
PROBE_TRUTHS: list[tuple[str, ...] | None] = [
    ("Paris",), ("Shakespeare",), None, ("Jupiter",), ("Leonardo", "da Vinci"), ("Portuguese",),
    ("Ulm", "Germany"), ("100",), None, ("cello",),
    ("Paris",), ("Paris",), ("Hawaii", "Honolulu"), ("Pacific",), ("oxygen",), ("basketball",), None, None,
    ("Japanese",), ("France",),
]

# World knowledge for "right answers kept": 293 chat questions and 210 raw prompts, each with what a right answer
# names (any of). The 16 probes with truths above are too few to tell 0.95 from 0.89 (one answer of 9); these were
# written on 2026-12-06 before any edit was measured against them (the first 223; the other 280 later that day,
# when one probe of a half was too coarse to compare small nights), and share no question with a night's replay.
KNOWLEDGE = [json.loads(line) for line in (files("agentmem") / "data" / "knowledge.jsonl").read_text().splitlines()]
# The night gate asks (and its settings were tuned on) the development half; the held-out half is only scored.
DEV_HALF, HELDOUT_HALF = slice(0, None, 2), slice(1, None, 2)
KNOWLEDGE_DEV, KNOWLEDGE_HELDOUT = KNOWLEDGE[DEV_HALF], KNOWLEDGE[HELDOUT_HALF]


# Held-out text for perplexity: never used for covariance (which is model-sampled) or editing. One text a
# line; the first 16 were the whole set until 2026-12-02. 166 texts (2,714 tokens) because a drift of a few
# per cent is within what 16 sentences' sampling error allows (see drift).
HELDOUT = (files("agentmem") / "data" / "heldout.txt").read_text().splitlines()


def contains(answer: str, obj: str) -> bool:
    return obj.lower() in answer.lower()


def recall(model, tok, facts: list[Fact]) -> dict:
    """Fractions of facts whose object appears in the raw completion, the chat answer, and a paraphrase answer."""
    raws = generate.complete_many(model, tok, [f.completion_prompt for f in facts], 8)
    chats = generate.chat_many(model, tok, [f.questions()[0] for f in facts], 32)
    paras = generate.chat_many(model, tok, [f.paraphrases()[0] for f in facts], 32)
    raw = chat = para = 0
    misses = []
    for f, r, c, p in zip(facts, raws, chats, paras):
        hits = contains(r, f.object), contains(c, f.object), contains(p, f.object)
        raw, chat, para = raw + hits[0], chat + hits[1], para + hits[2]
        if not all(hits):
            misses.append({"fact": f.statement, "raw": r, "chat": c, "paraphrase": p})
    n = max(len(facts), 1)
    return {"raw": raw / n, "chat": chat / n, "paraphrase": para / n, "n": len(facts), "misses": misses}


def recalled(r: dict, facts: list[Fact], kind: str) -> list[bool]:
    """Per fact of `facts` (those a `recall` result `r` asked, or some of them): whether its `kind` answer
    ("raw", "chat" or "paraphrase") named the object."""
    missed = {m["fact"]: m[kind] for m in r["misses"]}
    return [f.statement not in missed or contains(missed[f.statement], f.object) for f in facts]


def probe_answers(model, tok) -> list[str]:
    """Greedy answers to the unrelated probes: an edit must leave them as they were."""
    return generate.chat_many(model, tok, UNRELATED_CHAT, 20) + generate.complete_many(model, tok, UNRELATED_RAW, 10)


def _opening(text: str, words: int = 8) -> str:
    return " ".join(text.split()[:words])


def _right(answer: str, truth: tuple[str, ...]) -> bool:
    return any(contains(answer, t) for t in truth)


def specificity(before: list[str], after: list[str], truths: list[tuple[str, ...] | None] = PROBE_TRUTHS) -> dict:
    """How many probe answers stayed the same: whole (20 greedy tokens) and in their opening words;
    and of those the unedited model answered right, how many are still right.

    Exact equality over 20 greedy tokens flips on tiny logit changes late in an
    answer; the opening (first 8 words) is what carries the answer a user reads,
    and a right answer turned wrong is the damage a user notices.
    """
    right, lost = _right_lost(before, after, truths)
    same = sum(a == b for a, b in zip(before, after))
    same_open = sum(_opening(a) == _opening(b) for a, b in zip(before, after))
    changed = [{"before": a, "after": b} for a, b in zip(before, after) if a != b]
    return {"unchanged": same / len(before), "opening_unchanged": same_open / len(before),
            "right_before": len(right), "right_kept": (len(right) - len(lost)) / max(len(right), 1),
            "n": len(before), "changed": changed,
            "right_lost": [{"before": before[i], "after": after[i]} for i in lost]}


def _right_lost(before: list[str], after: list[str], truths: list) -> tuple[list[int], list[int]]:
    """The probes answered right `before` (a truth of None: no right answer is known), and those of them
    no longer right `after`."""
    if len(before) != len(after) or len(before) != len(truths):
        raise ValueError(f"{len(before)} answers before, {len(after)} after and {len(truths)} truths: "
                         "they must be the same probes in the same order")
    right = [i for i, t in enumerate(truths) if t and _right(before[i], t)]
    return right, [i for i in right if not _right(after[i], truths[i])]


def knowledge_answers(model, tok, probes: list[dict] = KNOWLEDGE) -> list[str]:
    """Greedy answers to the knowledge probes, in their order: chat questions in 20 tokens, raw prompts in 10."""
    chat = [i for i, p in enumerate(probes) if not p["raw"]]
    raw = [i for i, p in enumerate(probes) if p["raw"]]
    out = [""] * len(probes)
    for idx, answers in ((chat, generate.chat_many(model, tok, [probes[i]["ask"] for i in chat], 20)),
                         (raw, generate.complete_many(model, tok, [probes[i]["ask"] for i in raw], 10))):
        for i, a in zip(idx, answers):
            out[i] = a
    return out


def knowledge_kept(before: list[str], after: list[str], probes: list[dict] = KNOWLEDGE) -> dict:
    """Of the knowledge probes answered right `before` (the unedited model), how many are still right `after`."""
    right, lost = _right_lost(before, after, [p["truth"] for p in probes])
    return {"right_before": len(right), "right_kept": (len(right) - len(lost)) / max(len(right), 1),
            "n": len(probes),
            "right_lost": [{"ask": probes[i]["ask"], "before": before[i], "after": after[i]} for i in lost]}


@torch.no_grad()
def text_nll(model, tok, texts: list[str] = HELDOUT, batch: int = 16) -> list[tuple[float, int]]:
    """Each text's summed next-token NLL and the number of tokens it was taken over.

    Texts of about the same length run together (right-padded, masked): the held-out texts are short,
    and one forward pass each spent most of its time outside the arithmetic.
    """
    rows = [torch.tensor(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for b in range(0, len(order), batch):
        idx = order[b: b + batch]
        ids, mask, labels = pad_rows([(rows[i], 0) for i in idx], tok.pad_token_id or 0, model.device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
        nll = F.cross_entropy(logits.transpose(1, 2), labels[:, 1:], reduction="none")  # padding: -100, 0 here
        for r, i in enumerate(idx):
            out[i] = (nll[r].sum().item(), len(rows[i]) - 1)
    return out


def perplexity(model, tok, texts: list[str] = HELDOUT) -> float:
    per = text_nll(model, tok, texts)
    return math.exp(sum(n for n, _ in per) / sum(c for _, c in per))


def drift(before: list[tuple[float, int]], after: list[tuple[float, int]], resamples: int = 2000) -> dict:
    """Perplexity before and after, and its change, from two `text_nll` results of the same texts,
    with a 95 % interval for the change.

    The interval resamples whole texts (their tokens are not independent): it says how far the
    drift on other text like this could be from the drift measured here. On 16 sentences (263
    tokens) that is several per cent either way, too wide to check a +1 % goal.
    """
    if len(before) != len(after) or [c for _, c in before] != [c for _, c in after]:
        raise ValueError("drift compares the same texts before and after: their token counts differ")
    nll0, nll1, count = (torch.tensor(col, dtype=torch.float64) for col in
                         ([n for n, _ in before], [n for n, _ in after], [c for _, c in before]))

    def ratio(rows: torch.Tensor) -> torch.Tensor:
        return torch.exp((nll1[rows].sum(-1) - nll0[rows].sum(-1)) / count[rows].sum(-1)) - 1

    picks = torch.randint(0, len(before), (resamples, len(before)), generator=torch.Generator().manual_seed(0))
    lo, hi = torch.quantile(ratio(picks), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"before": round(math.exp(nll0.sum() / count.sum()), 3), "after": round(math.exp(nll1.sum() / count.sum()), 3),
            "drift": round(ratio(torch.arange(len(before))).item(), 4), "interval_95": [round(lo, 4), round(hi, 4)],
            "texts": len(before), "tokens": int(count.sum())}
