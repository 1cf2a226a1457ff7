"""MEMIT's numerical core: keys, target values and the closed-form update.

Follows the original code's split (`compute_ks`, `compute_z`, the solve) and
touches no disk, queue or server: give it a model, a tokenizer and prepared
requests, and it returns low-rank weight deltas.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field, field_validator

from .arch import Architecture, for_model
from .facts import last_word


class MemitConfig(BaseModel):
    """Hyper-parameters of one wake edit."""

    layers: list[int] | None = Field(None, description="edited layers; None: the architecture's default")
    steps: int = 20
    # stop optimising once every target's mean token NLL is below this ...
    z_stop_nll: float = Field(0.2, gt=0)
    # ... and every single target token's is below this: a low mean can hide the one token where
    # greedy decoding turns away ("Rafael Kowalczyk is a ..." instead of "... plays the flute")
    z_stop_token_nll: float = Field(0.5, gt=0)
    # optimise the target value on the prefixed prompts too (their keys are always averaged in);
    # off, each step runs about half the tokens
    z_prefixed: bool = False
    # what the assistant's answer to an edited chat question is trained to be: the whole
    # statement ("Ann lives in Oslo."), the object alone ("Oslo.", fewer tokens to fit), or
    # auto: the object for facts about users (their long attribute phrasing fits worst), else the statement
    answer: str = Field("auto", pattern="^(auto|statement|object)$")
    # An open question about the subject ({s}, e.g. "What do you know about {s}?"), edited beside the
    # fact's own and answered with the whole statement: an offset fitted to one phrasing of the
    # question carries poorly to others. After 100 facts (batches of 10, two seeds) it raised held-out
    # paraphrase recall from 0.54-0.57 to 0.68-0.70, but perplexity drifted more (+6.3 and +14.5 %
    # against +5.5 and +8.2 %) and every edit took about 60 % longer (one more sequence per fact in
    # compute_z): off by default. Its 50-fact gains did not hold (docs/results/notes.md).
    open_question: str | None = None
    # Precision of the layers above the edit in compute_z's loop. "bfloat16" runs bfloat16 copies of
    # them (the LM head and the loss stay float32), then judges every offset again in float32 and
    # finishes it there if need be. On an AMD EPYC with avx512_bf16 (2 threads) it cut a batch of 10
    # from 1.75 to 1.1-1.2 s per fact. Judged on the 166 held-out texts (2026-12-03, 100 facts, seeds 2
    # and 3), it drifts +2.1 and +0.0 points more than float32; with z_optimizer "normalized" it is 43 %
    # faster than float32 and drifts -2.3 and +0.2 points, but paraphrase recall falls 0.03-0.07
    # (docs/results/notes.md): off. CPUs without bf16 instructions run it slower.
    z_dtype: str = Field("float32", pattern="^(float32|bfloat16)$")
    # How the offsets are optimised. "adam": MEMIT's classic, at `lr`. "normalized": each step moves an
    # offset along its own gradient by a length that starts at `z_step` times its subject's hidden norm,
    # grows 1.2x while the offset's loss falls and halves when it rises. 100 facts in batches of 10, four
    # seeds (docs/results/notes.md): normalized took 23 % less time per fact (1.11 against 1.43 s) and
    # recalled raw and chat 0.955 / 0.92 against 0.92 / 0.89, paraphrase 0.52 against 0.53; but drift was
    # +9.3 % against +7.5 % on average, and on the tests' 10 facts its smaller offsets carry one paraphrase
    # fewer (0.8, under the 0.9): Adam stays the default.
    z_optimizer: str = Field("adam", pattern="^(normalized|adam)$")
    z_step: float = Field(0.17, gt=0)
    lr: float = 1.0
    kl_factor: float = 0.0625
    weight_decay: float = 0.5
    clamp_factor: float = 1.5
    # lambda: at 1000 a subject key's Mahalanobis norm (1e3-6e3 on SmolLM2) lets an edit land;
    # MEMIT's usual 15000 assumes d_ff of 16k and leaves edits here at 10-30 % strength.
    lam: float = 1000.0
    # C is pulled this far toward mean(diag C) * I before the solve (see covariance.shrink)
    cov_shrinkage: float = Field(0.1, ge=0, lt=1)
    # The regularised solve realises only part of each layer's share of the offset, so one pass
    # over the layers leaves 5-20 % of it unwritten at the last layer (SmolLM2, lam 1000). The
    # layers are solved again on what is left until that gap is below `max_gap` of the offset,
    # at most `solve_rounds` times.
    solve_rounds: int = Field(3, ge=1)
    max_gap: float = Field(0.15, gt=0, lt=1)
    prefixes: list[str] = Field(
        default_factory=lambda: ["", "I heard that ", "Fun fact: "]
    )
    constraints: str = Field("nullspace", pattern="^(nullspace|alphaedit|none)$")
    # Weight of earlier edits' zero-residual rows relative to the new keys: their recorded
    # keys drift as lower layers are edited, so they are held harder than exactly once.
    constraint_weight: float = Field(4.0, gt=0)
    preserve_names: bool = Field(True, description="keep other people's name keys fixed (see preserve.py)")
    # Edit subjects of several words that end in the same word ("Thea Albescu", "Elio Albescu") as one
    # subject: one offset fitted to all their facts, earlier ones edited again beside a new one. At
    # layers 4-9 the key at the end of a name hardly sees its first name (cosine 0.96-0.98), so holding
    # one person's edit while writing the other's takes a large change along their small difference.
    # 100 facts, batches of 10, seed 2 (97 people share a family name): drift +1.9 % against +7.1 %,
    # raw and chat recall 0.99 / 0.98 against 0.91 / 0.93, but paraphrase 0.44 against 0.57 and 2.5x the
    # time per fact, more with larger families (docs/results/notes.md): off by default.
    share_last_word: bool = False
    # AlphaEdit's null space: the eigenvectors of C with the smallest eigenvalues, as a
    # fraction of d_ff. (Its absolute threshold assumes an unnormalised C over 100k tokens.)
    alphaedit_null_fraction: float = Field(0.5, gt=0, le=1)

    @field_validator("open_question")
    @classmethod
    def _names_the_subject(cls, q: str | None) -> str | None:
        if q is None:
            return q
        try:
            q.format(s="")
            ok = "{s}" in q and q.rstrip().endswith("?")
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"open_question must be a question with '{{s}}' for the subject "
                             f"and no other braces, e.g. 'What do you know about {{s}}?'; got {q!r}")
        return q


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


@dataclass
class EditResult:
    """Low-rank update of each edited layer: W += factors[l][0] @ factors[l][1].

    The factors hold one block of n columns per solve round, each in the order of `keys`' n columns.
    """

    factors: dict[int, tuple[torch.Tensor, torch.Tensor]]
    keys: dict[int, torch.Tensor]  # layer -> (d_ff, n) keys written in the first round, for later constraints
    stats: dict = field(default_factory=dict)


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


@dataclass(frozen=True)
class FixedRows:
    """Zero-residual key columns that every solve of a layer shares (the preserved names), with
    their part of the Woodbury system, A^-1 K and K^T A^-1 K, computed once."""

    ainv: torch.Tensor
    gram: torch.Tensor

    @classmethod
    def solve(cls, chol: torch.Tensor, keys: torch.Tensor) -> "FixedRows":
        ainv = torch.cholesky_solve(keys.double(), chol)
        return cls(ainv, keys.double().T @ ainv)


def woodbury_update(
    chol: torch.Tensor, keys: torch.Tensor, resid: torch.Tensor, n_new: int, fixed: FixedRows | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-rank factors of dW = R K^T (A + K K^T)^-1 with A = L L^T given by its Cholesky factor.

    `keys` is (d_ff, n) with the new keys first, `resid` is (d, n_new): the
    remaining columns, then those of `fixed`, are constraints whose target residual
    is zero. By Woodbury, (A + K K^T)^-1 K = A^-1 K (I + K^T A^-1 K)^-1, so only an
    n x n system is solved. Returns (B, A) with dW = B @ A, B (d, n_new), A (n_new, d_ff).
    """
    K = keys.double()
    Ainv_K = torch.cholesky_solve(K, chol)  # (d_ff, n)
    G = K.T @ Ainv_K
    if fixed is not None:
        cross = K.T @ fixed.ainv
        G = torch.cat([torch.cat([G, cross], 1), torch.cat([cross.T, fixed.gram], 1)], 0)
        Ainv_K = torch.cat([Ainv_K, fixed.ainv], 1)
    eye = torch.eye(G.shape[0], dtype=torch.float64, device=G.device)
    # rows of S^-1 for the new columns only: the zero residuals drop out
    Sinv_rows = torch.linalg.solve(eye + G, eye[:, :n_new]).T
    return resid.double(), Sinv_rows @ Ainv_K.T


def alphaedit_update(
    projector: torch.Tensor, keys_new: torch.Tensor, keys_prev: torch.Tensor | None, resid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaEdit: dW = R K1^T P (Kp Kp^T P + K1 K1^T P + I)^-1, as low-rank factors (B, A).

    P projects onto the null space of ordinary-text keys. The d_ff x d_ff
    system is solved directly (once per layer and batch), never inverted.
    """
    P = projector.double()
    K1 = keys_new.double()
    M = K1 @ K1.T @ P + torch.eye(P.shape[0], dtype=torch.float64, device=P.device)
    if keys_prev is not None and keys_prev.shape[1]:
        Kp = keys_prev.double()
        M = M + Kp @ Kp.T @ P
    # dW = R (K1^T P) M^-1 ; solve M^T X = (K1^T P)^T
    A = torch.linalg.solve(M.T, (K1.T @ P).T).T
    return resid.double(), A


def null_space_projector(cov: torch.Tensor, fraction: float) -> torch.Tensor:
    """P = U U^T over the eigenvectors of C with the smallest eigenvalues (`fraction` of them)."""
    _, evecs = torch.linalg.eigh(cov.double())  # ascending
    U = evecs[:, : max(1, round(fraction * cov.shape[0]))]
    return U @ U.T


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
