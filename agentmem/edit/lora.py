"""A set of wake edits as one LoRA on the down projections: exactly, or compacted to a rank limit.

Each fact's edit is per layer a low-rank pair with dW = B A (B: d x k, A: k x d_ff). Scaled and summed,
their columns stacked side by side are already a LoRA of rank sum(k): nothing is retrained. When that rank
exceeds what the serving engine takes, the layer's dW is re-factorised by SVD: exactly where its true rank
fits the limit, else truncated to the largest singular values, and the part left out is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .memit import Edit


@dataclass
class LayerLora:
    """dW = B @ A for one layer, and what compaction left out of it (0: exact)."""

    B: torch.Tensor  # (d, r)
    A: torch.Tensor  # (r, d_ff)
    lost: float = 0.0  # |dW - B A|_F / |dW|_F

    @property
    def rank(self) -> int:
        return self.A.shape[0]


def stacked(edits: list[tuple[Edit, float]]) -> dict[int, LayerLora]:
    """The edits at their scales as one LoRA per layer, rank = their summed ranks; edits at scale 0 drop out."""
    live = [(e, s) for e, s in edits if s != 0]
    layers = sorted({l for e, _ in live for l in e.factors})
    out = {}
    for l in layers:
        parts = [(s * e.factors[l][0].double(), e.factors[l][1].double()) for e, s in live if l in e.factors]
        out[l] = LayerLora(torch.cat([B for B, _ in parts], 1), torch.cat([A for _, A in parts], 0))
    return out


def compacted(lora: LayerLora, max_rank: int, tol: float = 1e-9) -> LayerLora:
    """`lora` with rank at most `max_rank`: unchanged if it fits, else its SVD cut at `max_rank`.

    The SVD is taken through thin QR factors of B and A, so it costs (d + d_ff) r^2, never d x d_ff x r.
    Singular values below `tol` of the largest are dropped even when the rank fits: they are rounding.
    """
    if lora.rank <= max_rank:
        return lora
    Qb, Rb = torch.linalg.qr(lora.B.double())
    Qa, Ra = torch.linalg.qr(lora.A.double().T)
    U, S, Vh = torch.linalg.svd(Rb @ Ra.T)
    true_rank = int((S > tol * S[0]).sum()) if len(S) and S[0] > 0 else 0
    keep = min(max_rank, true_rank)
    total = S.square().sum()
    lost = (S[keep:].square().sum() / total).sqrt().item() if total > 0 else 0.0
    root = S[:keep].sqrt()
    B = Qb @ U[:, :keep] * root
    A = (root[:, None] * Vh[:keep]) @ Qa.T
    return LayerLora(B, A, lost)
