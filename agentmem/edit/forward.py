"""Partial forward passes: the residual stream at the subject token, layer by layer, run no more than needed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .arch import Architecture, for_model
from .sites import Site


def _pad(sites: list[Site], pad_id: int) -> torch.Tensor:
    # Right padding needs no attention mask: causal attention never lets a real
    # token see the pads that follow it.
    width = max(len(s.ids) for s in sites)
    return torch.tensor([s.ids + [pad_id] * (width - len(s.ids)) for s in sites])


class _Capture:
    """Forward hooks that record the down projection's input and layer outputs at chosen tokens."""

    def __init__(self, model, arch: Architecture, key_layers: list[int], out_layers: list[int]):
        self.keys: dict[int, torch.Tensor] = {}
        self.outs: dict[int, torch.Tensor] = {}
        self.handles = []
        for l in key_layers:
            self.handles.append(
                arch.down_proj(model, l).register_forward_hook(
                    lambda m, inp, out, l=l: self.keys.__setitem__(l, inp[0].detach())
                )
            )
        for l in out_layers:
            self.handles.append(
                arch.layer(model, l).register_forward_hook(
                    lambda m, inp, out, l=l: self.outs.__setitem__(
                        l, (out[0] if isinstance(out, tuple) else out).detach()
                    )
                )
            )

    def close(self):
        for h in self.handles:
            h.remove()


def _buckets(sites: list[Site], length) -> list[list[int]]:
    """Site indices grouped so that padding at most about doubles a bucket's shortest member.

    Small batches stay in one bucket whatever their lengths: below about 48
    padded tokens a second pass through the layers costs more than the padding.
    """
    groups, cur = [], []
    for i in sorted(range(len(sites)), key=lambda i: length(sites[i])):
        grow = length(sites[i]) - length(sites[cur[0]]) if cur else 0
        if cur and length(sites[i]) > 2 * length(sites[cur[0]]) + 2 and grow * (len(cur) + 1) > 48:
            groups.append(cur)
            cur = []
        cur.append(i)
    groups.append(cur)
    return groups


@dataclass
class _Bucket:
    """Cut sites run together. Where they all begin with the same tokens (a chat question's template
    opening, 24 of its 30-odd tokens on SmolLM2), those run once per layer and the rest attends to them."""

    idx: list[int]
    pos: torch.Tensor  # each site's subject token, counted from the end of the opening
    opening: int  # tokens every site begins with, run once (0: none)
    # layer -> stream entering it: (n, length, d), or with an opening ((1, opening, d), (n, length - opening, d))
    entering: dict

# a short shared opening is not worth a second call per layer (measured only at 24 tokens)
_MIN_OPENING = 8


def _opening(sites: list[Site]) -> int:
    """How many tokens every site begins with, short of the shortest site's last (its subject's) token."""
    n = min(len(s.ids) for s in sites) - 1
    for s in sites[1:]:
        n = next((i for i, (a, b) in enumerate(zip(sites[0].ids[:n], s.ids)) if a != b), n)
    return n if len(sites) > 1 and n >= _MIN_OPENING else 0


class SubjectStream:
    """The sites cut after their subject token, bucketed, with the residual stream entering layer `start`.

    A key or output at the subject token depends only on the tokens up to it,
    and the layers below the edit never change during one, so an edit runs
    those layers once and each later capture only the layers from `start` up.
    The stream entering each higher layer is kept too, until `edited` says a
    layer below it changed: a capture starts from the highest one still valid.
    """

    @torch.no_grad()
    def __init__(self, model, tokenizer, sites: list[Site], start: int = 0):
        self.arch = for_model(model)
        self.start, self.n = start, len(sites)
        cut = [Site(s.ids[: s.pos + 1], s.pos, None, s.request, s.kind) for s in sites]
        self.buckets: list[_Bucket] = []
        for idx in _buckets(cut, lambda s: len(s.ids)):
            chosen = [cut[i] for i in idx]
            hidden = _hidden_at(model, self.arch, _pad(chosen, tokenizer.pad_token_id or 0), start - 1)
            c = _opening(chosen)
            self.buckets.append(_Bucket(idx, torch.tensor([s.pos - c for s in chosen]), c,
                                        {start: (hidden[:1, :c], hidden[:, c:]) if c else hidden}))

    def edited(self, layer: int) -> None:
        """Layer `layer`'s weights changed: the streams entering the layers above it are stale."""
        for b in self.buckets:
            for l in [l for l in b.entering if l > layer]:
                del b.entering[l]

    @torch.no_grad()
    def capture(self, model, key_layers: list[int], out_layers: list[int]):
        """({layer: keys (n_sites, d_ff)}, {layer: outputs (n_sites, d)}) at each site's subject token.

        Runs only as deep as the deepest layer asked for; the LM head is never needed.
        """
        if min(key_layers + out_layers) < self.start:
            raise ValueError(f"layers below {self.start} were run once, before this capture")
        depth = max(key_layers + out_layers)
        keys = {l: None for l in key_layers}
        outs = {l: None for l in out_layers}
        lowest = min(key_layers + out_layers)
        for b in self.buckets:
            begin = max(l for l in b.entering if l <= lowest)
            # the hooks keep each layer's last call: the rest's, which follows the opening's
            cap = _Capture(model, self.arch, key_layers, out_layers)
            try:
                if b.opening:
                    _layers_after_opening(model, self.arch, *b.entering[begin], begin, depth, b.entering)
                else:
                    _layers_between(model, self.arch, b.entering[begin], begin, depth, b.entering)
            finally:
                cap.close()
            rows = torch.arange(len(b.idx))
            for store, got in ((keys, cap.keys), (outs, cap.outs)):
                for l, v in got.items():
                    if store[l] is None:
                        store[l] = v.new_empty(self.n, v.shape[-1])
                    store[l][b.idx] = v[rows, b.pos]
        return keys, outs


def run_capture(model, tokenizer, sites: list[Site], key_layers: list[int], out_layers: list[int]):
    """Keys and outputs at each site's subject token (see `SubjectStream.capture`), from the embeddings up."""
    return SubjectStream(model, tokenizer, sites).capture(model, key_layers, out_layers)


@torch.no_grad()
def _layers_between(model, arch: Architecture, hidden: torch.Tensor, start: int, stop: int,
                    entering: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Residual stream after decoder layer `stop`, given the stream entering layer `start` (right-padded, causal).

    `entering`, if given, receives the stream entering each layer from `start` to `stop`.
    """
    positions = torch.arange(hidden.shape[1]).unsqueeze(0).expand(hidden.shape[0], -1)
    pe = arch.rotary(model)(hidden, positions)
    for l, blk in enumerate(arch.layers(model)[start : stop + 1], start):
        if entering is not None:
            entering[l] = hidden
        out = blk(hidden, attention_mask=None, position_ids=positions, position_embeddings=pe)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


@torch.no_grad()
def _layers_after_opening(model, arch: Architecture, opening: torch.Tensor, rest: torch.Tensor, start: int,
                          stop: int, entering: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`_layers_between` for sequences that all begin with the same tokens: the opening's stream (1, c, d)
    runs once per layer, and the rest (n, r, d, right-padded) attends to its keys and values."""
    c, (n, r) = opening.shape[1], rest.shape[:2]
    at_opening = torch.arange(c)[None]
    at_rest = torch.arange(c, c + r)[None].expand(n, -1)
    rotary = arch.rotary(model)
    pe_opening, pe_rest = rotary(opening, at_opening), rotary(rest, at_rest)
    q = torch.arange(r)
    mask = torch.cat([torch.ones(r, c, dtype=torch.bool), q[None, :] <= q[:, None]], 1).expand(n, 1, r, c + r)
    for l, blk in enumerate(arch.layers(model)[start : stop + 1], start):
        if entering is not None:
            entering[l] = (opening, rest)
        seen = _KV()
        out = blk(opening, attention_mask=None, position_ids=at_opening, position_embeddings=pe_opening,
                  past_key_values=seen)
        opening = out[0] if isinstance(out, tuple) else out
        (idx, (k, v)), = seen.seen.items()
        shared = _KV({idx: (k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1))})
        out = blk(rest, attention_mask=mask, position_ids=at_rest, position_embeddings=pe_rest, past_key_values=shared)
        rest = out[0] if isinstance(out, tuple) else out
    return opening, rest


@torch.no_grad()
def _hidden_at(model, arch: Architecture, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """Residual stream after decoder layer `layer` (the embeddings for -1)."""
    return _layers_between(model, arch, arch.embed(model)(ids), 0, layer)


class _KV:
    """Duck-typed KV cache for the attention modules: records K/V, or prepends a fixed prefix."""

    def __init__(self, prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.prefix = prefix
        self.seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, k, v, layer_idx, *args, **kwargs):
        if self.prefix is None:
            self.seen[layer_idx] = (k, v)
            return k, v
        pk, pv = self.prefix[layer_idx]
        return torch.cat([pk.to(k.dtype), k], 2), torch.cat([pv.to(v.dtype), v], 2)


class _Upper:
    """The decoder layers from `start` up and the final norm, as compute_z's loop runs them.

    In float32 they are the model's own. In bfloat16 they are copies with eager
    attention (the model's weights stay float32): on CPUs with bfloat16 matrix
    instructions the loop runs about 3x faster. Outputs come back in float32, so
    the LM head and the loss stay float32 either way.
    """

    def __init__(self, model, arch: Architecture, start: int, dtype: torch.dtype = torch.float32):
        self.dtype, self.rotary = dtype, arch.rotary(model)
        self.layers, self.norm = list(arch.layers(model)[start:]), arch.final_norm(model)
        self.eager = dtype != torch.float32
        if self.eager:
            self.layers = [arch.eager_copy(l, dtype) for l in self.layers]
            self.norm = arch.eager_copy(self.norm, dtype)

    def __call__(self, hidden, positions, mask=None, kv=None) -> torch.Tensor:
        hidden = hidden.to(self.dtype)
        if self.eager and mask is not None:
            mask = torch.zeros(mask.shape, dtype=self.dtype).masked_fill(~mask, torch.finfo(self.dtype).min)
        pe = self.rotary(hidden, positions)
        for layer in self.layers:
            out = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=pe, past_key_values=kv)
            hidden = out[0] if isinstance(out, tuple) else out
        return self.norm(hidden).float()
