"""Sweeps of the wake editor's two regularisation knobs: lambda, and the sample count of the covariance C."""

from __future__ import annotations

from pathlib import Path

from ...edit.config import MemitConfig
from ...measure import perplexity, probe_answers, specificity
from ...memory import Memory
from ..data import fictional_facts
from .common import edit_in_batches, envelope, recall_rates, workdir


def _run(root: Path, name: str, facts, batch: int, baseline: dict, **settings) -> dict:
    with Memory.open(root / name, **settings) as mem:
        if not baseline:
            # every run starts from the same unedited model: its probes and perplexity are measured once
            baseline.update(probes=probe_answers(mem.model, mem.tokenizer),
                            perplexity=perplexity(mem.model, mem.tokenizer))
        seconds = edit_in_batches(mem, facts, batch)
        spec = specificity(baseline["probes"], probe_answers(mem.model, mem.tokenizer))
        ppl = perplexity(mem.model, mem.tokenizer)
        return {"recall": recall_rates(mem.model, mem.tokenizer, facts),
                "probes_unchanged": round(spec["opening_unchanged"], 3),
                "perplexity": round(ppl, 3), "perplexity_vs_base": round(ppl / baseline["perplexity"] - 1, 4),
                "seconds_per_fact": round(seconds / len(facts), 2)}


def sweeps(lambdas: tuple[float, ...] = (250.0, 1000.0, 4000.0, 15000.0), cov_samples: tuple[int, ...] = (64, 256, 1024),
           facts: int = 20, batch: int = 10, quick: bool = False, home: Path | None = None, progress=None) -> dict:
    """Recall, unchanged probe answers and perplexity after `facts` edits, per lambda and per covariance sample count.

    Lambda runs use the default covariance (256 samples); covariance runs use the default lambda.
    A new sample count samples and caches a new C first (minutes for a few hundred samples).
    """
    say = progress or (lambda m: None)
    if quick:
        lambdas, cov_samples, facts, batch = (1000.0, 15000.0), (), 3, 3
    data = fictional_facts(facts, seed=17)
    baseline: dict = {}
    out: dict = {"lambda": [], "cov_samples": []}
    with workdir(home, "sweeps") as root:
        for lam in lambdas:
            row = {"lambda": lam, **_run(root, f"lam-{lam:g}", data, batch, baseline, memit=MemitConfig(lam=lam))}
            out["lambda"].append(row)
            say(f"lambda {row}")
        for n in cov_samples:
            row = {"cov_samples": n, **_run(root, f"cov-{n}", data, batch, baseline, cov_samples=n)}
            out["cov_samples"].append(row)
            say(f"covariance {row}")
    out["perplexity_base"] = round(baseline["perplexity"], 3)
    return envelope("sweeps", {"lambdas": lambdas, "cov_samples": cov_samples, "facts": facts, "batch": batch}, out)
