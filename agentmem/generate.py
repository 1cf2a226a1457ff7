"""Answers from a loaded model: chat through the model's template or raw completion, greedy, whole or streamed."""

from __future__ import annotations

import threading
from typing import Iterator

import torch
from transformers import TextIteratorStreamer


@torch.no_grad()
def _greedy(model, tokenizer, ids: torch.Tensor, max_new_tokens: int) -> str:
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
        max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


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
    ids = chat_ids(tokenizer, messages)
    return stream(model, tokenizer, dict(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id))
