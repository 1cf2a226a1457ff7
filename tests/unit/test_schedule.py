"""The Celery app: AGENTMEM_SLEEP_CRON read as cron reads it, the visibility timeout, each night run once."""

import importlib.util
import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery.exceptions import Retry
from pydantic import ValidationError

from agentmem.config import Settings, settings_error
from agentmem.facts import Fact
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import ACTIVE, Ledger
from agentmem.writer.dispatch import SLEEP_TASK, SLEEP_USER_TASK
from agentmem.writer.writer_lock import LockBusy

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"  # never connected to: nothing here is sent


@pytest.fixture
def workers():
    """This tree's workers/app.py, freshly loaded (an installed agentmem.workers may be another copy)."""
    spec = importlib.util.spec_from_file_location("agentmem.workers.app", ROOT / "workers" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def due(schedule, last_run: datetime, now: datetime) -> bool:
    schedule.nowfun = lambda: now
    return schedule.is_due(last_run)[0]


@pytest.mark.parametrize("cron, last_run, next_run", [
    ("0 3 * * *", utc(2025, 1, 6, 3), utc(2025, 1, 7, 3)),
    ("0 3 * * 1", utc(2025, 1, 6, 3), utc(2025, 1, 13, 3)),  # Mondays, not every day of January
    ("0 3 1 * *", utc(2025, 1, 1, 3), utc(2025, 2, 1, 3)),  # the 1st, not Mondays
    ("0 3 15 * *", utc(2025, 1, 15, 3), utc(2025, 2, 15, 3)),  # the 15th (as a weekday it stopped the app)
    ("30 2 * 6 *", utc(2025, 6, 30, 2, 30), utc(2026, 6, 1, 2, 30)),  # every day of June, not the 6th
    ("*/20 9-17 * * mon-fri", utc(2025, 1, 10, 17, 40), utc(2025, 1, 13, 9)),  # Friday's last, then Monday
])
def test_the_nightly_sleep_runs_when_cron_would(workers, tmp_path, cron, last_run, next_run):
    app = workers.make_app(Settings(home=tmp_path, redis_url=REDIS_URL, sleep_cron=cron))
    schedule = app.conf.beat_schedule["nightly-sleep"]["schedule"]
    assert not due(schedule, last_run, next_run - timedelta(minutes=1))
    assert due(schedule, last_run, next_run)


@pytest.mark.parametrize("cron", [
    "0 3 15 * * *", "0 3 * *", "61 3 * * *", "0 24 * * *", "0 3 0 * *", "0 3 * 13 *", "0 3 * * 7",
    "x 3 * * *", "*/ 3 * * *", "0 3 31 2 *",
    "0 3 1 * 1",  # cron: the 1st or a Monday; Celery: only a Monday the 1st
])
def test_a_bad_sleep_cron_is_refused_on_one_line_naming_it(cron):
    with pytest.raises(ValidationError) as e:
        Settings(sleep_cron=cron)
    said = settings_error(e.value)
    assert said.startswith("AGENTMEM_SLEEP_CRON: ") and "\n" not in said, said


def test_the_command_line_refuses_a_bad_sleep_cron_on_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AGENTMEM_HOME": str(tmp_path), "AGENTMEM_SLEEP_CRON": "0 3 15 * * *"}
    code = "import sys; sys.argv = ['agentmem', 'facts']; from agentmem.cli import run; run()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "agentmem: AGENTMEM_SLEEP_CRON: sleep_cron must have 5 fields (minute hour day-of-month month day-of-week), "
        "got '0 3 15 * * *'"]


def test_the_visibility_timeout_comes_from_the_settings(workers, tmp_path):
    app = workers.make_app(Settings(home=tmp_path, redis_url=REDIS_URL))
    assert app.conf.broker_transport_options == {"visibility_timeout": 6 * 3600}
    assert app.conf.task_acks_late  # why the timeout matters: a task is acknowledged only when it ends
    app = workers.make_app(Settings(home=tmp_path, redis_url=REDIS_URL, visibility_timeout_s=600))
    assert app.conf.broker_transport_options["visibility_timeout"] == 600


class FakeWriter:
    """What the sleep task uses of a Writer: its layout, and an editor (a real ledger) as the single writer."""

    def __init__(self, settings):
        self.layout = Layout(settings.home)
        self.ledger = Ledger.open(self.layout)
        self.editor = SimpleNamespace(ledger=self.ledger, fence=None)

    busy = False  # every writer lock held by another process
    shards: list[int] = []  # the shards written, in order

    @contextmanager
    def writing(self, wait, shard=0):
        FakeWriter.shards.append(shard)
        if FakeWriter.busy:
            raise LockBusy(0.5)
        yield self.editor

    def shard_of(self, scope):
        return 1

    expired: list[int] = []  # the shards whose expired facts a night forgot first, in order

    def expire(self, editor, shard):
        FakeWriter.expired.append(shard)
        return [], set()


def night_moving_stages(runs: list, fail_first: bool = False):
    """A stand-in for run_night that commits what a published night does: each fact one stage on, the night done."""

    def run_night(editor, cfg, reports_dir, progress=None, night=None):
        runs.append(night)
        ledger = editor.ledger
        with ledger.transaction(editor.fence):
            ledger.start_night(night)
        if fail_first and len(runs) == 1:
            raise MemoryError("the worker ran out of memory mid-night")
        report = {"night": night, "outcome": "published", "version": len(runs)}
        with ledger.transaction(editor.fence):
            for row in ledger.facts(status=ACTIVE):
                ledger.restage(row["id"], row["stage"] + 1, 0.5)
            ledger.end_night(night, report)
        return report

    return run_night


@pytest.fixture
def sleep_task(workers, tmp_path):
    workers.Writer = FakeWriter
    app = workers.make_app(Settings(home=tmp_path, redis_url=REDIS_URL))
    ledger = Ledger.open(Layout(tmp_path))
    with ledger.transaction():
        ledger.add_fact("f1", Fact(subject="Thea Albescu", relation="lives in", object="Oslo"), ACTIVE)
    yield app.tasks[SLEEP_TASK], ledger
    ledger.close()


def test_a_redelivered_night_is_not_run_again(workers, sleep_task):
    task, ledger = sleep_task
    runs = []
    workers.run_night = night_moving_stages(runs)
    FakeWriter.expired = []
    first = task.apply(task_id="night-1").get()
    again = task.apply(task_id="night-1").get()  # the same message, redelivered after the visibility timeout
    assert runs == ["night-1"] and FakeWriter.expired == [0]  # what stopped holding went before the night
    assert again == first
    assert ledger.get("f1")["stage"] == 1
    task.apply(task_id="night-2").get()  # the next night runs
    assert runs == ["night-1", "night-2"]
    assert ledger.get("f1")["stage"] == 2
    assert ledger.night("night-1")["finished"] is not None


def test_a_night_that_did_not_finish_runs_when_redelivered(workers, sleep_task):
    task, ledger = sleep_task
    runs = []
    workers.run_night = night_moving_stages(runs, fail_first=True)
    with pytest.raises(MemoryError):
        task.apply(task_id="night-1").get()
    assert ledger.night("night-1")["finished"] is None  # started, not done
    task.apply(task_id="night-1").get()
    assert runs == ["night-1", "night-1"]
    assert ledger.get("f1")["stage"] == 1


def test_the_night_fans_out_one_task_per_user_with_facts_to_consolidate(workers, sleep_task, monkeypatch):
    task, ledger = sleep_task
    workers.run_night = night_moving_stages([])
    with ledger.transaction():
        for user in ("u2", "u1"):
            ledger.add_fact(f"f-{user}", Fact(subject=f"User {user}", relation="lives in", object="Oslo",
                                              user_id=user), ACTIVE)
    sent = []

    class Group:  # what would go to the broker
        def __init__(self, signatures):
            self.signatures = list(signatures)

        def apply_async(self):
            sent.append([(sig.task, tuple(sig.args)) for sig in self.signatures])

    monkeypatch.setattr(workers, "group", Group)
    task.apply(task_id="night-1").get()
    assert sent == [[("agentmem.sleep_user", ("u1",)), ("agentmem.sleep_user", ("u2",))]]


def test_a_users_night_runs_on_their_shard_once_per_night_and_waits_for_a_busy_shard(workers, sleep_task):
    task, ledger = sleep_task
    user_task = task.app.tasks[SLEEP_USER_TASK]
    runs = []

    def run_user_night(editor, scope, cfg, reports_dir, progress=None, night=None):
        runs.append((scope, night))
        with ledger.transaction():
            ledger.start_night(night)
            ledger.end_night(night, {"outcome": "published"})
        return {"outcome": "published"}

    workers.run_user_night = run_user_night
    FakeWriter.shards, FakeWriter.expired = [], []
    first = user_task.apply(args=["u1"], task_id="u1-night").get()
    assert user_task.apply(args=["u1"], task_id="u1-night").get() == first  # redelivered: not run again
    assert runs == [("u1", "u1-night")] and FakeWriter.shards == [1, 1]  # as the writer of u1's shard
    assert FakeWriter.expired == [1]  # that shard's expired facts went before the night
    FakeWriter.busy = True
    try:
        with pytest.raises(Retry):  # the shard's writer is busy: the task comes back later, the worker stays free
            user_task.apply(args=["u2"], task_id="u2-night", throw=True).get()
    finally:
        FakeWriter.busy = False
    assert runs == [("u1", "u1-night")]


def test_run_night_records_the_night_it_was_given(tmp_path):
    from agentmem.sleep.config import SleepConfig
    from agentmem.sleep.night import run_night

    ledger = Ledger.open(Layout(tmp_path))
    editor = SimpleNamespace(ledger=ledger, fence=None, store=None, transaction=ledger.transaction)
    report = run_night(editor, SleepConfig(), tmp_path / "sleep", night="night-1")
    assert report["outcome"] == "nothing to consolidate"
    assert ledger.night("night-1")["report"] == report
    assert ledger.night("night-1")["finished"] >= ledger.night("night-1")["started"]
    assert run_night(editor, SleepConfig(), tmp_path / "sleep")["outcome"] == "nothing to consolidate"  # by hand
    ledger.close()
