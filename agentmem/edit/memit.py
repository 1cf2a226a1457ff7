"""MEMIT's driver: keys, target values and the solve over the edited layers, and each fact's share of the result.

Touches no disk, queue or server: give it a model, a tokenizer and prepared
requests, and it returns low-rank weight deltas split per fact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .arch import for_model
from .compute_ks import _target_sites, compute_ks
from .compute_z import compute_z
from .config import MemitConfig
from .forward import SubjectStream
from .requests import Request, subject_slots
from .sites import build_sites


@dataclass
class EditResult:
    """Low-rank update of each edited layer: W += factors[l][0] @ factors[l][1].

    The factors hold one block of n columns per solve round, each in the order of `keys`' n columns.
    """

    factors: dict[int, tuple[torch.Tensor, torch.Tensor]]
    keys: dict[int, torch.Tensor]  # layer -> (d_ff, n) keys written in the first round, for later constraints
    stats: dict = field(default_factory=dict)


class Edit:
    """One fact's update: per layer, factors (B, A) and the keys it was written for."""

    def __init__(self, factors: dict[int, tuple[torch.Tensor, torch.Tensor]], keys: dict[int, torch.Tensor]):
        self.factors = factors
        self.keys = keys

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for l, (B, A) in self.factors.items():
            out[f"{l}.B"] = B.float().contiguous()
            out[f"{l}.A"] = A.float().contiguous()
            out[f"{l}.K"] = self.keys[l].float().contiguous()
        return out

    def over(self, old: "Edit", scale: float) -> "Edit":
        """One edit that adds this one and `old` at `scale`: this one was computed with `old` in the weights."""
        return Edit({l: (torch.cat([scale * old.factors[l][0].to(B), B], 1), torch.cat([old.factors[l][1].to(A), A]))
                     for l, (B, A) in self.factors.items()},
                    {l: torch.cat([old.keys[l].to(K), K], 1) for l, K in self.keys.items()})

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "Edit":
        layers = sorted({int(k.split(".")[0]) for k in t})
        return cls({l: (t[f"{l}.B"], t[f"{l}.A"]) for l in layers}, {l: t[f"{l}.K"] for l in layers})


def execute(
    model,
    tokenizer,
    requests: list[Request],
    cfg: MemitConfig,
    layers: list[int],
    solver,
) -> EditResult:
    """Run MEMIT on the model in place and return the per-layer low-rank factors.

    `solver(layer, keys_new, resid)` returns (B, A) for one layer; it closes over
    the covariance and the constraint keys so that this function stays free of
    storage concerns. The model is left with the update applied. Every tensor of the edit is made
    on the model's device; the factors and keys come back there too.
    """
    with torch.device(model.device):
        return _execute(model, tokenizer, requests, cfg, layers, solver)


def _execute(model, tokenizer, requests: list[Request], cfg: MemitConfig, layers: list[int], solver) -> EditResult:
    arch = for_model(model)
    sites = build_sites(tokenizer, requests, cfg.prefixes)
    last = layers[-1]
    t0 = time.perf_counter()
    slots, _ = subject_slots(requests)
    deltas, h_sub, stats = compute_z(model, tokenizer, sites, len(requests), last, cfg, slots)
    stats["z_seconds"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    tsites = _target_sites(sites)
    site_req = torch.tensor([sites[i].request for i in tsites])
    z = h_sub[tsites] + deltas[site_req]
    offset = deltas[site_req].norm(dim=-1).clamp_min(1e-8)
    parts: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {l: [] for l in layers}
    written = {}
    rounds = 0
    stream = SubjectStream(model, tokenizer, sites, layers[0])
    while True:
        keys, outs = compute_ks(model, stream, sites, len(requests), layers[0], last)
        gap = (z - outs[tsites]).norm(dim=-1) / offset
        if rounds == cfg.solve_rounds or (rounds and gap.max() <= cfg.max_gap):
            break
        rounds += 1
        for i, layer in enumerate(layers):
            if i:
                keys, outs = compute_ks(model, stream, sites, len(requests), layer, last)
            resid = (z - outs[tsites]).T / (len(layers) - i)
            B, A = solver(layer, keys, resid)
            with torch.no_grad():
                arch.down_proj(model, layer).weight += (B @ A).to(torch.float32)
            stream.edited(layer)
            parts[layer].append((B.float(), A.float()))
            written.setdefault(layer, keys.float())
    # each round's columns follow the previous round's, in the same key order (see EditResult)
    factors = {l: (torch.cat([B for B, _ in p], 1), torch.cat([A for _, A in p], 0)) for l, p in parts.items()}
    stats["solve_rounds"] = rounds
    stats["gap_max"] = round(gap.max().item(), 4)
    stats["solve_seconds"] = round(time.perf_counter() - t0, 3)
    return EditResult(factors, written, stats)


def batch_rounds(reqs: list[Request]) -> list[list[int]]:
    """The batch as a sequence of edits in which no two facts share a raw key (see subject_slots).

    One offset fitted to several new facts of a subject at once carries their chat answers
    poorly (2 of 5 facts about one person; 5 of 5 added one at a time), so the k-th new fact
    about a subject goes into the k-th edit, with the earlier ones edited again beside it.
    """
    slots, _ = subject_slots(reqs)
    seen: dict[int, int] = {}
    rounds: list[list[int]] = []
    for i, slot in enumerate(slots.tolist()):
        k = seen[slot] = seen.get(slot, -1) + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    return rounds


def merged_stats(stats: list[dict]) -> dict:
    """One edit's statistics over its rounds: times add up, the rest is the worst round's."""
    return {k: round(sum(s[k] for s in stats), 3) if k.endswith("_seconds") else max(s[k] for s in stats)
            for k in stats[0]}


def owners(reqs: list[Request], new: int) -> list[int]:
    """The new fact whose edit holds each request's columns: its own, or for an active fact
    edited again, the first new fact sharing its raw key (forgetting that one removes both parts)."""
    slots, _ = subject_slots(reqs)
    first = {}
    for i in range(new):
        first.setdefault(int(slots[i]), i)
    return [i if i < new else first[int(slots[i])] for i in range(len(reqs))]


def split(result: EditResult, reqs: list[Request], owners: list[int]) -> list[Edit]:
    """One Edit per new fact: the columns of the batch's low-rank factors that belong to it.

    The batch update is a sum over key columns, so the facts' parts add up to it
    exactly and each can be reverted or rescaled on its own. Request i's columns
    go to the edit of `owners[i]`.
    """
    n = next(iter(result.keys.values())).shape[1]
    rounds = next(iter(result.factors.values()))[1].shape[0] // n
    mine: dict[int, list[int]] = {}
    col = 0
    for r, owner in zip(reqs, owners):
        width = 1 + len(r.questions)
        mine.setdefault(owner, []).extend(range(col, col + width))
        col += width
    edits = []
    for owner in sorted(mine):
        sl = torch.tensor(mine[owner])
        cols = torch.cat([sl + k * n for k in range(rounds)])
        # stored edits live on the CPU, wherever the model computed them
        edits.append(Edit(
            {l: (B[:, cols].to("cpu", copy=True), A[cols].to("cpu", copy=True))
             for l, (B, A) in result.factors.items()},
            {l: K[:, sl].to("cpu", copy=True) for l, K in result.keys.items()},
        ))
    return edits
