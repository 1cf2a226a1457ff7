"""The one LoRA adapter a model carries at a time, swapped in place through peft.

peft injects an adapter's layers into the model's own modules, so the model
object itself computes with the adapter while it is loaded; both the serving
replica and the wake editor (which must edit through what is served) use this.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


class AdapterSlot:
    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.name: str | None = None
        self._peft = None

    @property
    def net(self) -> torch.nn.Module:
        """The module to generate with: the model, wrapped by peft while an adapter is loaded."""
        return self._peft if self._peft is not None else self.model

    def param(self, name: str) -> torch.nn.Parameter:
        return param_of(self.model, name)

    def set(self, name: str | None, path: Path | None) -> None:
        """Carry the adapter in folder `path` under `name` (a new name per adapter), or none."""
        from peft import PeftModel

        old = self.name
        if name == old:
            return
        if name is None:
            self.model = self._peft.unload()
            self._peft = None
        else:
            with warnings.catch_warnings():
                # a user adapter names each kind of module once for all its layers, and holds pairs for some of them
                # only: peft warns of the others, whose zero-initialised B adds nothing
                warnings.filterwarnings("ignore", "Found missing adapter keys", UserWarning)
                if self._peft is None:
                    self._peft = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
                else:
                    self._peft.load_adapter(str(path), adapter_name=name)
                    self._peft.set_adapter(name)
                    self._peft.delete_adapter(old)
        if self._peft is not None:
            self._peft.eval()
            for p in self._peft.parameters():
                p.requires_grad_(False)
        self.name = name


def param_of(model: torch.nn.Module, name: str) -> torch.nn.Parameter:
    """A checkpoint-named parameter, wherever peft has moved it."""
    try:
        return model.get_parameter(name)
    except AttributeError:
        # peft wraps a targeted linear layer: its own weight moves to base_layer
        return model.get_parameter(name.removesuffix(".weight") + ".base_layer.weight")
