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


# where our machines and CI run PostgreSQL (trust auth); AGENTMEM_TEST_DATABASE_URL names a database there
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database for this session: AGENTMEM_TEST_DATABASE_URL (CI makes one per run), or one made
    here and dropped after; skipped only when that variable is unset and no server answers at 127.0.0.1:5432."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    if url := os.environ.get("AGENTMEM_TEST_DATABASE_URL"):
        yield url
        return
    name = f"agentmem_test_{os.getpid()}"
    admin = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except OperationalError as e:
        admin.dispose()
        pytest.skip(f"no PostgreSQL answers at 127.0.0.1:5432 and AGENTMEM_TEST_DATABASE_URL is unset: {e.orig}")
    yield f"{POSTGRES_SERVER}/{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def empty_postgres(postgres_url):
    """The session's PostgreSQL database with no ledger in it yet."""
    from sqlalchemy import create_engine

    from agentmem.storage.ledger import METADATA

    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        METADATA.drop_all(conn)
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    engine.dispose()
    return postgres_url
