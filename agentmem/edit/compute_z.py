"""compute_z: the residual offset per subject that makes the model say each target."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .arch import for_model
from .config import MemitConfig
from .forward import _KV, _Upper, _buckets, _hidden_at, _pad
from .sites import Site


class _Group:
    """Sites optimised together. Tokens before the subject never see the edit,
    so their keys and values in the upper layers are computed once and only the
    tokens from the subject on are re-run at each optimisation step."""

    def __init__(self, model, arch, sites: list[Site], idx: list[int], pad_id: int, layer: int):
        self.idx = idx
        chosen = [sites[i] for i in idx]
        n = len(chosen)
        ids = _pad(chosen, pad_id)
        full_pos = torch.arange(ids.shape[1]).unsqueeze(0).expand(n, -1)
        hidden = _hidden_at(model, arch, ids, layer)
        rec = _KV()
        with torch.no_grad():
            base_out = _Upper(model, arch, layer + 1)(hidden, full_pos, kv=rec)
        pos = [s.pos for s in chosen]
        # the last token of a target is only ever predicted, never read: the loop leaves it out
        lens = [len(s.ids) - (s.target_span is not None and s.target_span[1] == len(s.ids)) for s in chosen]
        P, S = max(pos), max(l - p for l, p in zip(lens, pos))
        self.prefix = {}
        for li, (k, v) in rec.seen.items():
            pk = k.new_zeros(k.shape[0], k.shape[1], P, k.shape[3])
            pv = torch.zeros_like(pk)
            for j, p in enumerate(pos):
                pk[j, :, :p] = k[j, :, :p]
                pv[j, :, :p] = v[j, :, :p]
            self.prefix[li] = (pk, pv)
        self.suffix = hidden.new_zeros(n, S, hidden.shape[-1])
        for j, (p, l) in enumerate(zip(pos, lens)):
            self.suffix[j, : l - p] = hidden[j, p:l]
        self.positions = torch.tensor(pos)[:, None] + torch.arange(S)[None, :]
        q = torch.arange(S)
        mask = torch.zeros(n, 1, S, P + S, dtype=torch.bool)
        for j, p in enumerate(pos):
            mask[j, 0, :, :p] = True
        mask[:, 0, :, P:] = q[None, :] <= q[:, None]
        self.mask = mask
        self.h_sub = hidden[torch.arange(n), torch.tensor(pos)]
        self.req = torch.tensor([s.request for s in chosen])
        again = [(j, t - s.pos) for j, s in enumerate(chosen) for t in s.repeats if t < lens[j]]
        self.again_rows = torch.tensor([j for j, _ in again], dtype=torch.long)
        self.again_spos = torch.tensor([t for _, t in again], dtype=torch.long)
        # each target token is predicted from the token before it; positions count from the subject
        t_rows, t_spos, t_ids = [], [], []
        for j, s in enumerate(chosen):
            span = s.target_span or (len(s.ids), len(s.ids))
            for t in range(*span):
                t_rows.append(j)
                t_spos.append(t - 1 - s.pos)
                t_ids.append(s.ids[t])
        self.t_rows, self.t_spos, self.t_ids = (torch.tensor(x, dtype=torch.long) for x in (t_rows, t_spos, t_ids))
        self.t_req = self.req[self.t_rows]
        kl = [j for j, s in enumerate(chosen) if s.kind == "kl"]
        self.kl_rows = torch.tensor(kl, dtype=torch.long)
        kl_pos = torch.tensor([len(chosen[j].ids) - 1 for j in kl], dtype=torch.long)
        self.kl_spos = kl_pos - torch.tensor([chosen[j].pos for j in kl], dtype=torch.long)
        with torch.no_grad():
            head = model.get_output_embeddings()
            # per precision of the loop (see `anchor`); float32's comes free from the run above
            self.kl_ref = {torch.float32: F.log_softmax(head(base_out[self.kl_rows, kl_pos]), -1)}

    def subset(self, active: torch.Tensor) -> "_Group | None":
        """This group without the sequences of requests no longer `active` (a bool per request);
        None when none is left. Slicing keeps every cached tensor, where a rebuild would run the model."""
        keep = active[self.req]
        if bool(keep.all()):
            return self
        if not bool(keep.any()):
            return None
        rows = keep.nonzero().squeeze(1)
        renum = torch.full((len(keep),), -1, dtype=torch.long)
        renum[rows] = torch.arange(len(rows))
        g = copy.copy(self)
        g.idx = [self.idx[j] for j in rows.tolist()]
        g.prefix = {li: (k[rows], v[rows]) for li, (k, v) in self.prefix.items()}
        g.suffix, g.positions, g.mask = self.suffix[rows], self.positions[rows], self.mask[rows]
        g.h_sub, g.req = self.h_sub[rows], self.req[rows]
        for row_name, names in (("again_rows", ("again_spos",)),
                                ("t_rows", ("t_spos", "t_ids", "t_req")),
                                ("kl_rows", ("kl_spos",))):
            old = getattr(self, row_name)
            sel = keep[old]
            setattr(g, row_name, renum[old[sel]])
            for name in names:
                setattr(g, name, getattr(self, name)[sel])
        g.kl_ref = {dt: ref[keep[self.kl_rows]] for dt, ref in self.kl_ref.items()}
        return g

    @torch.no_grad()
    def anchor(self, upper: _Upper, head) -> None:
        """Compute the KL anchors' reference distribution in `upper`'s own arithmetic, at a zero offset.
        Against a float32 reference, bfloat16's rounding alone is a KL that the offset would learn to undo."""
        if upper.dtype not in self.kl_ref:
            out = self.run(upper, self.suffix.new_zeros(int(self.req.max()) + 1, self.suffix.shape[-1]))
            self.kl_ref[upper.dtype] = F.log_softmax(head(out[self.kl_rows, self.kl_spos]), -1)

    def run(self, upper: _Upper, delta: torch.Tensor) -> torch.Tensor:
        """Final-norm outputs of the suffix tokens with `delta` added at each subject token."""
        h = self.suffix.clone()
        h[:, 0] = h[:, 0] + delta[self.req]
        # the weights change wherever the subject ends, so an answer that names it again gets the
        # offset there too; optimised without it, the edit can break the answer's next word
        h[self.again_rows, self.again_spos] = h[self.again_rows, self.again_spos] + delta[self.req[self.again_rows]]
        return upper(h, self.positions, self.mask, _KV(self.prefix))


def _groups(model, arch, sites: list[Site], pad_id: int, layer: int) -> list[_Group]:
    buckets = _buckets(sites, lambda s: len(s.ids) - s.pos)
    return [_Group(model, arch, sites, b, pad_id, layer) for b in buckets]


class _NormalizedDescent:
    """Gradient descent on each offset (row of `delta`) with a step of fixed length along its
    gradient's direction: the length grows while that offset's loss falls and halves when it rises.

    Each offset's loss depends on that offset alone, so each keeps its own step length.
    """

    grow, shrink = 1.2, 0.5

    def __init__(self, delta: torch.Tensor, length: torch.Tensor):
        self.delta, self.length, self.last = delta, length.clone(), None

    def zero_grad(self):
        self.delta.grad = None

    @torch.no_grad()
    def step(self, loss: torch.Tensor):
        """Move every offset; `loss` (one per offset) is the loss the gradient was taken at."""
        if self.last is not None:
            self.length = torch.where(loss < self.last, self.length * self.grow, self.length * self.shrink)
        self.last = loss.clone()
        g = self.delta.grad
        self.delta -= self.length[:, None] * g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class _Adam(torch.optim.Adam):
    def step(self, loss=None):  # Adam needs no loss; the signature matches _NormalizedDescent's
        return super().step()


def compute_z(model, tokenizer, sites: list[Site], requests: int, last_layer: int, cfg: MemitConfig,
              slots: torch.Tensor | None = None):
    """Optimise one residual offset per subject at `last_layer` so the model says the targets.

    `slots` maps each request to its offset (`subject_slots`; default one each). Returns
    (deltas (n_requests, d), each request's offset; hidden states at `last_layer` (n_sites, d)
    before the edit; stats). Layers up to `last_layer` run once; only the layers above it
    run in the optimisation loop.
    """
    if slots is None:
        slots = torch.arange(requests)
    n_slots = int(slots.max()) + 1
    arch = for_model(model)
    lm_head = model.get_output_embeddings()
    use = [i for i, s in enumerate(sites) if cfg.z_prefixed or not s.prefixed]

    groups = _groups(model, arch, [sites[i] for i in use], tokenizer.pad_token_id or 0, last_layer)
    for g in groups:
        g.idx = [use[j] for j in g.idx]
    h_sub = torch.zeros(len(sites), groups[0].h_sub.shape[-1])
    for g in groups:
        h_sub[g.idx] = g.h_sub
    site_req = torch.tensor([sites[i].request for i in use])
    n_targets = torch.zeros(requests)
    for g in groups:
        n_targets.index_add_(0, g.t_req, torch.ones(len(g.t_req)))

    delta = torch.zeros(n_slots, h_sub.shape[-1], requires_grad=True)
    site_norm = h_sub[use].norm(dim=-1)
    site_slot = slots[site_req]
    h_norm = torch.stack([site_norm[site_slot == k].mean() for k in range(n_slots)])
    slot_norm = cfg.clamp_factor * h_norm
    if cfg.z_optimizer == "adam":
        opt = _Adam([delta], lr=cfg.lr)
    else:
        opt = _NormalizedDescent(delta, cfg.z_step * h_norm)
    nll_seen, worst_seen = torch.zeros(requests), torch.zeros(requests)
    active = torch.ones(n_slots, dtype=torch.bool)
    # bfloat16 steps are fast but see slightly different outputs: each offset is judged again, and
    # finished if need be, in float32, so what stops the loop is always the float32 model's answer
    upper = _Upper(model, arch, last_layer + 1, getattr(torch, cfg.z_dtype))
    every, step, float32_from = groups, 0, None
    for g in every:
        g.anchor(upper, lm_head)
    while True:
        # Subjects share no token, so each offset follows the path it would alone: one that has
        # reached all its requests' targets is kept and its sequences leave the (costly) loop.
        groups = [s for g in every if (s := g.subset(active[slots])) is not None]
        opt.zero_grad()
        nll = torch.zeros(requests)
        worst = torch.zeros(requests)
        kl = torch.zeros(requests)
        per_request = delta[slots]
        for g in groups:
            out = g.run(upper, per_request)
            if len(g.t_rows):
                logp = F.log_softmax(lm_head(out[g.t_rows, g.t_spos]), -1)
                tok_nll = -logp.gather(1, g.t_ids[:, None]).squeeze(1)
                nll = nll.index_add(0, g.t_req, tok_nll)
                worst = worst.scatter_reduce(0, g.t_req, tok_nll.detach(), "amax")
            if len(g.kl_rows):
                cur = F.log_softmax(lm_head(out[g.kl_rows, g.kl_spos]), -1)
                kl_site = F.kl_div(cur, g.kl_ref[upper.dtype], log_target=True, reduction="none").sum(-1)
                kl = kl.index_add(0, g.req[g.kl_rows], kl_site)
        nll = nll / n_targets
        running = active[slots]
        nll_seen[running], worst_seen[running] = nll.detach()[running], worst[running]
        unmet = (nll.detach() >= cfg.z_stop_nll) | (worst >= cfg.z_stop_token_nll)
        active &= torch.zeros(n_slots, dtype=torch.long).index_add(0, slots, unmet.long()) > 0
        if not active.any() or step == cfg.steps:
            if upper.dtype == torch.float32:
                break
            upper, float32_from = _Upper(model, arch, last_layer + 1), step
            active[:] = True
            continue
        wd = cfg.weight_decay * delta.norm(dim=-1) ** 2 / site_norm.mean() ** 2
        per_slot = torch.zeros(n_slots).index_add(0, slots, nll + cfg.kl_factor * kl) + wd
        per_slot[active].sum().backward()
        kept = delta.detach()[~active].clone()
        opt.step(per_slot.detach())
        step += 1
        with torch.no_grad():
            delta.mul_((slot_norm / delta.norm(dim=-1).clamp_min(1e-8)).clamp(max=1.0)[:, None])
            delta[~active] = kept  # Adam's momentum would move a finished offset on
    stats = {"z_steps": step, "z_nll_max": round(nll_seen.max().item(), 4),
             "z_token_nll_max": round(worst_seen.max().item(), 4)}
    if float32_from is not None:
        stats["z_float32_steps"] = step - float32_from
    return delta.detach()[slots], h_sub, stats
