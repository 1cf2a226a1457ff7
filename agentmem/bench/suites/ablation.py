"""The dual-system ablation: MEMIT only, LoRA only and both, on the same facts.

One memory edits the facts and sleeps once. The night trains its adapter on the
base model (sleep/night.py never trains on edited weights), so that adapter served on
the unedited model is exactly the LoRA-only system, and no second training run
is needed.
"""

from __future__ import annotations

import time
from pathlib import Path

from ...measure import contains, perplexity
from ...memory import Memory
from ...serving import generate
from ...serving.replica import Replica
from ...storage import published
from ..data import fictional_facts
from .common import edit_in_batches, envelope, recall_rates, workdir


def _first_answer_seconds(model, tok, fact) -> tuple[float, bool]:
    t0 = time.perf_counter()
    answer = generate.chat_many(model, tok, fact.questions(), 32)[0]
    return time.perf_counter() - t0, contains(answer, fact.object)


def ablation(facts: int = 10, batch: int = 10, sleep: bool = True, quick: bool = False, home: Path | None = None,
             progress=None) -> dict:
    """Time to first recall, recall right away, recall after one night and perplexity for each system.

    Time to first recall: from the first fact's write starting to a correct chat
    answer about it (for LoRA only, the night's preparation and training is that write).
    """
    say = progress or (lambda m: None)
    if quick:
        facts, batch, sleep = 3, 3, False
    data = fictional_facts(facts, seed=41)
    systems: dict = {}
    with workdir(home, "ablation") as root, Memory.open(root / "dual") as mem:
        tok = mem.tokenizer
        base_recall = recall_rates(mem.model, tok, data)
        ppl_base = perplexity(mem.model, tok)
        t0 = time.perf_counter()
        mem.remember(data[:1])
        write_s = time.perf_counter() - t0
        answer_s, ok = _first_answer_seconds(mem.model, tok, data[0])
        edit_s = write_s + edit_in_batches(mem, data[1:], batch)
        wake = {"time_to_first_recall_s": round(write_s + answer_s, 1) if ok else None,
                "recall_right_away": recall_rates(mem.model, tok, data),
                "perplexity_right_away": round(perplexity(mem.model, tok), 3),
                "write_seconds": round(edit_s, 1)}
        systems["memit_only"] = {**wake, "recall_after_sleep": None, "perplexity_after_sleep": None}
        say(f"MEMIT only: {systems['memit_only']}")
        if sleep:
            night = mem.sleep()
            say(f"night: {night['outcome']} in {night['seconds']} s")
            with mem.reading() as reader:
                systems["both"] = {**wake, "recall_after_sleep": recall_rates(reader, tok, data),
                                   "perplexity_after_sleep": round(perplexity(reader, tok), 3),
                                   "night": night["outcome"], "night_seconds": night["seconds"]}
            say(f"both: {systems['both']}")
            pub = published.newest(mem.layout, mem.ledger)
            if pub is not None and pub.adapter_dir is not None:
                lora = Replica(mem.model_dir, mem.settings.device)
                lora.set_adapter("lora-only", pub.adapter_dir)
                train_s = night["parts"]["prepare"]["seconds"] + night["parts"]["training"]["seconds"]
                answer_s, ok = _first_answer_seconds(lora.net, tok, data[0])
                systems["lora_only"] = {
                    "time_to_first_recall_s": round(train_s + answer_s, 1) if ok else None,
                    "recall_right_away": base_recall, "perplexity_right_away": round(ppl_base, 3),
                    "recall_after_sleep": recall_rates(lora.net, tok, data),
                    "perplexity_after_sleep": round(perplexity(lora.net, tok), 3),
                    "write_seconds": round(train_s, 1)}
                say(f"LoRA only: {systems['lora_only']}")
    return envelope("ablation", {"facts": facts, "batch": batch, "sleep": sleep},
                    {"base": {"recall": base_recall, "perplexity": round(ppl_base, 3)}, "systems": systems})
