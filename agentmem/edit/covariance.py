"""Second moment C = E[k k^T] of the down projection's inputs over text the model writes itself.

C tells MEMIT which key directions ordinary text uses, so an edit leaves them
alone. It is accumulated in float64; storage/cache.py keeps it on disk.
"""

from __future__ import annotations

import torch

from .arch import for_model

# Seeds for the model's own text: varied openings so that samples cover
# narrative, factual, conversational and instructional registers.
_SEEDS = [
    "The", "In", "A", "I", "When", "Today", "My", "It was", "There are", "How to",
    "The city of", "She", "He", "We", "According to", "Once upon a time", "Why",
    "The history of", "Scientists", "Dear", "Here is", "If you", "Many people", "This",
]

# Openings from which the model writes its own questions for the chat half.
_QUESTION_SEEDS = ["Question: Who", "Question: What", "Question: Where", "Question: When", "Question: How",
                   "Question: Why", "Question: Which", "Question: Can you", "Q: Is", "Q: Do you know"]


@torch.no_grad()
def _generate(model, tokenizer, prompts: list[str], new_tokens: int, gen: torch.Generator) -> list[str]:
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = "right"
    torch.manual_seed(int(torch.randint(0, 1 << 30, (1,), generator=gen)))
    out = model.generate(
        **{k: v.to(model.device) for k, v in enc.items()}, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
        max_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id,
    )
    return [tokenizer.decode(row[enc["input_ids"].shape[1]:], skip_special_tokens=True) for row in out]


def sample_texts(model, tokenizer, n: int, new_tokens: int = 96, seed: int = 0, batch: int = 32) -> list[str]:
    """Text the model writes itself: half raw continuations, half chats on questions it wrote too.

    Chat-formatted samples matter: every question a user asks is read through
    the chat template, so its keys must be in C for edits to leave them alone.
    """
    gen = torch.Generator().manual_seed(seed)
    texts: list[str] = []
    while len(texts) < n:
        k = min(batch, n - len(texts))
        pick = torch.randint(0, 1 << 30, (k,), generator=gen).tolist()
        if (len(texts) // batch) % 2 == 0:
            seeds = [_SEEDS[r % len(_SEEDS)] for r in pick]
            texts += [s + t for s, t in zip(seeds, _generate(model, tokenizer, seeds, new_tokens, gen))]
            continue
        seeds = [_QUESTION_SEEDS[r % len(_QUESTION_SEEDS)] for r in pick]
        asked = _generate(model, tokenizer, seeds, 24, gen)
        questions = []
        for s, q in zip(seeds, asked):
            q = (s.split(":", 1)[1] + q).strip()
            questions.append(q.split("?")[0] + "?" if "?" in q else q.split("\n")[0])
        chats = [
            tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
            for q in questions
        ]
        texts += [c + a for c, a in zip(chats, _generate(model, tokenizer, chats, new_tokens, gen))]
    return texts


@torch.no_grad()
def second_moments(model, tokenizer, layers: list[int], texts: list[str], batch: int = 16, max_len: int = 256):
    """Returns ({layer: C (d_ff, d_ff) float64}, token count) over every token of `texts`."""
    arch = for_model(model)
    sums: dict[int, torch.Tensor] = {}
    count = 0
    grabbed: dict[int, torch.Tensor] = {}
    hooks = [
        arch.down_proj(model, l).register_forward_hook(
            lambda m, inp, out, l=l: grabbed.__setitem__(l, inp[0].detach())
        )
        for l in layers
    ]
    try:
        for i in range(0, len(texts), batch):
            enc = tokenizer(
                texts[i : i + batch], return_tensors="pt", padding=True, truncation=True,
                max_length=max_len, add_special_tokens=False,
            )
            enc = {k: v.to(model.device) for k, v in enc.items()}
            mask = enc["attention_mask"].bool()
            model(**enc, use_cache=False)
            count += int(mask.sum())
            for l in layers:
                k = grabbed[l][mask].double()
                sums[l] = sums.get(l, 0) + k.T @ k
    finally:
        for h in hooks:
            h.remove()
    return {l: (s / count).cpu() for l, s in sums.items()}, count
