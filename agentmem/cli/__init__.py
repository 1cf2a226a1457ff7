"""The command line (the benchmarks are mounted on it as `agentmem eval` by agentmem/__main__.py)."""

from .app import app, run

__all__ = ["app", "run"]
