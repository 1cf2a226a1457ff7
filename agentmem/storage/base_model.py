"""A home's memory belongs to one base model: its edits are differences from that model's weights and its
adapters were trained on it, so another model must neither serve nor extend them."""

from __future__ import annotations

from pathlib import Path

from .cache import weights_fingerprint
from .ledger import Ledger


class OtherModel(RuntimeError):
    """The home's memory was made for another base model than the one it is opened with."""


def bind(ledger: Ledger, model_dir: Path, read_only: bool = False) -> None:
    """Bind the home to the model at `model_dir` if it is bound to none yet (not when `read_only`); raise
    OtherModel if it is bound to another."""
    mine = weights_fingerprint(model_dir)
    bound = ledger.base_model() if read_only else ledger.bind_base_model(mine, str(model_dir))
    if bound is not None and bound["fingerprint"] != mine:
        raise OtherModel(
            f"this home's memory was written into the model at {bound['model']} (weights {bound['fingerprint']}), "
            f"not {model_dir} (weights {mine}): open it with that model, or carry its facts into a new home with "
            "`agentmem export` and `agentmem remember --jsonl` (see the README, \"Moving to another model\")")
