"""`Memory`: the public entry point that ties settings, model, editor, ledger and serving together.

In embedded mode (the default) everything runs in this process: `remember`
edits the training copy, publishes a version, and `ask`/`complete` answer from
that version.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable

from . import generate, model_store
from .config import Settings
from .editor import WakeEditor
from .facts import Fact, FactError
from .ledger import Ledger


class Memory:
    def __init__(self, settings: Settings, progress=None):
        self.settings = settings
        home = Path(settings.home).expanduser()
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.model_dir = model_store.resolve(settings.model, settings.cache_dir)
        self.model, self.tokenizer = model_store.load(self.model_dir)
        self.ledger = Ledger(home / "ledger.sqlite")
        self._lock = threading.RLock()
        self.editor = WakeEditor(
            self.model, self.tokenizer, self.model_dir, home / "store", self.ledger,
            settings.cache_dir, settings.memit, settings.cov_samples, settings.cov_text, progress,
        )

    @classmethod
    def open(cls, home: str | Path | None = None, *, progress=None, **kwargs) -> "Memory":
        """Open (or create) the memory at `home` ($AGENTMEM_HOME or ~/.agentmem)."""
        if home is not None:
            kwargs["home"] = Path(home)
        return cls(Settings(**kwargs), progress=progress)

    # -- writing ---------------------------------------------------------

    def remember(self, facts: Iterable[Fact | dict]) -> list[str]:
        """Edit the facts into the weights now; returns their ids. All are validated first."""
        parsed = [Fact.parse(f) for f in _as_list(facts)]
        if not parsed:
            raise FactError("no facts given")
        with self._lock:
            ids, self.last_stats = self.editor.edit(parsed)
        return ids

    def forget(self, fact_id: str) -> None:
        """Remove a fact's edit from the weights and publish the result."""
        with self._lock:
            self.editor.forget(fact_id)

    # -- reading ---------------------------------------------------------

    def ask(self, question: str, user_id: str = "default", max_new_tokens: int = 48) -> str:
        """Greedy chat answer from the newest published version; no memory text enters the context."""
        _check_text(question, "question")
        with self._lock:
            return generate.chat(self.model, self.tokenizer, [{"role": "user", "content": question}], max_new_tokens)

    def complete(self, prompt: str, max_new_tokens: int = 16) -> str:
        _check_text(prompt, "prompt")
        with self._lock:
            return generate.complete(self.model, self.tokenizer, prompt, max_new_tokens)

    def facts(self, user_id: str | None = None) -> list[dict]:
        return self.ledger.facts(user_id=user_id)

    def history(self, fact_id: str) -> list[dict]:
        if self.ledger.get(fact_id) is None:
            raise KeyError(f"no fact with id {fact_id!r}")
        return self.ledger.history(fact_id)

    @property
    def version(self) -> int:
        return self.ledger.latest_version()

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _as_list(facts) -> list:
    if isinstance(facts, (Fact, dict)):
        return [facts]
    return list(facts)


def _check_text(text, name: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name} must be non-empty text")
    if len(text) > 8000:
        raise ValueError(f"{name} is {len(text)} characters long; at most 8000 are allowed")
