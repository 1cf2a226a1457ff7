"""A benchmark's results so far, saved in its home after every step, so that a stopped run resumes where it was."""

from __future__ import annotations

import json
from pathlib import Path

from ..storage.atomic import write_json


class RunStateError(ValueError):
    """A saved run would be overwritten, or resumed at other sizes."""


class RunState:
    """`data` (the sizes a run was started at, and what it has done), saved to NAME-state.json in its home."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    @classmethod
    def open(cls, home: Path, name: str, sizes: dict, resume: bool) -> RunState:
        """The run saved in `home` when resuming (a new one if none is), else a new one; raises RunStateError
        when a saved run would be overwritten, or resumed at other sizes."""
        path = Path(home) / f"{name}-state.json"
        if not path.exists():
            return cls(path, {"sizes": sizes})
        if not resume:
            raise RunStateError(f"{home} holds a {name} run already ({path.name}): resume it, or use another home")
        data = json.loads(path.read_text())
        if data["sizes"] != sizes:
            raise RunStateError(f"the {name} run in {home} was started at {data['sizes']}, not {sizes}: "
                             "use another home")
        return cls(path, data)

    def save(self) -> None:
        write_json(self.path, self.data)
