"""agentmem: memory for chat assistants, written into the model's weights."""

from .facts import Fact, FactError

__all__ = ["Fact", "FactError", "Memory", "MemoryClient", "QuotaExceeded"]


def __getattr__(name: str):
    # `Memory` loads torch; importing the package for a Fact, a setting or the ledger should not
    if name == "Memory":
        from .memory import Memory

        return Memory
    if name == "MemoryClient":
        from .client import MemoryClient

        return MemoryClient
    if name == "QuotaExceeded":
        from .storage.quota import QuotaExceeded

        return QuotaExceeded
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
