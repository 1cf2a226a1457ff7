"""Named tensors read from a Hugging Face checkpoint folder, whichever of its safetensors shards holds them."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open


def read_tensors(folder: Path, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """The tensors called `names` in float32; a one-line error naming what the checkpoint lacks."""
    wanted = set(names)
    found: dict[str, torch.Tensor] = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            for name in wanted & set(fh.keys()):
                found[name] = fh.get_tensor(name).to(torch.float32)
    missing = sorted(wanted - set(found))
    if missing:
        raise ValueError(f"checkpoint {folder} lacks tensors {missing[:3]}")
    return found
