"""Measuring memories: recall (raw, chat, paraphrase), specificity, perplexity, CounterFact, and the wake benchmark."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import generate
from .benchdata import HELDOUT, PROBE_TRUTHS, UNRELATED_CHAT, UNRELATED_RAW, fictional_facts
from .consolidate import pad_rows
from .facts import Fact


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
    if len(before) != len(after) or len(before) != len(truths):
        raise ValueError(f"{len(before)} answers before, {len(after)} after and {len(truths)} truths: "
                         "they must be the same probes in the same order")
    same = sum(a == b for a, b in zip(before, after))
    same_open = sum(_opening(a) == _opening(b) for a, b in zip(before, after))
    changed = [{"before": a, "after": b} for a, b in zip(before, after) if a != b]
    right = [i for i, t in enumerate(truths) if t and _right(before[i], t)]
    lost = [{"before": before[i], "after": after[i]} for i in right if not _right(after[i], truths[i])]
    return {"unchanged": same / len(before), "opening_unchanged": same_open / len(before),
            "right_before": len(right), "right_kept": (len(right) - len(lost)) / max(len(right), 1),
            "n": len(before), "changed": changed, "right_lost": lost}


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


# -- CounterFact ------------------------------------------------------------

def counterfact_facts(records: list[dict]) -> list[Fact]:
    facts = []
    for r in records:
        subj = r["subject"]
        if subj not in r["prompt"]:
            continue
        facts.append(Fact(
            subject=subj, object=r["target_new"].strip(),
            relation=r["prompt"].replace(subj, "").strip(),
            prompt=r["prompt"].replace(subj, "{subject}", 1), id=f"cf{r['_i']}",
        ))
    return facts


@torch.no_grad()
def _seq_logprob(model, tok, prompt: str, target: str) -> float:
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    t = tok(" " + target.strip(), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + t], device=model.device)
    logp = F.log_softmax(model(input_ids=ids, use_cache=False).logits[0], -1)
    return sum(logp[len(p) + i - 1, t[i]].item() for i in range(len(t))) / len(t)


@torch.no_grad()
def _teacher_forced_argmax(model, tok, prompt: str, answer: str) -> list[int]:
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    a = tok(" " + answer.strip(), add_special_tokens=False)["input_ids"]
    logits = model(input_ids=torch.tensor([p + a], device=model.device), use_cache=False).logits[0]
    return logits[len(p) - 1 : len(p) + len(a) - 1].argmax(-1).tolist()


def counterfact_scores(model, tok, records: list[dict], locality_before: list[list[int]]) -> dict:
    eff = gen = spec = 0.0
    for r, before in zip(records, locality_before):
        eff += _seq_logprob(model, tok, r["prompt"], r["target_new"]) > _seq_logprob(model, tok, r["prompt"], r["ground_truth"])
        gen += _seq_logprob(model, tok, r["rephrase_prompt"], r["target_new"]) > _seq_logprob(
            model, tok, r["rephrase_prompt"], r["ground_truth"])
        after = _teacher_forced_argmax(model, tok, r["locality_prompt"], r["locality_ground_truth"])
        spec += sum(x == y for x, y in zip(before, after)) / len(before)
    n = len(records)
    return {"efficacy": eff / n, "generalisation": gen / n, "specificity": spec / n, "n": n}


def run_counterfact(records: list[dict], constraints: str, batch: int, home: Path, model, progress=None) -> dict:
    from .memit import MemitConfig
    from .memory import Memory

    for i, r in enumerate(records):
        r["_i"] = i
    facts = counterfact_facts(records)
    kept = [r for r in records if r["subject"] in r["prompt"]]
    with Memory.open(home, model=model, memit=MemitConfig(constraints=constraints)) as mem:
        loc = [_teacher_forced_argmax(mem.model, mem.tokenizer, r["locality_prompt"], r["locality_ground_truth"])
               for r in kept]
        t0 = time.perf_counter()
        for i in range(0, len(facts), batch):
            mem.remember(facts[i : i + batch])
            if progress:
                progress(f"counterfact ({constraints}): {min(i + batch, len(facts))}/{len(facts)} edited")
        seconds = time.perf_counter() - t0
        scores = counterfact_scores(mem.model, mem.tokenizer, kept, loc)
    return {**scores, "constraints": constraints, "batch": batch, "edit_seconds": round(seconds, 1)}


# -- the wake benchmark -----------------------------------------------------

def wake_benchmark(mem, quick: bool, say) -> dict:
    """Speed per batch size, recall, specificity and perplexity drift on fictional facts."""
    m, tok = mem.model, mem.tokenizer
    sizes = (1, 4) if quick else (1, 10, 50)
    total = 8 if quick else 100
    out: dict = {"model": str(mem.model_dir), "edit_layers": mem.editor.layers}
    nll0 = text_nll(m, tok)
    probes0 = probe_answers(m, tok)
    facts = fictional_facts(total + sum(sizes), seed=1)
    used, speed, batches = 0, {}, {}
    for b in sizes:
        chunk = facts[used : used + b]
        t0 = time.perf_counter()
        mem.remember(chunk)
        speed[str(b)] = round((time.perf_counter() - t0) / b, 3)
        batches[b] = chunk
        used += b
        say(f"batch {b}: {speed[str(b)]} s/fact")
    out["seconds_per_fact"] = speed
    mid = sizes[1]
    out["recall_batch"] = recall(m, tok, batches[mid])
    out["specificity_after_first_batches"] = specificity(probes0, probe_answers(m, tok))
    while used < total:
        mem.remember(facts[used : used + mid])
        used += mid
        say(f"{used}/{total} facts edited")
    out["facts_edited"] = used
    out["perplexity"] = drift(nll0, text_nll(m, tok))
    out["recall_all"] = recall(m, tok, facts[:used])
    out["specificity_after_all"] = specificity(probes0, probe_answers(m, tok))
    for r in (out["recall_batch"], out["recall_all"]):
        r["misses"] = r["misses"][:5]
    return out


def edit_benchmark(home=None, model=None, counterfact=None, records: int = 200, quick: bool = False,
                   progress=None, modes: tuple[str, ...] = ("nullspace", "none", "alphaedit"),
                   wake: bool = True) -> dict:
    """Everything the wake-editor issue asks to be measured, as one JSON-serialisable dict."""
    from .memory import Memory

    say = progress or (lambda m: None)
    out: dict = {"machine": {"threads": torch.get_num_threads()}, "quick": quick}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(home) if home else Path(tmp)
        if wake:
            with Memory.open(root / "wake", model=model, progress=say) as mem:
                out.update(wake_benchmark(mem, quick, say))
        if counterfact:
            data = json.loads(Path(counterfact).read_text())[: (6 if quick else records)]
            out["counterfact"] = {
                mode: run_counterfact([dict(r) for r in data], mode, 10, root / f"cf-{mode}", model, say)
                for mode in modes
            }
    return out
