"""Adapter capacity: how many facts one night's LoRA adapter holds, by rank, asked of the adapter alone.

Each point trains a fresh adapter on the first N facts with a night's data (every phrasing, replay, the
model's own text) at one rank, then asks its chat question (trained) and its held-out paraphrase (not) of the
base model with only that adapter merged. The facts are nested, so a larger N holds every smaller one's.
alpha stays SleepConfig's 16 at every rank: with Adam, a LoRA's change grows about as alpha (each of the rank's
directions moves about as fast, and peft scales their sum by alpha / rank), so every rank learns at the same
speed and only the room it has changes.
"""

from __future__ import annotations

import time
from pathlib import Path

from ...config import Settings
from ...measure import perplexity
from ...serving.model_store import load, resolve
from ...sleep.config import SleepConfig
from ...sleep.train import night_examples, train_adapter
from ..data import fictional_facts
from ..run_state import RunState
from .common import envelope, recall_rates, workdir


def _adapter_parameters(folder: Path) -> int:
    from safetensors.torch import load_file

    return sum(t.numel() for t in load_file(str(folder / "adapter_model.safetensors")).values())


def _point(model_dir: Path, facts, cfg: SleepConfig, dest: Path, say) -> dict:
    model, tok = load(model_dir)
    examples, counts = night_examples(model, tok, cfg, facts, [], [])
    t0 = time.perf_counter()
    training = train_adapter(model, tok, examples, cfg, dest, progress=say)
    seconds = round(time.perf_counter() - t0, 1)
    del model
    from peft import PeftModel

    model, tok = load(model_dir)
    alone = PeftModel.from_pretrained(model, str(dest)).merge_and_unload()
    return {"rank": cfg.rank, "facts": len(facts), "parameters": _adapter_parameters(dest),
            "examples": counts, "steps": training["steps"], "train_seconds": seconds,
            "loss_last": training["loss_last"], "recall": recall_rates(alone, tok, facts),
            "perplexity": round(perplexity(alone, tok), 3)}


def adapter_capacity(ranks: tuple[int, ...] = (1, 8), sizes: tuple[int, ...] = (60, 120, 240), quick: bool = False,
                     home: Path | None = None, progress=None, resume: bool = False) -> dict:
    """Recall of N facts by an adapter of each rank trained on them in one night, for each N in `sizes`;
    `resume` continues the run saved in `home` after its last finished point."""
    say = progress or (lambda m: None)
    if quick:
        ranks, sizes = (1,), (3,)
    ranks, sizes = tuple(sorted(set(ranks))), tuple(sorted(set(sizes)))
    facts = fictional_facts(sizes[-1], seed=41)
    with workdir(home, "adapter-capacity") as root:
        state = RunState.open(root, "adapter-capacity", {"ranks": list(ranks), "sizes": list(sizes)}, resume)
        points = state.data.setdefault("points", [])
        settings = Settings(home=root)
        model_dir = resolve(settings.model, settings.cache_dir)
        if "perplexity_base" not in state.data:
            base, tok = load(model_dir)
            state.data["perplexity_base"] = round(perplexity(base, tok), 3)
            del base
            state.save()
        done = {(p["rank"], p["facts"]) for p in points}
        for n in sizes:
            for rank in ranks:
                if (rank, n) in done:
                    continue
                say(f"adapter capacity: rank {rank}, {n} facts")
                points.append(_point(model_dir, facts[:n], SleepConfig(rank=rank),
                                     root / f"adapter-r{rank}-n{n}", say))
                state.save()
                say(f"adapter capacity: {points[-1]}")
        out = {"points": points, "perplexity_base": state.data["perplexity_base"]}
    return envelope("adapter-capacity", {"ranks": ranks, "sizes": sizes}, out)
