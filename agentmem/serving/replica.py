"""A serving copy of the model in this process that follows the published versions.

`apply` copies a version's changed tensors in place and swaps its LoRA adapter
through peft; `generate` and `stream` answer with whatever was applied last.
The caller makes sure no generation runs while a version is being applied.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from ..storage.published import Published
from . import generate, model_store
from .adapter_slot import AdapterSlot
from .scope_overlay import ScopeOverlay
from .structured import StructuredOutputs


@dataclass
class Sampling:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    response_format: dict | None = None  # OpenAI's: text, json_object or json_schema (decoding constrained to it)


@dataclass
class Output:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


class Replica:
    def __init__(self, model_dir: Path, device: str = "cpu"):
        self.model, self.tok = model_store.load(Path(model_dir), device)
        self.max_len = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.version = 0
        self.slot = AdapterSlot(self.model)
        self.overlay = ScopeOverlay(self.slot.param)  # the user whose memory is added in, if any
        self.structured = StructuredOutputs(self.tok, int(self.model.config.vocab_size))

    # -- following versions ---------------------------------------------

    @property
    def net(self):
        """The module to generate with: the model, wrapped by peft while an adapter is served."""
        return self.slot.net

    @property
    def adapter(self) -> str | None:
        return self.slot.name

    def apply(self, pub: Published) -> None:
        self.overlay.release()
        self.set_tensors(pub.tensors())
        self.set_adapter(pub.adapter, pub.adapter_dir)
        self.version = pub.version

    @torch.no_grad()
    def set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy checkpoint-named tensors into the model in place."""
        for name, t in tensors.items():
            self.slot.param(name).copy_(t)

    def set_adapter(self, name: str | None, path: Path | None) -> None:
        """Serve the adapter in folder `path` under `name` (a new name per adapter), or none."""
        self.slot.set(name, path)

    # -- answering -------------------------------------------------------

    def chat_ids(self, messages: list[dict]) -> torch.Tensor:
        return generate.chat_ids(self.tok, messages)

    def prompt_ids(self, prompt: str) -> torch.Tensor:
        ids = self.tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        if ids.shape[1] == 0:
            raise ValueError("prompt is empty")
        return ids

    def _kwargs(self, ids: torch.Tensor, s: Sampling, cancel: threading.Event | None) -> dict:
        room = self.max_len - ids.shape[1]
        if room < 1:
            raise ValueError(f"the prompt is {ids.shape[1]} tokens long; this model takes at most {self.max_len}")
        ids = ids.to(self.model.device)
        kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=min(s.max_tokens, room),
                  pad_token_id=self.tok.pad_token_id)
        if cancel is not None:
            kw["stopping_criteria"] = StoppingCriteriaList([Cancelled(cancel)])
        grammar = self.structured.processor(s.response_format)
        if grammar is not None:
            kw["logits_processor"] = LogitsProcessorList([grammar])
        if s.temperature > 0:
            if s.seed is not None:
                torch.manual_seed(s.seed)
            kw.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, s: Sampling, cancel: threading.Event | None = None) -> Output:
        """The answer to `ids`; setting `cancel` ends generation after the current token."""
        out = self.net.generate(**self._kwargs(ids, s, cancel))[0, ids.shape[1]:]
        text = self.tok.decode(out, skip_special_tokens=True)
        finish = "stop" if len(out) < s.max_tokens or out[-1].item() == self.tok.eos_token_id else "length"
        cut = cut_at_stop(text, s.stop)
        if cut is not None:
            text, finish = cut, "stop"
        return Output(text, ids.shape[1], len(out), finish)

    def stream(self, ids: torch.Tensor, s: Sampling, cancel: threading.Event | None = None) -> Iterator[str]:
        """Text pieces as they are generated; stops early at a stop string, or once `cancel` is set."""
        sent = ""
        pieces = generate.stream(self.net, self.tok, self._kwargs(ids, s, cancel))
        try:
            for piece in pieces:
                full = sent + piece
                cut = cut_at_stop(full, s.stop)
                if cut is not None:
                    if cut[len(sent):]:
                        yield cut[len(sent):]
                    return
                yield piece
                sent = full
        finally:
            pieces.close()


class Cancelled(StoppingCriteria):
    """Stops generation once `event` is set: a request that timed out or was abandoned."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def cut_at_stop(text: str, stops: list[str] | None) -> str | None:
    """`text` up to the first stop string in it, or None if it holds none."""
    hits = [text.index(s) for s in stops or [] if s and s in text]
    return text[: min(hits)] if hits else None
