"""Shared fixtures: one converted model and covariance cache for the whole session.

Tests under tests/unit load no model and run in seconds (`bash scripts/test.sh tests/unit`); every other
test is marked `model`. Tests marked `full` run only with AGENTMEM_TEST_FULL=1 (see the marker's description).
"""

import os
from pathlib import Path

import pytest

# Converted checkpoints and covariances outlive a test run (they take minutes to build).
CACHE = Path(os.environ.get("AGENTMEM_TEST_CACHE", Path.home() / ".cache" / "agentmem-tests"))
os.environ["AGENTMEM_CACHE"] = str(CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"


UNIT = Path(__file__).parent / "unit"
FULL = os.environ.get("AGENTMEM_TEST_FULL") == "1"

# Under pytest-xdist (AGENTMEM_TEST_WORKERS=N bash scripts/test.sh) the cores are divided among the workers, as
# the README tells deployments to divide them among processes: threads fighting over cores cost twice the time.
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER:
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _threads


def pytest_collection_modifyitems(config, items):
    full_only = pytest.mark.skip(reason="runs with AGENTMEM_TEST_FULL=1 (the default tier fits CI's time)")
    for item in items:
        if UNIT not in Path(item.fspath).parents:
            item.add_marker(pytest.mark.model)
        if not FULL and item.get_closest_marker("full"):
            item.add_marker(full_only)


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
    here and dropped after, at 127.0.0.1:5432 or, under pytest-xdist, beside that database: one per worker,
    since the ledger's tests empty it. Skipped only when that variable is unset and no server answers."""
    from sqlalchemy import create_engine, make_url
    from sqlalchemy.exc import OperationalError

    given = os.environ.get("AGENTMEM_TEST_DATABASE_URL")
    if given and not WORKER:
        yield given
        return
    base = make_url(given or f"{POSTGRES_SERVER}/agentmem_test_{os.getpid()}")
    name = f"{base.database}_{WORKER}" if WORKER else base.database
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except OperationalError as e:
        admin.dispose()
        if given:
            raise
        pytest.skip(f"no PostgreSQL answers at 127.0.0.1:5432 and AGENTMEM_TEST_DATABASE_URL is unset: {e.orig}")
    yield base.set(database=name).render_as_string(hide_password=False)
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


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    """A new ledger on SQLite and on PostgreSQL in turn (a test file may define its own `ledger` instead)."""
    from agentmem.storage.layout import Layout
    from agentmem.storage.ledger import Ledger

    url = None if request.param == "sqlite" else request.getfixturevalue("empty_postgres")
    ledger = Ledger.open(Layout(tmp_path), url)
    yield ledger
    ledger.close()
