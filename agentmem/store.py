"""The weight store: read-only base, per-fact low-rank edits, the training copy and published versions.

The training copy of an edited tensor is always rebuilt as base + sum of
scale_f * B_f @ A_f (in float64), so reverting or rescaling an edit is exact.
Published versions hold only the changed tensors (plus the name of the LoRA
adapter served with them), each in a new folder written atomically.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .arch import Architecture
from .atomic import atomic_path, write_json

# What vLLM and peft need of a LoRA adapter folder.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_FID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _check_id(fid: str) -> str:
    if not _FID.match(fid) or fid.startswith("."):
        raise ValueError(f"invalid fact id {fid!r}")
    return fid


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

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "Edit":
        layers = sorted({int(k.split(".")[0]) for k in t})
        return cls({l: (t[f"{l}.B"], t[f"{l}.A"]) for l in layers}, {l: t[f"{l}.K"] for l in layers})


class WeightStore:
    def __init__(self, root: Path, base_dir: Path, arch: Architecture, layers: list[int]):
        self.root = Path(root)
        self.base_dir = Path(base_dir)
        self.arch = arch
        self.layers = list(layers)
        for sub in ("edits", "training", "versions", "adapters"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._edits: dict[str, Edit] = {}
        self.base = self._read_base()

    def _names(self) -> dict[int, str]:
        return {l: self.arch.down_proj_weight_name(l) for l in self.layers}

    def _read_base(self) -> dict[int, torch.Tensor]:
        """The edited tensors exactly as the base checkpoint has them."""
        wanted = self._names()
        found: dict[int, torch.Tensor] = {}
        for f in sorted(self.base_dir.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as fh:
                keys = set(fh.keys())
                for l, name in wanted.items():
                    if name in keys:
                        found[l] = fh.get_tensor(name).to(torch.float32)
        missing = [wanted[l] for l in self.layers if l not in found]
        if missing:
            raise ValueError(f"base checkpoint {self.base_dir} lacks tensors {missing[:3]}")
        return found

    # -- edits -----------------------------------------------------------

    def _edit_file(self, fid: str) -> Path:
        return self.root / "edits" / f"{_check_id(fid)}.safetensors"

    def save_edit(self, fid: str, edit: Edit) -> None:
        with atomic_path(self._edit_file(fid)) as tmp:
            save_file(edit.tensors(), str(tmp))
        self._edits[fid] = edit

    def load_edit(self, fid: str) -> Edit:
        if fid not in self._edits:
            self._edits[fid] = Edit.from_tensors(load_file(str(self._edit_file(fid))))
        return self._edits[fid]

    def delete_edit(self, fid: str) -> None:
        self._edits.pop(fid, None)
        self._edit_file(fid).unlink(missing_ok=True)

    def edit_ids(self) -> set[str]:
        return {p.stem for p in (self.root / "edits").glob("*.safetensors")}

    def constraint_keys(self, fids: list[str]) -> dict[int, torch.Tensor]:
        """Keys of the given edits per layer, (d_ff, n): the rows a new edit must leave unchanged."""
        out = {}
        for l in self.layers:
            ks = [e.keys[l] for e in map(self.load_edit, fids) if l in e.keys]
            out[l] = torch.cat(ks, 1) if ks else self.base[l].new_zeros(self.base[l].shape[1], 0)
        return out

    # -- materialising ---------------------------------------------------

    def materialise(self, active: list[tuple[str, float]]) -> dict[int, torch.Tensor]:
        """Edited tensors for the given (fact id, scale) set: base + sum of scaled deltas."""
        out = {}
        for l in self.layers:
            W = self.base[l].double()
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
            return [tuple(a) for a in json.loads((self.root / "training" / "active.json").read_text())]
        except (OSError, ValueError):
            return None

    def write_training(self, tensors: dict[int, torch.Tensor], active: list[tuple[str, float]]) -> None:
        with atomic_path(self.root / "training", directory=True) as tmp:
            save_file(self.named(tensors), str(tmp / "model.safetensors"))
            (tmp / "active.json").write_text(json.dumps(active))

    # -- versions ---------------------------------------------------------

    def version_dir(self, n: int) -> Path:
        return self.root / "versions" / f"v{n:06d}"

    def manifest(self, n: int) -> dict | None:
        try:
            return json.loads((self.version_dir(n) / "manifest.json").read_text())
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
        rel = f"adapters/{_check_id(name)}"
        with atomic_path(self.root / rel, directory=True) as tmp:
            for f in (*ADAPTER_FILES, *extra):
                shutil.copyfile(src / f, tmp / f)
        return rel

    def publish(self, n: int, tensors: dict[int, torch.Tensor], manifest: dict) -> Path:
        """Write version n: only the changed tensors plus a manifest naming the base, the facts and the adapter."""
        dest = self.version_dir(n)
        with atomic_path(dest, directory=True) as tmp:
            save_file(self.named(tensors), str(tmp / "model.safetensors"))
            write_json(tmp / "manifest.json", {"version": n, "base": str(self.base_dir), **manifest})
        return dest

    def prune_versions(self, keep: int) -> None:
        """Remove all but the newest `keep` version folders, and adapters none of them serves."""
        dirs = sorted(p for p in (self.root / "versions").iterdir() if p.name.startswith("v"))
        for p in dirs[:-keep] if keep else dirs:
            shutil.rmtree(p, ignore_errors=True)
        served = [(self.manifest(int(p.name[1:])) or {}).get("adapter") for p in (dirs[-keep:] if keep else [])]
        kept = {a["path"] for a in served if a}
        for p in (self.root / "adapters").iterdir():
            if not p.name.startswith(".") and f"adapters/{p.name}" not in kept:
                shutil.rmtree(p, ignore_errors=True)
