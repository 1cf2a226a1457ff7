"""The wake editor: turns validated facts into committed MEMIT edits on the training copy.

It owns the model used for editing and keeps the ledger, the edit files, the
training copy and the published versions in step: a fact becomes "active"
only after its edit is on disk, and a failure leaves the weights as they were.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from . import memit
from .adapter_slot import AdapterSlot
from .arch import for_model, num_layers
from .covariance import CovarianceCache, fingerprint, shrink
from .facts import Fact
from .preserve import cached_preservation_keys, preservation_keys
from .ledger import ACTIVE, FAILED, FORGOTTEN, PENDING, QUEUED, SUPERSEDED, FencedOut, Ledger
from .store import Edit, WeightStore

log = logging.getLogger(__name__)


def answer_for(fact: Fact, mode: str = "auto") -> str:
    """The assistant's answer to the fact's own questions (see MemitConfig.answer)."""
    short = mode == "object" or (mode == "auto" and fact.attribute is not None)
    return f"{fact.object}." if short else fact.statement


def to_request(fact: Fact, cfg: memit.MemitConfig) -> memit.Request:
    answer = answer_for(fact, cfg.answer)
    questions = [(q, answer) for q in fact.questions()]
    if cfg.open_question:
        questions.append((cfg.open_question.format(s=fact.subject), fact.statement))
    return memit.Request(subject=fact.subject, prompt=fact.completion_prompt, target=" " + fact.object,
                         questions=questions, by_last_word=cfg.share_last_word)


class WakeEditor:
    def __init__(self, model, tokenizer, model_dir: Path, store_root: Path, ledger: Ledger,
                 cache_dir: Path, cfg: memit.MemitConfig, cov_samples: int = 512,
                 cov_text: Path | None = None, progress=None, fence: int | None = None):
        self.model, self.tok, self.ledger, self.cfg = model, tokenizer, ledger, cfg
        # new edits are computed through the adapter the newest version serves: a target
        # value found without it can miss once the adapter sits on top of the edit
        self.adapter = AdapterSlot(model)
        self.arch = for_model(model)
        self.layers = cfg.layers or self.arch.default_edit_layers(num_layers(model))
        self.store = WeightStore(store_root, model_dir, self.arch, self.layers)
        self.fingerprint = fingerprint(model_dir)
        self.cov = CovarianceCache(cache_dir, self.fingerprint).get(
            model, tokenizer, self.layers, cov_samples, cov_text, progress
        )
        self._chol: dict[int, torch.Tensor] = {}
        self._proj: dict[int, torch.Tensor] = {}
        self._fixed: dict[int, memit.FixedRows] = {}
        self._preserve = self._preservation_keys(cache_dir) if cfg.preserve_names else None
        # The writer lock's token (see writer_lock.py): every commit is fenced with it.
        self.fence = fence
        # The version whose weights the model holds as this editor left them (None: unknown, or
        # changed since): recover() skips rebuilding them when no other writer has published since.
        self._synced: int | None = None
        self.recover()

    # -- state -----------------------------------------------------------

    def active(self) -> list[tuple[str, float]]:
        return [(f["id"], f["scale"]) for f in self.ledger.facts(status=ACTIVE)]

    def _preservation_keys(self, cache_dir: Path) -> dict[int, torch.Tensor]:
        """Keys of the preserved names on the unedited model (recover() reloads the edits after)."""

        def compute():
            self._load_weights(self.store.base)
            return preservation_keys(self.model, self.tok, self.layers)

        return cached_preservation_keys(cache_dir, self.fingerprint, self.layers, compute)

    def _load_weights(self, tensors: dict[int, torch.Tensor]) -> None:
        self._synced = None
        with torch.no_grad():
            for l, w in tensors.items():
                self.arch.down_proj(self.model, l).weight.copy_(w)

    def recover(self) -> None:
        """Bring disk and model in line with the ledger after a crash, or after another process wrote.

        A fact whose edit was being computed goes back to the queue: its edit
        was never committed, so running it again applies it exactly once.
        """
        with self.ledger.transaction(self.fence):
            for f in self.ledger.facts(status=PENDING):
                self.ledger.set_status(f["id"], QUEUED, reason="interrupted before its edit was committed; queued again")
        active_ids = {fid for fid, _ in self.active()}
        for fid in self.store.edit_ids() - active_ids:
            self.store.delete_edit(fid)
        latest = self.ledger.latest_version()
        if latest == 0 or not self.store.version_dir(latest).exists():
            self._publish("recover", [])
            return
        if latest != self._synced:
            active = self.active()
            tensors = self.store.materialise(active)
            self._load_weights(tensors)
            if self.store.training_active() != [tuple(a) for a in active]:
                self.store.write_training(tensors, active)
            self._synced = latest
        self.follow_adapter()

    def _publish(self, kind: str, fids: list[str], active: list[tuple[str, float]] | None = None, commit=None,
                 adapter: dict | None | str = "keep") -> int:
        """Make `active` (default: the ledger's) the training copy and the next published version.

        The version serves `adapter` ({"name", "path"}, None for none, or by
        default the previous version's). The files are written first; the
        version and the facts' new statuses (`commit(n)`) then land in one
        ledger transaction, so readers and `Memory.wait` never see a fact as
        done before its version exists.
        """
        active = self.active() if active is None else active
        tensors = self.store.materialise(active)
        self._load_weights(tensors)
        self.store.write_training(tensors, active)
        n = self.ledger.latest_version() + 1
        if adapter == "keep":
            name = (self.ledger.version(n - 1) or {}).get("adapter")
            adapter = name and {"name": name, "path": f"adapters/{name}"}
        self.store.publish(n, tensors, {"kind": kind, "facts": fids, "active": active, "adapter": adapter})
        with self.ledger.transaction(self.fence):
            self.ledger.add_version(n, kind, facts=fids, active=len(active), adapter=adapter and adapter["name"])
            if commit is not None:
                commit(n)
        self._synced = n
        self.store.prune_versions(keep=5)
        self.follow_adapter()
        return n

    def follow_adapter(self) -> None:
        """Carry the adapter the newest version serves (another process may have published it)."""
        name = (self.ledger.version(self.ledger.latest_version()) or {}).get("adapter")
        self.adapter.set(name, name and self.store.root / "adapters" / name)

    # -- solving ---------------------------------------------------------

    def _constraint_keys(self, active: list[str]) -> dict[int, torch.Tensor]:
        """Zero-residual rows of the given active edits (none when constraints are off); the solver adds
        the preserved names'."""
        fids = active if self.cfg.constraints != "none" else []
        return {l: self.cfg.constraint_weight * k for l, k in self.store.constraint_keys(fids).items()}

    def _sharing_a_key(self, reqs: list[memit.Request], kept: set[str],
                       earlier: dict[str, memit.Request]) -> dict[str, memit.Request]:
        """The kept active facts, and the `earlier` facts of this batch, whose raw key is one of
        `reqs`' (see memit.subject_slots), by id.

        Such a fact is edited again with the new ones: its raw key must move to carry the new
        fact, so it cannot be held fixed as a constraint, and its answers are kept by fitting
        the subject's new offset to them too.
        """
        contexts = {memit.raw_context(r) for r in reqs}
        rows = self.ledger.active_about({r.subject for r in reqs}, by_last_word=self.cfg.share_last_word)
        found = {r["id"]: to_request(Fact.parse(r["fact"]), self.cfg) for r in rows if r["id"] in kept}
        found.update(earlier)
        return {fid: r for fid, r in found.items() if memit.raw_context(r) in contexts}

    def _solver(self, prev: dict[int, torch.Tensor]):
        mode = self.cfg.constraints

        def solve(layer, keys, resid):
            # C, the stored keys and the preserved names live on the CPU; the solve runs where the keys are
            held = None if self._preserve is None else self._preserve[layer]
            earlier = prev[layer].to(keys)
            if mode == "alphaedit":
                if layer not in self._proj:
                    self._proj[layer] = memit.null_space_projector(self.cov[layer].to(keys.device),
                                                                   self.cfg.alphaedit_null_fraction)
                rows = earlier if held is None else torch.cat([earlier, held.to(keys)], 1)
                return memit.alphaedit_update(self._proj[layer], keys, rows, resid)
            if layer not in self._chol:
                A = self.cfg.lam * shrink(self.cov[layer].to(keys.device), self.cfg.cov_shrinkage)
                A = A + 1e-6 * A.diagonal().mean() * torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
                self._chol[layer] = torch.linalg.cholesky(A)
                if held is not None:
                    # the preserved names are in every solve: their part of the system is solved once
                    self._fixed[layer] = memit.FixedRows.solve(self._chol[layer], held.to(keys.device))
            allk = torch.cat([keys, earlier], 1)
            return memit.woodbury_update(self._chol[layer], allk, resid, keys.shape[1], self._fixed.get(layer))

        return solve

    # -- edits -----------------------------------------------------------

    def _plan(self, facts: list[Fact]):
        """Sort a batch into what to edit, what it retires, and what it never needs to edit.

        Repeating an active fact is a no-op. A new object for a (user, subject,
        relation) already known supersedes the active fact; within one batch
        the last statement wins and the earlier ones are recorded as superseded.
        Returns (ids, todo [(id, fact, row)], retired {old id: new id},
        shadowed [(id, fact, new id)]).
        """
        ids = [f.fact_id() for f in facts]
        last = {f.key: (fid, f) for fid, f in zip(ids, facts)}
        winners = {w for w, _ in last.values()}
        shadowed, seen = [], set()
        for fid, f in zip(ids, facts):
            winner = last[f.key][0]
            if fid not in winners and fid not in seen:
                seen.add(fid)
                shadowed.append((fid, f, winner))
        todo, retired = [], {}
        for fid, f in last.values():
            row = self.ledger.get(fid)
            if row and row["status"] == ACTIVE:
                continue
            todo.append((fid, f, row))
            for old in self.ledger.active_with_key(f.user_id, f.subject, f.relation):
                retired[old["id"]] = fid
        return ids, todo, retired, shadowed

    def edit(self, facts: list[Fact]) -> tuple[list[str], dict]:
        """Write `facts` into the weights as one batch; returns (fact ids, stats)."""
        ids, todo, retired, shadowed = self._plan(facts)
        with self.ledger.transaction(self.fence):
            for fid, f, new in shadowed:
                why = f"superseded by {new} in the same batch"
                row = self.ledger.get(fid)
                if row is None:
                    self.ledger.add_fact(fid, f, SUPERSEDED, reason=why)
                elif row["status"] != ACTIVE:
                    self.ledger.set_status(fid, SUPERSEDED, reason=why)
            for fid, f, row in todo:
                if row is None:
                    self.ledger.add_fact(fid, f, PENDING)
                else:
                    self.ledger.set_status(fid, PENDING, reason="editing")
        if not todo:
            return ids, {"edited": 0}
        keep = [(fid, sc) for fid, sc in self.active() if fid not in retired]

        def commit(n: int) -> None:
            for fid, _, _ in todo:
                self.ledger.set_status(fid, ACTIVE, stage=0, scale=1.0, version_added=n)
            for fid in retired:
                self.ledger.set_status(fid, SUPERSEDED, reason=f"superseded by {retired[fid]}",
                                       scale=0.0, version_removed=n)

        t0 = time.perf_counter()
        try:
            if retired:
                # the new edits are computed against the weights without the facts they replace
                self._load_weights(self.store.materialise(keep))
            parts = self._write({fid: to_request(f, self.cfg) for fid, f, _ in todo}, keep)
            seconds = time.perf_counter() - t0
            n = self._publish("wake", [fid for fid, _, _ in todo], keep + [(fid, 1.0) for fid, _, _ in todo], commit)
        except BaseException as e:
            for fid, _, _ in todo:
                self.store.delete_edit(fid)
            self._load_weights(self.store.materialise(self.active()))
            try:
                with self.ledger.transaction(self.fence):
                    for fid, _, _ in todo:
                        self.ledger.set_status(fid, FAILED, reason=f"edit failed: {type(e).__name__}: {e}")
            except FencedOut:
                pass  # a newer writer owns the ledger now; it re-runs these facts from the queue
            raise
        for fid in retired:
            self.store.delete_edit(fid)
        stats = {"edited": len(todo), "superseded": len(retired) + len(shadowed), "seconds": round(seconds, 3),
                 "version": n, "rounds": len(parts), **_merged(parts)}
        log.info("wake edit: %s", stats)
        return ids, stats

    def _write(self, reqs: dict[str, memit.Request], keep: list[tuple[str, float]]) -> list[dict]:
        """Compute and save the edits of `reqs` (by fact id) on the loaded weights, which hold `keep`;
        returns each round's statistics."""
        order = list(reqs)
        done: list[str] = []  # facts of `reqs` whose edits are applied and saved
        parts = []
        for part in _rounds(list(reqs.values())):
            new = [order[i] for i in part]
            again = self._sharing_a_key([reqs[f] for f in new], {fid for fid, _ in keep},
                                        {f: reqs[f] for f in done})
            prev = self._constraint_keys([fid for fid, _ in keep if fid not in again] +
                                         [f for f in done if f not in again])
            every = [reqs[f] for f in new] + list(again.values())
            result = memit.execute(self.model, self.tok, every, self.cfg, self.layers, self._solver(prev))
            for fid, edit in zip(new, _split(result, every, _owners(every, len(new)))):
                self.store.save_edit(fid, edit)
                done.append(fid)
            parts.append(result.stats)
        return parts

    def publish_adapter(self, src: Path | None) -> int:
        """Publish a new version serving the LoRA adapter in folder `src` (None: no adapter) with the same edits."""
        n = self.ledger.latest_version() + 1
        adapter = None
        if src is not None:
            name = f"a{n:06d}"
            adapter = {"name": name, "path": self.store.save_adapter(name, src)}
        return self._publish("adapter", [], adapter=adapter)

    def forget(self, fid: str) -> int:
        row = self.ledger.get(fid)
        if row is None:
            raise KeyError(f"no fact with id {fid!r}")
        if row["status"] == FORGOTTEN:
            return self.ledger.latest_version()
        reason = "forgotten on request"
        if row["status"] != ACTIVE:
            with self.ledger.transaction(self.fence):
                self.ledger.set_status(fid, FORGOTTEN, reason=reason, scale=0.0)
            return self.ledger.latest_version()
        rest = [(f, sc) for f, sc in self.active() if f != fid]
        # A fact about the same subject edited in fid's batch or later re-fitted fid's answers beside
        # its own (see _sharing_a_key), and those columns sit in its edit: such facts are edited
        # again without fid, or the model would still give fid's object.
        refit = {f: r for f, r in self._sharing_a_key([to_request(Fact.parse(row["fact"]), self.cfg)],
                                                      {f for f, sc in rest if sc > 0}, {}).items()
                 if self.ledger.get(f)["version_added"] >= row["version_added"]}
        old = {f: self.store.load_edit(f) for f in refit}

        def commit(n: int) -> None:
            self.ledger.set_status(fid, FORGOTTEN, reason=reason, scale=0.0, version_removed=n)
            for f in refit:
                self.ledger.event(f, "re-edited", reason=f"edited again without forgotten fact {fid}", version=n)

        try:
            if refit:
                keep = [(f, sc) for f, sc in rest if f not in refit]
                self._load_weights(self.store.materialise(keep))
                self._write(refit, keep)
            n = self._publish("forget", [fid], rest, commit)
        except BaseException:
            for f, edit in old.items():
                self.store.save_edit(f, edit)
            self._load_weights(self.store.materialise(self.active()))
            raise
        self.store.delete_edit(fid)
        return n


def _rounds(reqs: list[memit.Request]) -> list[list[int]]:
    """The batch as a sequence of edits in which no two facts share a raw key (see memit.subject_slots).

    One offset fitted to several new facts of a subject at once carries their chat answers
    poorly (2 of 5 facts about one person; 5 of 5 added one at a time), so the k-th new fact
    about a subject goes into the k-th edit, with the earlier ones edited again beside it.
    """
    slots, _ = memit.subject_slots(reqs)
    seen: dict[int, int] = {}
    rounds: list[list[int]] = []
    for i, slot in enumerate(slots.tolist()):
        k = seen[slot] = seen.get(slot, -1) + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    return rounds


def _merged(stats: list[dict]) -> dict:
    """One edit's statistics over its rounds: times add up, the rest is the worst round's."""
    return {k: round(sum(s[k] for s in stats), 3) if k.endswith("_seconds") else max(s[k] for s in stats)
            for k in stats[0]}


def _owners(reqs: list[memit.Request], new: int) -> list[int]:
    """The new fact whose edit holds each request's columns: its own, or for an active fact
    edited again, the first new fact sharing its raw key (forgetting that one removes both parts)."""
    slots, _ = memit.subject_slots(reqs)
    first = {}
    for i in range(new):
        first.setdefault(int(slots[i]), i)
    return [i if i < new else first[int(slots[i])] for i in range(len(reqs))]


def _split(result: memit.EditResult, reqs: list[memit.Request], owners: list[int]) -> list[Edit]:
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
