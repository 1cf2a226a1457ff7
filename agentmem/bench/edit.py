"""`agentmem eval edit`: the wake benchmark (speed, recall, specificity, drift) and CounterFact."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..edit.config import MemitConfig
from ..facts import Fact
from ..measure import (HELDOUT_HALF, KNOWLEDGE_HELDOUT, drift, knowledge_answers, knowledge_kept, probe_answers, recall,
                       recalled, specificity, text_nll)
from ..sleep.audit import wilson
from ..memory import Memory
from .data import fictional_facts
from .machine import machine


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


# The wake editor's goals for the facts of one day (issue 39): it only has to carry them until the night.
DAY_GOALS = {"chat": 0.95, "paraphrase": 0.8, "first_batch_chat": 0.95, "right_kept": 0.95, "drift": 0.03,
             "drift_after_night": 0.01, "seconds_per_fact": 1.0}
# fictional_facts seeds for the day window, apart from seed 1 (wake_benchmark's, which the editor was tuned on)
DAY_SEEDS = 101


def day_window(mem, facts: list[Fact], batch: int, night: bool, say) -> dict:
    """One day's facts edited in batches into a fresh memory, measured at the end of the day (and after a
    night): recall of them all, of the first batch, probes kept right, perplexity drift, seconds per fact."""
    m, tok = mem.model, mem.tokenizer
    nll0, known0 = text_nll(m, tok), knowledge_answers(m, tok)
    t0 = time.perf_counter()
    for i in range(0, len(facts), batch):
        mem.remember(facts[i: i + batch])
        say(f"day window: {min(i + batch, len(facts))}/{len(facts)} edited")
    seconds = (time.perf_counter() - t0) / len(facts)
    day = recall(m, tok, facts)
    first = recalled(day, facts[:batch], "chat")
    out = {"facts": len(facts), "batch": batch, "seconds_per_fact": round(seconds, 3),
           "chat": round(day["chat"], 3), "paraphrase": round(day["paraphrase"], 3), "raw": round(day["raw"], 3),
           "first_batch_chat": round(sum(first) / len(first), 3),
           **_kept(known0, knowledge_answers(m, tok)),
           "drift": drift(nll0, text_nll(m, tok))["drift"], "misses": day["misses"][:5]}
    if night:
        out["night"] = mem.sleep()["outcome"]
        with mem.reading() as reader:
            after = recall(reader, tok, facts)
            kept = _kept(known0, knowledge_answers(reader, tok))
            out.update(chat_after_night=round(after["chat"], 3), paraphrase_after_night=round(after["paraphrase"], 3),
                       drift_after_night=drift(nll0, text_nll(reader, tok))["drift"],
                       right_kept_after_night=kept["right_kept"], right_kept_ci95_after_night=kept["right_kept_ci95"],
                       right_kept_heldout_after_night=kept["right_kept_heldout"])
    return out


def _kept(before: list[str], after: list[str]) -> dict:
    """Right answers kept on the knowledge probes, with how many the figure rests on and its 95 % interval,
    and on the held-out half alone (the night gate asks, and was tuned on, the other)."""
    k = knowledge_kept(before, after)
    kept = k["right_before"] - len(k["right_lost"])
    held = knowledge_kept(before[HELDOUT_HALF], after[HELDOUT_HALF], KNOWLEDGE_HELDOUT)
    return {"right_kept": round(k["right_kept"], 3), "right_of": k["right_before"],
            "right_kept_ci95": [round(x, 3) for x in wilson(kept, k["right_before"])],
            "right_kept_heldout": round(held["right_kept"], 3), "right_lost": [x["ask"] for x in k["right_lost"]]}


def _spread(runs: list[dict]) -> dict:
    """Mean, lowest and highest of each figure over the seeds."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and k not in ("facts", "batch", "seed")]
    return {k: {"mean": round(sum(r[k] for r in runs) / len(runs), 4), "min": min(r[k] for r in runs),
                "max": max(r[k] for r in runs)} for k in keys}


def _met(summary: dict) -> dict:
    """Each goal against the worst seed: recall and kept answers at their lowest reach it, drift and seconds
    at their highest stay under it."""
    low = ("drift", "drift_after_night", "seconds_per_fact")
    return {k: (summary[k]["max"] <= goal if k in low else summary[k]["min"] >= goal)
            for k, goal in DAY_GOALS.items() if k in summary}


def day_benchmark(root: Path, model=None, facts: int = 50, batch: int = 10, seeds: int = 5, night: bool = False,
                  say=lambda m: None) -> dict:
    """The day window on `seeds` sets of fresh facts, each in a memory of its own (sharing the first one's
    cache: the covariance takes minutes)."""
    runs, shared = [], {}
    for s in range(seeds):
        with Memory.open(root / f"day-{s}", model=model, progress=say, **shared) as mem:
            shared["cache"] = mem.settings.cache_dir
            runs.append({"seed": DAY_SEEDS + s, **day_window(mem, fictional_facts(facts, seed=DAY_SEEDS + s), batch,
                                                             night, say)})
        say(f"day window, seed {DAY_SEEDS + s}: {({k: v for k, v in runs[-1].items() if k != 'misses'})}")
    summary = _spread(runs)
    return {"runs": runs, "summary": summary, "goals": DAY_GOALS, "met": _met(summary)}


def edit_benchmark(home=None, model=None, counterfact=None, records: int = 200, quick: bool = False,
                   progress=None, modes: tuple[str, ...] = ("nullspace", "none", "alphaedit"),
                   wake: bool = True, seeds: int = 0, day_facts: int = 50, night: bool = False) -> dict:
    """Everything the wake-editor issue asks to be measured, as one JSON-serialisable dict."""
    say = progress or (lambda m: None)
    out: dict = {"quick": quick}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(home) if home else Path(tmp)
        if wake:
            with Memory.open(root / "wake", model=model, progress=say) as mem:
                out.update(wake_benchmark(mem, quick, say))
        if seeds:
            out["day_window"] = day_benchmark(root, model, day_facts, 10, seeds, night, say)
        if counterfact:
            data = json.loads(Path(counterfact).read_text())[: (6 if quick else records)]
            out["counterfact"] = {
                mode: run_counterfact([dict(r) for r in data], mode, 10, root / f"cf-{mode}", model, say)
                for mode in modes
            }
    return {**out, "machine": machine()}  # taken at the end: its "finished" is when the run ended
