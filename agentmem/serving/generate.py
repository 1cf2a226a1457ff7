"""Answers from a loaded model: chat through the model's template or raw completion, greedy, whole or streamed."""

from __future__ import annotations

import threading
from typing import Iterator

import torch
from transformers import TextIteratorStreamer


def _greedy(model, tokenizer, ids: torch.Tensor, max_new_tokens: int) -> str:
    return greedy_many(model, tokenizer, [ids[0]], max_new_tokens)[0]


@torch.no_grad()
def greedy_many(model, tokenizer, prompts: list[torch.Tensor], max_new_tokens: int, batch_size: int = 64,
                processor=None) -> list[str]:
    """Greedy answers to many prompts (1-D id tensors), generated in left-padded batches; `processor()`, if
    given, makes each batch's logits processor (e.g. a grammar's, which keeps state per row).

    A decoding step reads every weight whatever the batch, so recall over hundreds of facts takes seconds
    instead of minutes: on 2 cores 64 rows answered 1.5-1.7x faster than 16, with the same answers.
    """
    answers: list[str] = []
    for b in range(0, len(prompts), batch_size):
        chunk = prompts[b: b + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, p in enumerate(chunk):
            ids[i, width - len(p):] = p
            mask[i, width - len(p):] = 1
        out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), do_sample=False,
                             temperature=None, top_p=None, top_k=None, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id,
                             logits_processor=[processor()] if processor is not None else None)
        answers += [t.strip() for t in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]
    return answers


def chat_many(model, tokenizer, questions: list[str], max_new_tokens: int = 48) -> list[str]:
    """Greedy chat answers to single-turn questions, batched."""
    return greedy_many(model, tokenizer, [chat_ids(tokenizer, [{"role": "user", "content": q}])[0]
                                          for q in questions], max_new_tokens)


def complete_many(model, tokenizer, prompts: list[str], max_new_tokens: int = 16) -> list[str]:
    """Greedy raw completions, batched."""
    return greedy_many(model, tokenizer, [tokenizer(p, return_tensors="pt", add_special_tokens=False)["input_ids"][0]
                                          for p in prompts], max_new_tokens)


def chat_ids(tokenizer, messages: list[dict]) -> torch.Tensor:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True)["input_ids"]


def chat(model, tokenizer, messages: list[dict], max_new_tokens: int = 48) -> str:
    return _greedy(model, tokenizer, chat_ids(tokenizer, messages), max_new_tokens)


def complete(model, tokenizer, prompt: str, max_new_tokens: int = 16) -> str:
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    if ids.shape[1] == 0:
        raise ValueError("prompt is empty")
    return _greedy(model, tokenizer, ids, max_new_tokens)


def stream(model, tokenizer, generate_kwargs: dict) -> Iterator[str]:
    """Text pieces as `model.generate(**generate_kwargs)` produces them.

    Generation runs in a thread; closing the iterator early still waits for it
    to finish, so the caller may change the model as soon as this returns.
    """
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    worker = threading.Thread(target=lambda: torch.no_grad()(model.generate)(**generate_kwargs, streamer=streamer))
    worker.start()
    finished = False
    try:
        for piece in streamer:
            if piece:
                yield piece
        finished = True
    finally:
        if not finished:
            for _ in streamer:
                pass
        worker.join()


def stream_chat(model, tokenizer, messages: list[dict], max_new_tokens: int = 128) -> Iterator[str]:
    ids = chat_ids(tokenizer, messages).to(model.device)
    return stream(model, tokenizer, dict(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id))


def pad_rows(rows: list[tuple[torch.Tensor, int]], pad: int, device: torch.device | str = "cpu"):
    """Right-padded ids, attention mask and labels (-100 before each row's start and on padding), on `device`.

    Built on the CPU and moved once: row by row on a GPU would be three small copies a row."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, start) in enumerate(rows):
        ids[i, : len(row)] = row
        labels[i, start: len(row)] = row[start:]  # only the answer is learned
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device), labels.to(device)
