"""Wake edits as a PEFT LoRA adapter folder on the down projections, which peft and vLLM load as they are, and
any LoRA folder read back as the weight changes it makes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..edit.arch import Architecture
from ..edit.lora import LayerLora
from .atomic import save_tensors
from .layout import ADAPTER_FILES

# ranks the serving engines take without complaint: a LoRA is padded with zero columns up to the next one
RANKS = (8, 16, 32, 64, 128, 256, 512)


def padded_rank(rank: int) -> int:
    fit = [r for r in RANKS if r >= rank]
    if not fit:
        raise ValueError(f"a LoRA of rank {rank} is over the largest the engines take ({RANKS[-1]}): compact it first")
    return fit[0]


def write_down_proj_lora(dest: Path, layers: dict[int, LayerLora], arch: Architecture, base_dir: Path) -> int:
    """Write `layers` into folder `dest` as one PEFT LoRA (alpha = r, so its scale is 1); returns its rank."""
    rank = padded_rank(max((lo.rank for lo in layers.values()), default=1))
    tensors = {}
    for l, lo in layers.items():
        module = f"base_model.model.{arch.layers_attr}.{l}.{arch.down_proj_attr}"
        A = torch.zeros(rank, lo.A.shape[1], dtype=torch.float32)
        B = torch.zeros(lo.B.shape[0], rank, dtype=torch.float32)
        A[: lo.rank], B[:, : lo.rank] = lo.A, lo.B
        tensors[f"{module}.lora_A.weight"], tensors[f"{module}.lora_B.weight"] = A.contiguous(), B.contiguous()
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": rank, "lora_dropout": 0.0,
        "bias": "none", "fan_in_fan_out": False, "target_modules": [arch.down_proj_attr.rsplit(".", 1)[-1]],
        "layers_to_transform": sorted(layers), "base_model_name_or_path": str(base_dir),
    }
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    config_file, weights_file = ADAPTER_FILES
    (dest / config_file).write_text(json.dumps(config, indent=2, sort_keys=True))
    save_tensors(tensors, dest / weights_file)
    return rank


def lora_deltas(src: Path) -> dict[str, torch.Tensor]:
    """What the PEFT LoRA adapter in folder `src` adds to each weight it targets, by checkpoint name
    (dW = alpha / r * B @ A): adding these to the weights answers as the adapter does."""
    config_file, weights_file = ADAPTER_FILES
    config = json.loads((Path(src) / config_file).read_text())
    scale = config.get("lora_alpha", config["r"]) / config["r"]
    tensors = load_file(str(Path(src) / weights_file))
    out = {}
    for key, A in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        B = tensors[key.replace(".lora_A.", ".lora_B.")]
        out[f"{module}.weight"] = (scale * (B.double() @ A.double())).float()
    return out
