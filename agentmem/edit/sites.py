"""Sites: the token sequences that carry each request, and where its subject ends in them."""

from __future__ import annotations

from dataclasses import dataclass

from .requests import Request


@dataclass
class Site:
    """One token sequence in which the subject's last token gets the edit."""

    ids: list[int]
    pos: int  # index of the subject's last token
    target_span: tuple[int, int] | None  # [start, end) of the tokens whose NLL is minimised
    request: int
    kind: str  # "raw", "question", "kl", or "keep" (a preserved key, see preserve.py)
    prefixed: bool = False  # a raw prompt behind one of the context prefixes
    # later tokens that end the subject again (an answer that names it): the edit fires there too
    repeats: tuple[int, ...] = ()


def subject_ends(tokenizer, text: str, subject: str) -> tuple[list[int], list[int]]:
    """Token ids of `text` and, in order, the index of the token ending each occurrence of `subject`."""
    chars, at = [], text.find(subject)
    while at >= 0:
        chars.append(at + len(subject))
        at = text.find(subject, at + 1)
    if not chars:
        raise ValueError(f"subject {subject!r} does not occur in {text!r}")
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ends = [next((i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < e <= b), None) for e in chars]
    if ends[-1] is None:
        raise ValueError(f"cannot locate subject {subject!r} in the tokens of {text!r}")
    return enc["input_ids"], [i for i in dict.fromkeys(ends) if i is not None]


def subject_last_token(tokenizer, text: str, subject: str) -> tuple[list[int], int]:
    """Token ids of `text` and the index of the token ending the subject's last occurrence."""
    ids, ends = subject_ends(tokenizer, text, subject)
    return ids, ends[-1]


def chat_text(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )


def build_sites(tokenizer, requests: list[Request], prefixes: list[str]) -> list[Site]:
    """The sequences that carry each request: prefixed raw prompts, chat questions, and a KL anchor."""
    sites: list[Site] = []
    for r, req in enumerate(requests):
        for prefix in prefixes:
            text = prefix + req.prompt
            ids, pos = subject_last_token(tokenizer, text, req.subject)
            tgt = tokenizer(text + req.target, add_special_tokens=False)["input_ids"]
            sites.append(Site(tgt, pos, (len(ids), len(tgt)), r, "raw", prefixed=bool(prefix)))
        for q, answer in req.questions:
            head = chat_text(tokenizer, q)
            ids, pos = subject_last_token(tokenizer, head, req.subject)
            full, ends = subject_ends(tokenizer, head + answer, req.subject)
            again = tuple(e for e in ends if e > pos)
            sites.append(Site(full, pos, (len(ids), len(full)), r, "question", repeats=again))
        ids, pos = subject_last_token(tokenizer, f"{req.subject} is a", req.subject)
        sites.append(Site(ids, pos, None, r, "kl"))
    return sites
