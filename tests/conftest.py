"""Shared fixtures: one converted model and covariance cache for the whole session.

Tests under tests/unit load no model and run in seconds (`bash scripts/test.sh tests/unit`); every other
test is marked `model`.
"""

import os
from pathlib import Path

import pytest

# Converted checkpoints and covariances outlive a test run (they take minutes to build).
CACHE = Path(os.environ.get("AGENTMEM_TEST_CACHE", Path.home() / ".cache" / "agentmem-tests"))
os.environ["AGENTMEM_CACHE"] = str(CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"


UNIT = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if UNIT not in Path(item.fspath).parents:
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return CACHE


@pytest.fixture(scope="session")
def model_dir(cache_dir):
    from agentmem.serving import model_store

    return model_store.resolve(None, cache_dir)


@pytest.fixture
def open_memory(tmp_path):
    """Open Memory objects in fresh homes; all closed at the end of the test."""
    from agentmem import Memory

    opened = []

    def _open(name="home", **kwargs):
        mem = Memory.open(tmp_path / name, **kwargs)
        opened.append(mem)
        return mem

    yield _open
    for m in opened:
        m.close()
