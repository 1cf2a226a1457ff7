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
from ..measure import drift, probe_answers, recall, specificity, text_nll
from ..memory import Memory
from .data import fictional_facts


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


def edit_benchmark(home=None, model=None, counterfact=None, records: int = 200, quick: bool = False,
                   progress=None, modes: tuple[str, ...] = ("nullspace", "none", "alphaedit"),
                   wake: bool = True) -> dict:
    """Everything the wake-editor issue asks to be measured, as one JSON-serialisable dict."""
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
