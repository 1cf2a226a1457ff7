"""Which writer shard applies a scope's facts: the unit of parallel writing.

Each shard has its own fact stream, writer lock and fencing token, so as many workers as there are shards
edit at once, each applying its shard's scopes in order, one at a time. The shared scope is shard 0's; a
user's scope is fixed by their id, so one user's facts always go through one shard, in order.
"""

from __future__ import annotations

import zlib

from ..facts import SHARED


def shard_of(scope: str, shards: int) -> int:
    if shards <= 1 or scope == SHARED:
        return 0
    return zlib.crc32(scope.encode()) % shards


def suffix(shard: int) -> str:
    """What a shard adds to the names of its stream, lock and fence (shard 0 keeps the names of one writer)."""
    return "" if shard == 0 else f":{shard}"
