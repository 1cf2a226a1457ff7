"""Greedy answers from a loaded model: chat through the model's template, or raw completion."""

from __future__ import annotations

import torch


@torch.no_grad()
def _greedy(model, tokenizer, ids: torch.Tensor, max_new_tokens: int) -> str:
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
        max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def chat(model, tokenizer, messages: list[dict], max_new_tokens: int = 48) -> str:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return _greedy(model, tokenizer, ids["input_ids"], max_new_tokens)


def complete(model, tokenizer, prompt: str, max_new_tokens: int = 16) -> str:
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    if ids.shape[1] == 0:
        raise ValueError("prompt is empty")
    return _greedy(model, tokenizer, ids, max_new_tokens)
