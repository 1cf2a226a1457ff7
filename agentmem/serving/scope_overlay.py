"""One user's memory added into a model's weights in place, over the shared weights, and taken out again exactly.

A user's adapter changes few tensors (the down projections of the edit layers), so switching the model from
one user to another costs a copy of those tensors, not a second model; the shared weights are saved before
and copied back after, so nothing drifts however often users alternate.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable

import torch

from ..storage.published import UserAdapter


class ScopeOverlay:
    def __init__(self, param: Callable[[str], torch.nn.Parameter]):
        self.param = param  # a checkpoint-named parameter of the model (see AdapterSlot.param)
        self.key: Hashable | None = None  # what is added now (a user and their version); None: nothing
        self._saved: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def hold(self, key: Hashable | None, deltas: Callable[[], Iterable[tuple[str, torch.Tensor]]]) -> None:
        """Make the model the shared weights plus `deltas()` ((checkpoint name, change) pairs), known as `key`;
        None: shared."""
        if key == self.key:
            return
        self.release()
        if key is None:
            return
        for name, d in deltas():
            p = self.param(name)
            self._saved[name] = p.detach().clone()
            p.add_(d.to(p.device, p.dtype))
        self.key = key

    @torch.no_grad()
    def release(self) -> None:
        """Put the shared weights back (before anything else writes them)."""
        for name, w in self._saved.items():
            self.param(name).copy_(w)
        self._saved.clear()
        self.key = None

    def hold_user(self, pub: UserAdapter | None) -> None:
        """The shared weights plus this user adapter (None: the shared weights alone)."""
        self.hold(pub and pub.name, pub and pub.deltas)
