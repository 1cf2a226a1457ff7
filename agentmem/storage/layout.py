"""The on-disk layout of a memory home: the one place that knows every path and name in it.

    HOME/ledger.sqlite                      facts, events, versions (unless the ledger is in PostgreSQL)
    HOME/store/edits/<fact>.safetensors     per layer: B, A (dW = B A) and the keys written
    HOME/store/training/                    the edited tensors (base + scaled edits) and active.json
    HOME/store/versions/vNNNNNN/            model.safetensors (changed tensors only), manifest.json
    HOME/store/adapters/aNNNNNN/            PEFT LoRA adapters (and facts.json: what a night trained on)
    HOME/store/users/<user>/<user>-vNNNNNN/ each user's published memory: one PEFT LoRA adapter per user version
      .../<user>-vNNNNNN/sleep/             that user's night adapter alone (and facts.json), for the next night
    HOME/store/staging/<writer>/            a writer's files before its fenced commit moves them into place
    HOME/sleep/night-*.json                 one report per night of the shared scope
    HOME/sleep/users/<user>/night-*.json    one report per night of a user
    HOME/server/                            the model server's logs
    HOME/cache/                             converted models, covariances, preserved keys (default)
    HOME/celerybeat-schedule                the beat scheduler's state
    HOME/writer.lock                        held by the embedded writer for its life (one per home)
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
TRAINING_ACTIVE_FILE = "active.json"
TRAINED_ON_FILE = "facts.json"  # beside each adapter: the facts it was trained on
USER_SLEEP_DIR = "sleep"  # in a user's adapter folder: their night adapter alone
# What vLLM and peft need of a LoRA adapter folder.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def check_name(name: str) -> str:
    """A fact id or adapter name that is safe as one path component."""
    if not _NAME.match(name) or name.startswith("."):
        raise ValueError(f"invalid name {name!r}: letters, digits, _ . - only, at most 128")
    return name


class Layout:
    def __init__(self, home: Path):
        self.home = Path(home).expanduser()

    @property
    def ledger(self) -> Path:
        return self.home / "ledger.sqlite"

    @property
    def store(self) -> Path:
        return self.home / "store"

    @property
    def edits(self) -> Path:
        return self.store / "edits"

    def edit_file(self, fid: str) -> Path:
        return self.edits / f"{check_name(fid)}.safetensors"

    @property
    def training(self) -> Path:
        return self.store / "training"

    @property
    def versions(self) -> Path:
        return self.store / "versions"

    def version_dir(self, n: int) -> Path:
        return self.versions / f"v{n:06d}"

    def version_numbers(self) -> list[int]:
        """The version folders present, oldest first."""
        found = (re.fullmatch(r"v(\d{6,})", p.name) for p in self.versions.iterdir()) if self.versions.is_dir() else ()
        return sorted(int(m.group(1)) for m in found if m)

    @property
    def adapters(self) -> Path:
        return self.store / "adapters"

    @staticmethod
    def adapter_name(version: int) -> str:
        """The adapter first served by `version`: a new name per adapter, so a server never confuses two."""
        return f"a{version:06d}"

    @staticmethod
    def adapter_ref(name: str) -> str:
        """How a manifest names an adapter: its path relative to the store."""
        return f"adapters/{check_name(name)}"

    def adapter_dir(self, name: str) -> Path:
        return self.store / self.adapter_ref(name)

    @property
    def users(self) -> Path:
        return self.store / "users"

    @staticmethod
    def user_key(scope: str) -> str:
        """A user's folder name: any user id as one safe path component, never another user's."""
        if not scope:
            raise ValueError("the shared scope has no user folder")
        return "u" + hashlib.sha256(scope.encode()).hexdigest()[:20]

    def user_dir(self, scope: str) -> Path:
        return self.users / self.user_key(scope)

    @classmethod
    def user_adapter_name(cls, scope: str, n: int) -> str:
        """The adapter of a user's version n: a new name every time, even for a user forgotten and come back
        (a server never confuses two)."""
        return f"{cls.user_key(scope)}-v{n:06d}-{secrets.token_hex(4)}"

    def user_adapter_dir(self, scope: str, name: str) -> Path:
        return self.user_dir(scope) / check_name(name)

    @property
    def staging(self) -> Path:
        return self.store / "staging"

    def staging_for(self, token: int | None, shard: int = 0) -> Path:
        """Where the writer holding fencing token `token` of writer shard `shard` (None: the embedded writer)
        prepares its files."""
        return self.staging / ("embedded" if token is None else f"w{token}" if shard == 0 else f"s{shard}-w{token}")

    def staging_of_shard(self, shard: int) -> list[Path]:
        """The staging folders writers of `shard` left (shard 0: the embedded writer's too)."""
        if not self.staging.is_dir():
            return []
        mine = re.compile(r"(embedded|w\d+)" if shard == 0 else rf"s{shard}-w\d+")
        return [p for p in self.staging.iterdir() if mine.fullmatch(p.name)]

    @property
    def writer_lock(self) -> Path:
        return self.home / "writer.lock"

    @property
    def sleep_reports(self) -> Path:
        return self.home / "sleep"

    def user_sleep_reports(self, scope: str) -> Path:
        """A user's night reports (HOME/sleep/users/<user>), gone with the user."""
        return self.sleep_reports / "users" / self.user_key(scope)

    @property
    def server_logs(self) -> Path:
        return self.home / "server"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    @property
    def beat_schedule(self) -> Path:
        return self.home / "celerybeat-schedule"

    @property
    def namespace(self) -> str:
        """Redis key prefix for this home, so that several homes can share a Redis."""
        return "agentmem:" + hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:12]
