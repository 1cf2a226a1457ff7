"""Published versions as readers see them: the newest version number, its changed tensors and its adapter.

Writers publish through the editor (writer/editor.py, storage/weights.py);
servers and `Memory` readers only ever read what this module returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .layout import ADAPTER_FILES, MANIFEST_FILE, TRAINED_ON_FILE, USER_SLEEP_DIR, WEIGHTS_FILE, Layout
from .ledger import Ledger
from .lora_adapter import lora_deltas


@dataclass(frozen=True)
class Published:
    version: int
    weights_dir: Path  # holds WEIGHTS_FILE with only the tensors edits change
    adapter: str | None = None  # the LoRA adapter served with it, a new name per adapter
    adapter_dir: Path | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.weights_dir / WEIGHTS_FILE))

    def names(self) -> set[str]:
        """The names of the tensors it changes, without reading them."""
        with safe_open(str(self.weights_dir / WEIGHTS_FILE), framework="pt") as fh:
            return set(fh.keys())


def trained_on(adapter_dir: Path | None) -> list[str]:
    """The ids of the facts a night's adapter was trained on (none for another adapter, or none at all)."""
    if adapter_dir is None:
        return []
    try:
        return json.loads((adapter_dir / TRAINED_ON_FILE).read_text())
    except (OSError, ValueError):
        return []


def read(layout: Layout, n: int) -> Published | None:
    """Version n, or None if its folder is not (or no longer) there."""
    d = layout.version_dir(n)
    try:
        manifest = json.loads((d / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    adapter = manifest.get("adapter")
    adapter_dir = None
    if adapter:
        # a manifest on a shared volume is only as trusted as the volume: never load an adapter from elsewhere
        adapters = layout.adapters.resolve()
        adapter_dir = (layout.store / adapter["path"]).resolve()
        if adapter_dir.parent != adapters:
            raise ValueError(f"version {n} names adapter path {adapter['path']!r}, outside {adapters}")
    return Published(
        version=n,
        weights_dir=d,
        adapter=adapter["name"] if adapter else None,
        adapter_dir=adapter_dir,
    )


@dataclass(frozen=True)
class UserAdapter:
    """A user's published memory: their version n and the adapter folder it serves."""

    scope: str
    version: int
    name: str  # a new name per adapter: what a server or an overlay keys it by
    path: Path

    def deltas(self) -> Iterator[tuple[str, torch.Tensor]]:
        return lora_deltas(self.path)

    @property
    def sleep(self) -> Path | None:
        """The user's night adapter alone, if a night of theirs is part of this version."""
        d = self.path / USER_SLEEP_DIR
        return d if (d / ADAPTER_FILES[0]).is_file() else None


def newest_user(layout: Layout, ledger: Ledger, scope: str) -> UserAdapter | None:
    """The adapter of a user's newest version; None for the shared scope, a user with none, or none left."""
    if not scope:
        return None
    row = ledger.user_version(scope)
    if row is None or row["adapter"] is None:
        return None
    return UserAdapter(scope, row["n"], row["adapter"], layout.user_adapter_dir(scope, row["adapter"]))


def newest(layout: Layout, ledger: Ledger) -> Published | None:
    """The newest published version of the memory laid out at `layout`; None before the first publish."""
    n = ledger.latest_version()
    return read(layout, n) if n else None
