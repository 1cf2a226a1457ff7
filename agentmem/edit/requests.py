"""A fact phrased for editing: its subject, raw prompt and target, its chat questions and answers."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..facts import Fact, last_word
from .config import MemitConfig


@dataclass
class Request:
    """One fact, phrased for editing."""

    subject: str
    prompt: str  # completion prompt with the subject filled in, e.g. "Aria lives in"
    target: str  # completion of `prompt`, with its leading space, e.g. " Portland"
    # chat questions and the assistant's answers, which must carry the object,
    # e.g. ("Where does Aria live?", "Aria lives in Portland.")
    questions: list[tuple[str, str]]
    # count a subject of several words as its last word when matching keys (MemitConfig.share_last_word)
    by_last_word: bool = False


def answer_for(fact: Fact, mode: str = "auto") -> str:
    """The assistant's answer to the fact's own questions (see MemitConfig.answer)."""
    short = mode == "object" or (mode == "auto" and fact.attribute is not None)
    return f"{fact.object}." if short else fact.statement


def to_request(fact: Fact, cfg: MemitConfig) -> Request:
    answer = answer_for(fact, cfg.answer)
    questions = [(q, answer) for q in fact.questions()]
    if cfg.open_question:
        questions.append((cfg.open_question.format(s=fact.subject), fact.statement))
    return Request(subject=fact.subject, prompt=fact.completion_prompt, target=" " + fact.object,
                   questions=questions, by_last_word=cfg.share_last_word)


def raw_context(req: Request) -> str:
    """The raw prompt up to the end of its subject: all a raw key at the subject's last token sees.
    With `by_last_word`, the subject in it is cut to its last word ("Thea Albescu lives in" ->
    "Albescu"), so that people who share a family name share a key."""
    start = req.prompt.rfind(req.subject)
    subject = last_word(req.subject) if req.by_last_word else req.subject
    return req.prompt[:start] + subject


def subject_slots(requests: list[Request]) -> tuple[torch.Tensor, int]:
    """The offset each request is optimised with, and how many offsets there are.

    The raw key sits on the subject's last token, before the relation, so facts whose raw
    prompts agree up to there ("Ann Lee lives in", "Ann Lee plays the") have one raw key.
    Offsets fitted per fact would give that key several targets, and the solve would write
    their mean: such facts share one offset, fitted to all of them.
    """
    slots: dict[str, int] = {}
    of = [slots.setdefault(raw_context(r), len(slots)) for r in requests]
    return torch.tensor(of, dtype=torch.long), len(slots)
