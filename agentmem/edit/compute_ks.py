"""compute_ks: the keys an edit writes at one layer, and the outputs it must move."""

from __future__ import annotations

import torch

from .forward import SubjectStream
from .sites import Site


def _group_keys(per_site: torch.Tensor, sites: list[Site], requests: int) -> torch.Tensor:
    cols = []
    for r in range(requests):
        raw = [i for i, s in enumerate(sites) if s.request == r and s.kind == "raw"]
        cols.append(per_site[raw].mean(0))
        cols += [per_site[i] for i, s in enumerate(sites) if s.request == r and s.kind == "question"]
    return torch.stack(cols, 1)


def compute_ks(model, stream: SubjectStream, sites: list[Site], requests: int, layer: int, out_layer: int):
    """Keys (d_ff, n) at `layer`: each request's raw prompt averaged over prefixes, then one per
    chat question; and the current outputs of `out_layer` at every site (n_sites, d)."""
    per_site, outs = stream.capture(model, [layer], [out_layer])
    return _group_keys(per_site[layer], sites, requests), outs[out_layer]


def _target_sites(sites: list[Site]) -> list[int]:
    """Indices of the sites whose outputs the update must move: the unprefixed raw prompt and every question."""
    chosen, seen_raw = [], set()
    for i, s in enumerate(sites):
        if s.kind == "raw" and s.request not in seen_raw:
            seen_raw.add(s.request)
            chosen.append(i)
        elif s.kind == "question":
            chosen.append(i)
    return chosen
