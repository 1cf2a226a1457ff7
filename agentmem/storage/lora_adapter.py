"""Wake edits as a PEFT LoRA adapter folder on the down projections, which peft and vLLM load as they are, and
any LoRA folder read back as the weight changes it makes (or merged into the weights)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable, Iterator

import torch
from safetensors.torch import load_file

from ..edit.arch import Architecture
from ..edit.lora import LayerLora
from .atomic import save_tensors
from .checkpoint import read_tensors
from .layout import ADAPTER_FILES

# ranks the serving engines take without complaint: a LoRA is padded with zero columns up to the next one
RANKS = (8, 16, 32, 64, 128, 256, 512)


def padded_rank(rank: int) -> int:
    fit = [r for r in RANKS if r >= rank]
    if not fit:
        raise ValueError(f"a LoRA of rank {rank} is over the largest the engines take ({RANKS[-1]}): compact it first")
    return fit[0]


def write_lora(dest: Path, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], base_dir: Path) -> int:
    """Write (B, A) pairs by module name (dW = B @ A) into folder `dest` as one PEFT LoRA; returns its largest rank.

    Each kind of module (q_proj, down_proj, ...) gets its own rank (peft's and vLLM's `rank_pattern`), every pair
    padded with zeros up to it, alpha = rank so the scale is 1: exact, and a rank-64 edit beside a rank-8 night
    adapter does not pad the night adapter to 64."""
    kinds: dict[str, int] = {}
    for module, (_, A) in pairs.items():
        kind = module.rsplit(".", 1)[-1]
        kinds[kind] = max(kinds.get(kind, 1), A.shape[0])
    ranks = {kind: padded_rank(r) for kind, r in sorted(kinds.items())}
    tensors = {}
    for module, (B, A) in pairs.items():
        rank = ranks[module.rsplit(".", 1)[-1]]
        padded_A = torch.zeros(rank, A.shape[1], dtype=torch.float32)
        padded_B = torch.zeros(B.shape[0], rank, dtype=torch.float32)
        padded_A[: A.shape[0]], padded_B[:, : A.shape[0]] = A, B
        tensors[f"base_model.model.{module}.lora_A.weight"] = padded_A.contiguous()
        tensors[f"base_model.model.{module}.lora_B.weight"] = padded_B.contiguous()
    top = max(ranks.values(), default=RANKS[0])
    layers = sorted({int(m) for module in pairs for m in re.findall(r"\.(\d+)\.", module)[:1]})
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": top, "lora_alpha": top, "lora_dropout": 0.0,
        "bias": "none", "fan_in_fan_out": False, "base_model_name_or_path": str(base_dir),
        "target_modules": sorted(ranks), "rank_pattern": ranks, "alpha_pattern": ranks,
        # peft would otherwise give every targeted kind a (zero) LoRA in every layer
        **({"layers_to_transform": layers} if layers else {}),
    }
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    config_file, weights_file = ADAPTER_FILES
    (dest / config_file).write_text(json.dumps(config, indent=2, sort_keys=True))
    save_tensors(tensors, dest / weights_file)
    return top


def write_user_lora(dest: Path, layers: dict[int, LayerLora], arch: Architecture, base_dir: Path,
                    sleep: Path | None = None) -> int:
    """Write a user's memory into folder `dest` as one PEFT LoRA: their wake edits (`layers`) on the down
    projections, and their night adapter (folder `sleep`, if any) on the modules it trained; returns its rank."""
    pairs = lora_pairs(sleep) if sleep is not None else {}
    pairs.update({f"{arch.layers_attr}.{l}.{arch.down_proj_attr}": (lo.B, lo.A) for l, lo in layers.items()})
    return write_lora(dest, pairs, base_dir)


def lora_pairs(src: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The LoRA pairs of the adapter in `src` by module name, its scale folded into B (dW = B @ A)."""
    config_file, weights_file = ADAPTER_FILES
    config = json.loads((Path(src) / config_file).read_text())
    tensors = load_file(str(Path(src) / weights_file))
    out = {}
    for key, A in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            B = tensors[key.replace(".lora_A.", ".lora_B.")]
            live = (A.abs().sum(1) > 0) & (B.abs().sum(0) > 0)  # padding columns add nothing: leave them out
            out[module] = (_scale(config, module) * B[:, live].double(), A[live].double())
    return out


def _scale(config: dict, module: str) -> float:
    """peft's scale of `module`'s LoRA: alpha / rank, each from its pattern where one matches (as peft does)."""
    def pattern(key: str, default):
        hits = [v for k, v in (config.get(key) or {}).items() if re.match(rf"(.*\.)?({k})$", module)]
        return hits[0] if hits else default

    r = pattern("rank_pattern", config["r"])
    alpha = pattern("alpha_pattern", config.get("lora_alpha", r))
    return alpha / (math.sqrt(r) if config.get("use_rslora") else r)


def lora_deltas(src: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """What the PEFT LoRA adapter in folder `src` adds to each weight it targets, as (checkpoint name, change),
    one at a time (a night adapter targets many): adding these to the weights answers as the adapter does."""
    for module, (B, A) in lora_pairs(src).items():
        yield f"{module}.weight", (B @ A).float()


def merged_weights(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], base_dir: Path,
                   over: dict[str, torch.Tensor], restore: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Weights that answer as the base plus `over` (changed tensors) plus an adapter's `pairs` (`lora_pairs`), with
    no adapter loaded: each tensor the adapter targets with its change added (to `over`'s where it has one, the
    base checkpoint's elsewhere), and the names in `restore` (what an earlier merged adapter changed) without it."""
    names = {f"{m}.weight" for m in pairs} | set(restore)
    out = read_tensors(base_dir, names - set(over))
    out.update({n: over[n].to(torch.float32) for n in names & set(over)})
    for module, (B, A) in pairs.items():
        out[f"{module}.weight"] = out[f"{module}.weight"] + (B @ A).float()
    return out


def merge_adapters(srcs: list[Path], dest: Path, base_dir: Path) -> int:
    """Write into folder `dest` one PEFT LoRA that adds what all of `srcs` add (a request carries one adapter):
    a module several of them target gets their pairs side by side. Exact; returns its rank."""
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for src in srcs:
        for module, pair in lora_pairs(src).items():
            parts.setdefault(module, []).append(pair)
    return write_lora(dest, {m: (torch.cat([B for B, _ in ps], 1), torch.cat([A for _, A in ps], 0))
                             for m, ps in parts.items()}, base_dir)
