"""The wake editor: turns validated facts into committed MEMIT edits on the training copy.

It owns the model used for editing and keeps the ledger, the edit files, the
training copy and the published versions in step: a fact becomes "active"
only after its edit is on disk, and a failure leaves the weights as they were.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from ..edit import memit
from ..edit.arch import for_model, num_layers
from ..edit.config import MemitConfig
from ..edit.lora import compacted, stacked
from ..edit.preserve import preservation_keys
from ..edit.requests import Request, raw_context, to_request
from ..edit.solve import LayerSolver
from ..facts import SHARED, Fact
from ..serving.adapter_slot import AdapterSlot
from ..serving.scope_overlay import ScopeOverlay
from ..storage.cache import CovarianceCache, cached_preservation_keys, fingerprint
from ..storage.layout import Layout
from ..storage.lora_adapter import merge_adapters
from ..storage.ledger import ACTIVE, FORGOTTEN, PENDING, RE_EDITED, FencedOut, Ledger
from ..storage.published import newest_user, trained_on
from ..storage.weights import WeightStore
from .shards import shard_of
from .writer_lock import Lease

log = logging.getLogger(__name__)


class WakeEditor:
    """Edits facts into the shared scope (the training copy and the published versions) or into a user's scope
    (that user's adapter, computed on the shared weights plus their own edits; see method.md section 7).

    `max_rank` caps a user adapter's rank (the serving engine's max_lora_rank)."""

    def __init__(self, model, tokenizer, model_dir: Path, layout: Layout, ledger: Ledger,
                 cache_dir: Path, cfg: MemitConfig, cov_samples: int = 512,
                 cov_text: Path | None = None, progress=None, fence: int | None = None, max_rank: int = 64,
                 overlay: ScopeOverlay | None = None, shard: int = 0, shards: int = 1):
        self.model, self.tok, self.ledger, self.cfg = model, tokenizer, ledger, cfg
        self.max_rank = max_rank
        # new edits are computed through the adapter the newest version serves: a target
        # value found without it can miss once the adapter sits on top of the edit
        self.adapter = AdapterSlot(model)
        # a user's published adapter, added over the shared weights while that user is read
        self.overlay = overlay or ScopeOverlay(self.adapter.param)
        self.arch = for_model(model)
        self.layers = cfg.layers or self.arch.default_edit_layers(num_layers(model))
        self.store = WeightStore(layout, model_dir, self.arch, self.layers)
        self.fingerprint = fingerprint(model_dir)
        cov = CovarianceCache(cache_dir, self.fingerprint).get(model, tokenizer, self.layers, cov_samples, cov_text,
                                                               progress)
        self.solver = LayerSolver(cov, cfg, self._preservation_keys(cache_dir) if cfg.preserve_names else None)
        # The writer lock's token (see writer/writer_lock.py): every commit is fenced with it.
        self.fence = fence
        # The writer shard whose scopes this editor applies now (writer/shards.py); shard 0 owns the shared one
        self.shard, self.shards = shard, shards
        self.lease: Lease | None = None  # the held writer lock, in Redis mode
        # The version whose weights the model holds as this editor left them (None: unknown, or
        # changed since): recover() skips rebuilding them when no other writer has published since.
        self._synced: int | None = None
        self._shared: dict[int, torch.Tensor] | None = None  # the shared edited tensors, as last published
        self.recover()

    # -- state -----------------------------------------------------------

    def owns(self, scope: str) -> bool:
        return shard_of(scope, self.shards) == self.shard

    def transaction(self):
        """A ledger transaction fenced with this writer's token, of its shard."""
        return self.ledger.transaction(self.fence, self.shard)

    def active(self, scope: str = SHARED) -> list[tuple[str, float]]:
        return [(f["id"], f["scale"]) for f in self.ledger.facts(status=ACTIVE, scope=scope)]

    def shared_weights(self) -> dict[int, torch.Tensor]:
        if self._shared is None:
            self._shared = self.store.materialise(self.active())
        return self._shared

    def _load_shared(self) -> None:
        """Back to the shared weights as last published (after a user's edit, or a write that failed)."""
        synced = self._synced
        self._load_weights(self.shared_weights())
        self._synced = synced

    def hold(self, scope: str) -> None:
        """Make the model answer for `scope`: the shared weights, plus a user's newest published adapter."""
        self.overlay.hold_user(newest_user(self.store.layout, self.ledger, scope))

    def _preservation_keys(self, cache_dir: Path) -> dict[int, torch.Tensor]:
        """Keys of the preserved names on the unedited model (recover() reloads the edits after)."""

        def compute():
            self._load_weights(self.store.base)
            return preservation_keys(self.model, self.tok, self.layers)

        return cached_preservation_keys(cache_dir, self.fingerprint, self.layers, compute)

    def _load_weights(self, tensors: dict[int, torch.Tensor]) -> None:
        self._synced = None
        self.overlay.release()
        with torch.no_grad():
            for l, w in tensors.items():
                self.arch.down_proj(self.model, l).weight.copy_(w)

    def recover(self) -> None:
        """Bring disk and model in line with the ledger after a crash, or after another process wrote.

        A fact whose edit was being computed goes back to the queue: its edit
        was never committed, so running it again applies it exactly once.
        """
        self.store.token, self.store.shard = self.fence, self.shard
        # another process may have rewritten any edit since this one last held the lock (a user's refit, say)
        self.store.forget_cached()

        def tidy() -> None:
            # only this shard's: another shard's writer may be editing its own scopes now
            self.store.clean_staging()
            for f in self.ledger.facts(status=PENDING):
                if self.owns(f["scope"]):
                    self.ledger.queued(f["id"], reason="interrupted before its edit was committed; queued again")
            rows = {f["id"]: f for f in self.ledger.facts()}
            for fid in self.store.edit_ids():
                row = rows.get(fid)
                # a file no fact owns any more is shard 0's to clear
                mine = self.shard == 0 if row is None else self.owns(row["scope"])
                if mine and (row is None or row["status"] != ACTIVE):
                    self.store.delete_edit(fid)

        self._commit_files(tidy)
        latest = self.ledger.latest_version()
        if latest == 0 or not self.store.layout.version_dir(latest).exists():
            if self.shard == 0:
                self._publish("recover", [])
            else:  # the shared versions are shard 0's to publish: read the shared weights from the edits
                self._load_shared()
            return
        if latest != self._synced:
            active = self.active()
            tensors = self._shared = self.store.materialise(active)
            self._load_weights(tensors)
            if self.shard == 0 and self.store.training_active() != [tuple(a) for a in active]:
                self.store.write_training(tensors, active)
                self._commit_files()
            self._synced = latest
        self.follow_adapter()

    def _commit_files(self, body=None) -> None:
        """Move the staged files into place inside one fenced ledger transaction, with `body()`'s ledger changes:
        a writer whose lock passed to another never changes what that writer committed, and a ledger that
        cannot commit (a full disk) leaves every file as it was."""
        try:
            with self.transaction():
                self.store.commit()
                if body is not None:
                    body()
        except BaseException:
            self.store.undo()
            self.store.discard()
            raise
        self.store.settle()

    def ensure_held(self) -> None:
        """Raise FencedOut if this writer's lock was lost (a night checks between its steps)."""
        if self.lease is not None and self.lease.lost.is_set():
            raise FencedOut(f"the writer lock (token {self.fence}) was lost; another writer may hold it")

    def _publish(self, kind: str, fids: list[str], active: list[tuple[str, float]] | None = None, commit=None,
                 adapter: dict | None | str = "keep") -> int:
        """Make `active` (default: the ledger's) the training copy and the next published version.

        The version serves `adapter` ({"name", "path"}, None for none, or by
        default the previous version's). The files are staged first; they move
        into place, and the version and the facts' new statuses (`commit(n)`)
        land, in one fenced ledger transaction, so readers and `Memory.wait`
        never see a fact as done before its version exists.
        """
        if self.shard != 0:
            raise RuntimeError(f"writer shard {self.shard} tried to publish a shared version: only shard 0 does")
        active = self.active() if active is None else active
        tensors = self.store.materialise(active)
        self._shared = None
        self._load_weights(tensors)
        n = self.ledger.latest_version() + 1
        if adapter == "keep":
            name = (self.ledger.version(n - 1) or {}).get("adapter")
            adapter = name and {"name": name, "path": Layout.adapter_ref(name)}
        try:
            self.store.write_training(tensors, active)
            self.store.publish(n, tensors, {"kind": kind, "facts": fids, "active": active, "adapter": adapter})
        except BaseException:
            self.store.discard()
            raise

        def land() -> None:
            if self.ledger.latest_version() != n - 1:
                raise FencedOut(f"version {n} was published by another writer first")
            self.ledger.add_version(n, kind, facts=fids, active=len(active), adapter=adapter and adapter["name"])
            if commit is not None:
                commit(n)
            self.store.prune_versions(keep=5)

        self._commit_files(land)
        self._synced, self._shared = n, tensors
        self.follow_adapter()
        return n

    def _publish_user(self, scope: str, kind: str, fids: list[str], active: list[tuple[str, float]],
                      commit, sleep: Path | None | str = "keep") -> int:
        """Publish a user's next version: their `active` edits as one LoRA on the down projections (exact, or
        compacted to max_rank with what that left out in the version's detail) together with their night
        adapter `sleep` (a folder; None: none; by default the current version's), or no adapter when nothing
        is left. The adapter is staged first; it moves into place, and the version and `commit(n)` land, in
        one fenced ledger transaction."""
        n = self.ledger.latest_user_version(scope) + 1
        if sleep == "keep":
            current = newest_user(self.store.layout, self.ledger, scope)
            sleep = current and current.sleep
        layers = self.user_layers(active)
        name = self.store.layout.user_adapter_name(scope, n) if layers or sleep else None
        try:
            rank = self.store.save_user_adapter(scope, name, layers, sleep) if name else 0
        except BaseException:
            self.store.discard()
            raise
        lost = max((lo.lost for lo in layers.values()), default=0.0)
        if lost:
            log.warning("user adapter %s truncated to rank %d: %.3g of its update left out", name, rank, lost)

        def land() -> None:
            if self.ledger.latest_user_version(scope) != n - 1:
                raise FencedOut(f"user version {n} was published by another writer first")
            self.ledger.add_user_version(scope, n, name, kind=kind, facts=fids, active=len(active), rank=rank,
                                         lost=round(lost, 6))
            commit(n)
            previous = self.ledger.user_version(scope, n - 1) or {}
            self.store.prune_user_adapters(scope, keep=[a for a in (name, previous.get("adapter")) if a])

        self._commit_files(land)
        return n

    def user_layers(self, active: list[tuple[str, float]]):
        """A user's `active` edits at their scales as one LoRA per layer, compacted to max_rank."""
        return {l: compacted(lo, self.max_rank) for l, lo in
                stacked([(self.store.load_edit(fid), sc) for fid, sc in active]).items()}

    def publish_user_night(self, scope: str, src: Path, fids: list[str], active: list[tuple[str, float]],
                           commit) -> int:
        """Publish a user's night: their night adapter in folder `src` and their facts' new scales."""
        return self._publish_user(scope, "sleep", fids, active, commit, sleep=src)

    def _through_user_night(self, scope: str):
        """Edit through what a user is served: a new edit found without their night adapter can miss once it
        sits on top of the edit, as for the shared one (see follow_adapter)."""
        current = newest_user(self.store.layout, self.ledger, scope)
        if current is None or current.sleep is None:
            return nullcontext()
        return self._through(f"{current.name}-night", current.sleep, with_shared=True)

    @contextmanager
    def _through(self, name: str, night: Path, with_shared: bool):
        """Edit through the night adapter in folder `night` (`with_shared`: added to the shared one served now)."""
        shared = with_shared and self.adapter.name and self.store.layout.adapter_dir(self.adapter.name)
        with tempfile.TemporaryDirectory(prefix=".through-", dir=self.store.layout.store) as tmp:
            merge_adapters([d for d in (night, shared) if d], Path(tmp), self.store.base_dir)
            self.adapter.set(name, Path(tmp))  # peft has read the files: the folder may go
        try:
            yield
        finally:
            self.follow_adapter()

    def repair(self, scope: str, facts: dict[str, Fact], active: list[tuple[str, float]], night: Path) -> dict:
        """Edit `facts` (by id) of `scope` again, through the night adapter in folder `night` and beside the other
        `active` edits at their scales: an edit found before the night was computed without that adapter, and
        can stop working beside it. Each fact's new edit is saved with its old one (at full scale together),
        staged: the night's publish commits them, and `drop_staged` drops them. Returns the solve's statistics."""
        if not self.owns(scope):
            raise ValueError(f"writer shard {self.shard} was asked to repair facts of another shard's scope")
        keep = [(fid, sc) for fid, sc in active if fid not in facts]
        self.shared_weights()  # cached as published, before the new edits are: the model goes back to them
        try:
            # on top of the old edits, not instead: every later edit was fitted with them in the weights
            self._load_weights(self.store.materialise(active, onto=None if scope == SHARED else self.shared_weights()))
            with self._through(f"repair-{time.time_ns()}", night, with_shared=scope != SHARED):
                parts = self._write(scope, {fid: to_request(f, self.cfg) for fid, f in facts.items()}, keep,
                                    over={fid: sc for fid, sc in active if fid in facts})
        except BaseException:
            self.drop_staged()
            raise
        self._load_shared()
        return {"rounds": len(parts), **memit.merged_stats(parts)}

    def drop_staged(self) -> None:
        """Drop what is staged and not published (a night's repairs when it is rolled back); the model holds the
        shared weights as last published again."""
        if self.store.staged:
            self.store.discard()
            self._shared = None
        self._load_shared()

    def follow_adapter(self) -> None:
        """Carry the adapter the newest version serves (another process may have published it)."""
        name = (self.ledger.version(self.ledger.latest_version()) or {}).get("adapter")
        self.adapter.set(name, name and self.store.layout.adapter_dir(name))

    # -- solving ---------------------------------------------------------

    def _constraint_keys(self, active: list[str]) -> dict[int, torch.Tensor]:
        """Zero-residual rows of the given active edits (none when constraints are off); the solver adds
        the preserved names'."""
        fids = active if self.cfg.constraints != "none" else []
        return {l: self.cfg.constraint_weight * k for l, k in self.store.constraint_keys(fids).items()}

    def _sharing_a_key(self, scope: str, reqs: list[Request], kept: set[str],
                       earlier: dict[str, Request]) -> dict[str, Request]:
        """The kept active facts, and the `earlier` facts of this batch, whose raw key is one of
        `reqs`' (see edit.requests.subject_slots), by id.

        Such a fact is edited again with the new ones: its raw key must move to carry the new
        fact, so it cannot be held fixed as a constraint, and its answers are kept by fitting
        the subject's new offset to them too.
        """
        contexts = {raw_context(r) for r in reqs}
        rows = self.ledger.active_about(scope, {r.subject for r in reqs}, by_last_word=self.cfg.share_last_word)
        found = {r["id"]: to_request(Fact.parse(r["fact"]), self.cfg) for r in rows if r["id"] in kept}
        found.update(earlier)
        return {fid: r for fid, r in found.items() if raw_context(r) in contexts}

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
            for old in self.ledger.active_with_key(f.scope, f.subject, f.relation):
                retired[old["id"]] = fid
        return ids, todo, retired, shadowed

    def edit(self, facts: list[Fact], retry_on: tuple[type[BaseException], ...] = ()) -> tuple[list[str], dict]:
        """Write `facts` into the weights as one batch; returns (fact ids, stats).

        A failure of a type in `retry_on` says nothing about the facts (a full disk, a lost lock): they go
        back to queued, for the queue to deliver again, instead of failed. Facts of several scopes are
        edited as one batch per scope, in turn.
        """
        scopes = list(dict.fromkeys(f.scope for f in facts))
        if len(scopes) > 1:
            done = [self.edit([f for f in facts if f.scope == s], retry_on) for s in scopes]
            stats = {"edited": sum(st["edited"] for _, st in done), "scopes": [st for _, st in done]}
            return [f.fact_id() for f in facts], stats
        scope = scopes[0] if scopes else SHARED
        if not self.owns(scope):
            raise ValueError(f"writer shard {self.shard} was given facts of another shard's scope")
        ids, todo, retired, shadowed = self._plan(facts)
        with self.transaction():
            for fid, f, new in shadowed:
                row = self.ledger.get(fid)
                if row is None or row["status"] != ACTIVE:
                    self.ledger.supersede(fid, new, fact=f, same_batch=True)
            for fid, f, row in todo:
                self.ledger.start_edit(fid, f)
        if not todo:
            return ids, {"edited": 0}
        keep = [(fid, sc) for fid, sc in self.active(scope) if fid not in retired]

        def commit(n: int) -> None:
            for fid, _, _ in todo:
                self.ledger.activate(fid, n)
            for fid in retired:
                self.ledger.supersede(fid, retired[fid], version=n)
                self.store.delete_edit(fid)

        t0 = time.perf_counter()
        after = keep + [(fid, 1.0) for fid, _, _ in todo]
        try:
            if scope != SHARED:
                # a user's edit is computed on the shared weights plus that user's own edits
                self._load_weights(self.store.materialise(keep, onto=self.shared_weights()))
            elif retired:
                # the new edits are computed against the weights without the facts they replace
                self._load_weights(self.store.materialise(keep))
            with self._through_user_night(scope):
                parts = self._write(scope, {fid: to_request(f, self.cfg) for fid, f, _ in todo}, keep)
            seconds = time.perf_counter() - t0
            fids = [fid for fid, _, _ in todo]
            if scope == SHARED:
                n = self._publish("wake", fids, after, commit)
            else:
                n = self._publish_user(scope, "wake", fids, after, commit)
                self._load_shared()
        except BaseException as e:
            self.store.discard()
            if scope == SHARED:
                self._load_weights(self.store.materialise(self.active()))
            else:
                self._load_shared()
            why = f"{type(e).__name__}: {e}"
            try:
                with self.transaction():
                    for fid, _, _ in todo:
                        if isinstance(e, retry_on):
                            self.ledger.queued(fid, reason=f"not applied ({why}); it stays on the queue")
                        else:
                            self.ledger.fail(fid, f"edit failed: {why}")
            except FencedOut:
                pass  # a newer writer owns the ledger now; it re-runs these facts from the queue
            raise
        stats = {"edited": len(todo), "superseded": len(retired) + len(shadowed), "seconds": round(seconds, 3),
                 "version": n, "rounds": len(parts), **memit.merged_stats(parts)}
        if scope != SHARED:
            stats["user_version"] = stats.pop("version")
        log.info("wake edit: %s", stats)
        return ids, stats

    def _write(self, scope: str, reqs: dict[str, Request], keep: list[tuple[str, float]],
               over: dict[str, float] | None = None) -> list[dict]:
        """Compute and save the edits of `reqs` (by fact id) on the loaded weights, which hold `keep` (of
        `scope`), and the edits of the facts in `over` at those scales: each is saved with its new one over it.
        Returns each round's statistics."""
        order = list(reqs)
        done: list[str] = []  # facts of `reqs` whose edits are applied and saved
        parts = []
        for part in memit.batch_rounds(list(reqs.values())):
            new = [order[i] for i in part]
            again = self._sharing_a_key(scope, [reqs[f] for f in new], {fid for fid, _ in keep},
                                        {f: reqs[f] for f in done})
            prev = self._constraint_keys([fid for fid, _ in keep if fid not in again] +
                                         [f for f in done if f not in again])
            every = [reqs[f] for f in new] + list(again.values())
            result = memit.execute(self.model, self.tok, every, self.cfg, self.layers, self.solver.for_batch(prev))
            for fid, edit in zip(new, memit.split(result, every, memit.owners(every, len(new)))):
                if over and fid in over:
                    edit = edit.over(self.store.load_edit(fid), over[fid])
                self.store.save_edit(fid, edit)
                done.append(fid)
            parts.append(result.stats)
        return parts

    def publish_adapter(self, src: Path | None) -> int:
        """Publish a new version serving the LoRA adapter in folder `src` (None: no adapter) with the same edits."""
        adapter = None
        if src is not None:
            name = Layout.adapter_name(self.ledger.latest_version() + 1)
            adapter = {"name": name, "path": self.store.save_adapter(name, src)}
        return self._publish("adapter", [], adapter=adapter)

    def publish_night(self, src: Path, extra: list[str], fids: list[str], active: list[tuple[str, float]],
                      commit) -> int:
        """Publish a night: the adapter in `src` (with the `extra` files beside it) and the facts' new scales."""
        name = Layout.adapter_name(self.ledger.latest_version() + 1)
        adapter = {"name": name, "path": self.store.save_adapter(name, src, extra=extra)}
        return self._publish("sleep", fids, active, commit, adapter=adapter)

    def forget(self, fid: str, reason: str = "forgotten on request") -> int:
        """Take a fact's edit out of its scope's weights and publish that scope's next version; returns it."""
        row = self.ledger.get(fid)
        if row is None:
            raise KeyError(f"no fact with id {fid!r}")
        scope = row["scope"]
        if not self.owns(scope):
            raise ValueError(f"writer shard {self.shard} was asked to forget a fact of another shard's scope")
        current = self.ledger.latest_user_version(scope) if scope != SHARED else self.ledger.latest_version()
        if row["status"] == FORGOTTEN:
            return current
        if row["status"] != ACTIVE:
            with self.transaction():
                self.ledger.forget(fid, reason=reason)
            return current
        # a user's night adapter trained on the fact goes with it at once, their other edits back at full
        # scale until a night trains it again without the fact (what Memory.forget starts)
        drop = self.night_holds(scope, fid)
        rest = [(f, 1.0 if drop else sc) for f, sc in self.active(scope) if f != fid]
        # A fact about the same subject edited in fid's batch or later re-fitted fid's answers beside
        # its own (see _sharing_a_key), and those columns sit in its edit: such facts are edited
        # again without fid, or the model would still give fid's object.
        refit = {f: r for f, r in self._sharing_a_key(scope, [to_request(Fact.parse(row["fact"]), self.cfg)],
                                                      {f for f, sc in rest if sc > 0}, {}).items()
                 if self.ledger.get(f)["version_added"] >= row["version_added"]}

        def commit(n: int) -> None:
            self.ledger.forget(fid, version=n, reason=reason)
            self.store.delete_edit(fid)
            for f in refit:
                self.ledger.event(f, RE_EDITED, reason=f"edited again without forgotten fact {fid}", version=n)
            if drop:
                for f, _ in rest:
                    self.ledger.restage(f, 0, 1.0)

        try:
            if refit:
                keep = [(f, sc) for f, sc in rest if f not in refit]
                self._load_weights(self.store.materialise(keep, onto=None if scope == SHARED else
                                                          self.shared_weights()))
                with nullcontext() if drop else self._through_user_night(scope):
                    self._write(scope, refit, keep)
            if scope == SHARED:
                return self._publish("forget", [fid], rest, commit)
            return self._publish_user(scope, "forget", [fid], rest, commit, sleep=None if drop else "keep")
        except BaseException:
            self.store.discard()
            raise
        finally:
            self._load_shared()

    def night_holds(self, scope: str, fid: str) -> bool:
        """Whether the night adapter a user is served now was trained on fact `fid`."""
        current = newest_user(self.store.layout, self.ledger, scope) if scope != SHARED else None
        return current is not None and fid in trained_on(current.sleep)

    def move_to_users(self) -> tuple[dict, list[Fact]]:
        """Take the users' facts a home holds in its shared weights (as every home made before scopes does) out of
        them in one published version, into each user's scope, queued there to be edited into the user's
        adapter (the caller hands them to the queue). If the shared adapter was trained on any of them it is
        dropped and the shared facts' edits go back to full scale (exact: edits are kept until forgotten), so
        no user's fact stays readable by all; the next night consolidates the shared facts again. Returns
        what was moved, and the facts to queue."""
        rows = [r for r in self.ledger.facts(status=ACTIVE, scope=SHARED) if Fact.parse(r["fact"]).user_id]
        if not rows:
            return {"moved": 0, "users": 0}, []
        moved = {r["id"] for r in rows}
        version = self.ledger.version(self.ledger.latest_version()) or {}
        adapter = version.get("adapter")
        drop = bool(adapter and moved & set(trained_on(self.store.layout.adapter_dir(adapter))))
        rest = [(fid, 1.0 if drop else sc) for fid, sc in self.active() if fid not in moved]

        def commit(n: int) -> None:
            for r in rows:
                self.ledger.move(r["id"], Fact.parse(r["fact"]).scope)
            if drop:
                for fid, _ in rest:
                    self.ledger.restage(fid, 0, 1.0)

        version = self._publish("move", sorted(moved), rest, commit, adapter=None if drop else "keep")
        facts = [Fact.parse({**r["fact"], "id": r["id"]}) for r in rows]
        return {"moved": len(rows), "users": len({f.scope for f in facts}), "adapter_dropped": drop,
                "version": version}, facts

    def forget_user(self, scope: str) -> int:
        """Remove everything of a user at once: facts (with their events and aliases), edits, adapters and
        versions; returns how many facts went. Readers of this home find no adapter for them after."""
        if scope == SHARED:
            raise ValueError("the shared scope is not a user's: forget its facts one by one")
        if not self.owns(scope):
            raise ValueError(f"writer shard {self.shard} was asked to forget another shard's user")
        fids = {f["id"] for f in self.ledger.facts(scope=scope)}

        def body() -> None:
            for fid in fids & self.store.edit_ids():
                self.store.delete_edit(fid)
            self.store.delete_user(scope)
            self.ledger.drop_user(scope)

        self._commit_files(body)
        self.overlay.release()
        # their nights' reports go too
        shutil.rmtree(self.store.layout.user_sleep_reports(scope), ignore_errors=True)
        return len(fids)
