"""agentmem: memory for chat assistants, written into the model's weights."""

from .facts import Fact, FactError
from .memory import Memory

__all__ = ["Fact", "FactError", "Memory"]
