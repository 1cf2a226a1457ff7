"""Can the bundled model extract with a LoRA adapter trained for it? (`agentmem eval extraction-lora`)

The adapter is trained with sleep's trainer on generated snippets (extraction_corpus), asked with a short
instruction instead of llm.py's long prompt (the adapter, not the prompt, carries the conventions), decoded
under the facts schema with xgrammar, and scored like every other extractor on the hand-written sets.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..extract import Both, make_extractor, user_turns
from ..extract.base import latest, make_fact
from ..extract.llm import MAX_ANSWER_TOKENS, SCHEMA
from ..facts import RELATIONS, Fact
from ..facts.perspective import user_subject
from ..serving import generate
from ..serving.model_store import load
from ..serving.structured import StructuredOutputs
from ..sleep.config import SleepConfig
from ..sleep.train import Example, train_adapter
from .extraction import Answered, by_category, load_rows
from .extraction_corpus import corpus

PROMPT = "Extract the facts {user} states in this message, as JSON.\n\n{text}"
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "facts", "schema": SCHEMA, "strict": True}}
# every projection of every layer: extraction is a new skill, not a few facts
TRAINING = SleepConfig(rank=16, alpha=32, learning_rate=1e-3, epochs=1, batch_size=16, kl_weight=0.0,
                       target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def answer(triples: list[tuple[str, str, str]]) -> str:
    """The JSON the adapter learns to write, spaced as the grammar spaces it."""
    return json.dumps({"facts": [{"subject": s, "relation": r, "object": o} for s, r, o in triples]},
                      ensure_ascii=False)


def prompt(text: str, user_id: str) -> str:
    return PROMPT.format(user=user_subject(user_id), text=text)


def train(model, tok, dest: Path, examples: int, seed: int = 0, progress=None) -> dict:
    """Train the extraction adapter on `examples` generated snippets and save it to `dest`."""
    data = [Example(prompt(s.text, s.user_id), answer(s.expected), "fact") for s in corpus(examples, seed)]
    t0 = time.perf_counter()
    stats = train_adapter(model, tok, data, TRAINING.model_copy(update={"seed": seed}), dest, progress=progress)
    return {**stats, "seconds": round(time.perf_counter() - t0, 1)}


def parse(text: str, user_id: str) -> list[Fact]:
    """Facts from the adapter's answer; an answer cut off by the token limit gives none."""
    try:
        items = json.loads(text)["facts"]
    except (ValueError, KeyError, TypeError):
        return []
    facts = (make_fact(i["subject"], i["relation"], i["object"], user_id)
             for i in items if isinstance(i, dict) and i.get("relation") in RELATIONS)
    return latest(f for f in facts if f is not None)


def ask_all(model, tok, keys: list[tuple[str, str]], batch_size: int = 16) -> dict[tuple[str, str], list[Fact]]:
    """Every (message, user id) asked once, greedy under the facts schema, in batches."""
    grammar = StructuredOutputs(tok, model.config.vocab_size)
    ids = [generate.chat_ids(tok, [{"role": "user", "content": prompt(t, u)}])[0] for t, u in keys]
    texts = generate.greedy_many(model, tok, ids, MAX_ANSWER_TOKENS, batch_size,
                                 processor=lambda: grammar.processor(RESPONSE_FORMAT))
    return {k: parse(t, k[1]) for k, t in zip(keys, texts)}


def lora_benchmark(model_dir: Path, adapter: Path, dataset: Path, examples: int = 2000, progress=None) -> dict:
    """Train the adapter into `adapter` unless it is there, then score it alone and beside the rules on
    `dataset` (the model from `model_dir`, loaded afresh for each: peft changes the one it trains)."""
    from peft import PeftModel

    out: dict = {"adapter": str(adapter), "prompt": PROMPT, "training": None}
    if not (adapter / "adapter_config.json").exists():
        model, tok = load(model_dir)
        out["training"] = {"examples": examples, **train(model, tok, adapter, examples, progress=progress)}
        del model
    model, tok = load(model_dir)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().eval()
    rows = load_rows(dataset)
    keys = sorted({(t, r.get("user_id", "default")) for r in rows for t in user_turns(r["messages"])})
    t0 = time.perf_counter()
    answered = Answered(ask_all(model, tok, keys))
    seconds = round((time.perf_counter() - t0) / max(len(rows), 1), 3)
    out |= {"dataset": dataset.name, "snippets": len(rows), "seconds_per_snippet": seconds,
            "lora": by_category(rows, answered), "both": by_category(rows, Both(make_extractor("rules"), answered))}
    return out
