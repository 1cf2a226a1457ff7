"""The policy's world check: a claim about the world is refused when the model confidently says otherwise."""

from __future__ import annotations

import torch

from ..facts import Fact
from ..facts.policy import PolicyConfig


@torch.no_grad()
def world_conflict(fact: Fact, model, tokenizer, cfg: PolicyConfig) -> str | None:
    """Refuse a claim when the model confidently completes its prompt with something else."""
    prompt = fact.completion_prompt
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    probs = model(ids.to(model.device)).logits[0, -1].float().softmax(-1)
    top_p, top = probs.max(-1)
    obj = tokenizer(" " + fact.object, add_special_tokens=False)["input_ids"]
    p_obj = probs[obj[0]].item() if obj else 0.0
    said = tokenizer.decode([top.item()]).strip()
    # only a confident *name* counts: a confident "of" or "a" says nothing about the claim
    if said[:1].isupper() and top_p.item() >= cfg.world_confidence \
            and top.item() != (obj[0] if obj else -1) and p_obj < cfg.world_ratio * top_p.item():
        return f"contradicts world knowledge: the model completes {prompt!r} with {said!r} (p={top_p.item():.2f})"
    return None
