"""The weight store: read-only base, per-fact low-rank edits, the training copy and published versions.

The training copy of an edited tensor is always rebuilt as base + sum of
scale_f * B_f @ A_f (in float64), so reverting or rescaling an edit is exact.
Published versions hold only the changed tensors (plus the name of the LoRA
adapter served with them), each in a new folder written atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..edit.arch import Architecture
from ..edit.lora import LayerLora
from ..edit.memit import Edit
from .atomic import atomic_path, fsync_dir, save_tensors, write_json
from .checkpoint import read_tensors
from .layout import ADAPTER_FILES, MANIFEST_FILE, TRAINED_ON_FILE, TRAINING_ACTIVE_FILE, USER_SLEEP_DIR, WEIGHTS_FILE, Layout
from .lora_adapter import write_user_lora


class WeightStore:
    """Every write is staged: edits, the training copy, versions and adapters are prepared in this writer's
    staging folder, and `commit` (run inside the writer's fenced ledger transaction) renames them into
    place, so a writer that lost its lock never changes a file another writer committed. What `commit`,
    `delete_edit` and `prune_versions` replace or remove is set aside until the transaction's outcome is
    known: `settle` drops it once the ledger committed, `undo` puts it back when the ledger could not."""

    def __init__(self, layout: Layout, base_dir: Path, arch: Architecture, layers: list[int]):
        self.layout = layout
        self.token: int | None = None  # the fencing token of the writer this store writes for
        self.shard = 0  # and that writer's shard
        self._staged: dict[Path, Path] = {}  # destination -> staged file or folder, renamed in order by commit
        self._undo: list[tuple[Path, Path | None, bool]] = []  # (path, set aside as, created by commit)
        self.base_dir = Path(base_dir)
        self.arch = arch
        self.layers = list(layers)
        for d in (layout.edits, layout.training, layout.versions, layout.adapters):
            d.mkdir(parents=True, exist_ok=True)
        self._edits: dict[str, Edit] = {}
        self.base = self._read_base()

    def _names(self) -> dict[int, str]:
        return {l: self.arch.down_proj_weight_name(l) for l in self.layers}

    def _read_base(self) -> dict[int, torch.Tensor]:
        """The edited tensors exactly as the base checkpoint has them."""
        found = read_tensors(self.base_dir, self._names().values())
        return {l: found[name] for l, name in self._names().items()}

    # -- edits -----------------------------------------------------------

    def _stage(self, dest: Path) -> Path:
        """Where `dest` is prepared until commit: the same path under this writer's staging folder."""
        staged = self.layout.staging_for(self.token, self.shard) / dest.relative_to(self.layout.store)
        self._staged[dest] = staged
        return staged

    def _set_aside(self, path: Path, created: bool) -> None:
        """Move `path` (if there) out of the way, remembering how to put it back."""
        aside = None
        if path.exists():
            aside = self.layout.staging_for(self.token, self.shard) / "replaced" / str(len(self._undo))
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, aside)
        self._undo.append((path, aside, created))

    def commit(self) -> None:
        """Move everything staged into place (call inside the fenced ledger transaction)."""
        for dest, staged in self._staged.items():
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._set_aside(dest, created=True)
            os.rename(staged, dest)
        for folder in {dest.parent for dest in self._staged}:
            fsync_dir(folder)
        self._staged.clear()

    def settle(self) -> None:
        """The ledger committed: drop what commit, delete_edit and prune_versions set aside."""
        shutil.rmtree(self.layout.staging_for(self.token, self.shard) / "replaced", ignore_errors=True)
        self._undo.clear()

    def undo(self) -> None:
        """The ledger did not commit: take back every rename and removal since the last settle."""
        for path, aside, created in reversed(self._undo):
            if created:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                if path.parent == self.layout.edits:
                    self._edits.pop(path.stem, None)
            if aside is not None:
                os.rename(aside, path)
        self._undo.clear()
        self.settle()

    @property
    def staged(self) -> bool:
        """Whether anything is staged and not yet committed."""
        return bool(self._staged)

    def discard(self) -> None:
        """Drop everything staged since the last commit; cached edits fall back to the committed files."""
        for dest, staged in self._staged.items():
            if dest.parent == self.layout.edits:
                self._edits.pop(dest.stem, None)
            if staged.is_dir():
                shutil.rmtree(staged, ignore_errors=True)
            else:
                staged.unlink(missing_ok=True)
        self._staged.clear()

    def clean_staging(self) -> None:
        """Remove what earlier or stale writers of this shard left staged (call inside the fenced ledger
        transaction, before this writer stages anything); other shards' writers may be staging now."""
        for p in self.layout.staging_of_shard(self.shard):
            shutil.rmtree(p, ignore_errors=True)

    def forget_cached(self) -> None:
        """Read every edit from disk again: another writer may have rewritten one."""
        self._edits.clear()

    def save_edit(self, fid: str, edit: Edit) -> None:
        with atomic_path(self._stage(self.layout.edit_file(fid))) as tmp:
            save_tensors(edit.tensors(), tmp)
        self._edits[fid] = edit

    def load_edit(self, fid: str) -> Edit:
        if fid not in self._edits:
            self._edits[fid] = Edit.from_tensors(load_file(str(self.layout.edit_file(fid))))
        return self._edits[fid]

    def delete_edit(self, fid: str) -> None:
        """Remove a committed edit (call inside the fenced ledger transaction)."""
        self._edits.pop(fid, None)
        self._set_aside(self.layout.edit_file(fid), created=False)

    def edit_ids(self) -> set[str]:
        return {p.stem for p in self.layout.edits.glob("*.safetensors")}

    def constraint_keys(self, fids: list[str]) -> dict[int, torch.Tensor]:
        """Keys of the given edits per layer, (d_ff, n): the rows a new edit must leave unchanged."""
        out = {}
        for l in self.layers:
            ks = [e.keys[l] for e in map(self.load_edit, fids) if l in e.keys]
            out[l] = torch.cat(ks, 1) if ks else self.base[l].new_zeros(self.base[l].shape[1], 0)
        return out

    # -- materialising ---------------------------------------------------

    def materialise(self, active: list[tuple[str, float]],
                    onto: dict[int, torch.Tensor] | None = None) -> dict[int, torch.Tensor]:
        """Edited tensors for the given (fact id, scale) set: base (or `onto`) + sum of scaled deltas."""
        out = {}
        for l in self.layers:
            W = (self.base if onto is None else onto)[l].double()
            for fid, scale in active:
                if scale == 0:
                    continue
                B, A = self.load_edit(fid).factors[l]
                W = W + scale * (B.double() @ A.double())
            out[l] = W.to(torch.float32)
        return out

    def named(self, tensors: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = self._names()
        return {names[l]: t.contiguous() for l, t in tensors.items()}

    def training_active(self) -> list[tuple[str, float]] | None:
        """The (fact id, scale) set the training copy holds, or None if there is none."""
        try:
            return [tuple(a) for a in json.loads((self.layout.training / TRAINING_ACTIVE_FILE).read_text())]
        except (OSError, ValueError):
            return None

    def write_training(self, tensors: dict[int, torch.Tensor], active: list[tuple[str, float]]) -> None:
        with atomic_path(self._stage(self.layout.training), directory=True) as tmp:
            save_tensors(self.named(tensors), tmp / WEIGHTS_FILE)
            (tmp / TRAINING_ACTIVE_FILE).write_text(json.dumps(active))

    # -- versions ---------------------------------------------------------

    def manifest(self, n: int) -> dict | None:
        try:
            return json.loads((self.layout.version_dir(n) / MANIFEST_FILE).read_text())
        except (OSError, ValueError):
            return None

    def save_adapter(self, name: str, src: Path, extra: list[str] = ()) -> str:
        """Copy a PEFT LoRA adapter folder (and the `extra` files in it) into the store under `name`.

        Returns its path relative to the store.
        """
        src = Path(src)
        missing = [f for f in ADAPTER_FILES if not (src / f).is_file()]
        if missing:
            raise ValueError(f"{src} is not a PEFT adapter folder: it lacks {', '.join(missing)}")
        rel = self.layout.adapter_ref(name)
        with atomic_path(self._stage(self.layout.adapter_dir(name)), directory=True) as tmp:
            for f in (*ADAPTER_FILES, *extra):
                shutil.copyfile(src / f, tmp / f)
        return rel

    def save_user_adapter(self, scope: str, name: str, layers: dict[int, LayerLora], sleep: Path | None = None) -> int:
        """Stage a user's wake edits, and their night adapter in folder `sleep` (kept beside it as it is, for the
        next night to start from), as the PEFT LoRA adapter `name`; returns its rank."""
        with atomic_path(self._stage(self.layout.user_adapter_dir(scope, name)), directory=True) as tmp:
            rank = write_user_lora(tmp, layers, self.arch, self.base_dir, sleep)
            if sleep is not None:
                (tmp / USER_SLEEP_DIR).mkdir()
                for f in (*ADAPTER_FILES, TRAINED_ON_FILE):
                    shutil.copyfile(sleep / f, tmp / USER_SLEEP_DIR / f)
            return rank

    def prune_user_adapters(self, scope: str, keep: list[str]) -> None:
        """Remove a user's adapters other than `keep` (call inside the fenced ledger transaction)."""
        folder = self.layout.user_dir(scope)
        for p in sorted(folder.iterdir()) if folder.is_dir() else ():
            if p.name not in keep and not p.name.startswith("."):
                self._set_aside(p, created=False)

    def delete_user(self, scope: str) -> None:
        """Remove every adapter of a user (call inside the fenced ledger transaction)."""
        self._set_aside(self.layout.user_dir(scope), created=False)

    def publish(self, n: int, tensors: dict[int, torch.Tensor], manifest: dict) -> None:
        """Write version n: only the changed tensors plus a manifest naming the base, the facts and the adapter."""
        with atomic_path(self._stage(self.layout.version_dir(n)), directory=True) as tmp:
            save_tensors(self.named(tensors), tmp / WEIGHTS_FILE)
            write_json(tmp / MANIFEST_FILE, {"version": n, "base": str(self.base_dir), **manifest})

    def prune_versions(self, keep: int) -> None:
        """Remove all but the newest `keep` version folders, and adapters none of them serves
        (call inside the fenced ledger transaction)."""
        numbers = self.layout.version_numbers()
        for n in numbers[:-keep] if keep else numbers:
            self._set_aside(self.layout.version_dir(n), created=False)
        served = [(self.manifest(n) or {}).get("adapter") for n in (numbers[-keep:] if keep else [])]
        kept = {a["path"] for a in served if a}
        for p in list(self.layout.adapters.iterdir()):
            if not p.name.startswith(".") and self.layout.adapter_ref(p.name) not in kept:
                self._set_aside(p, created=False)
