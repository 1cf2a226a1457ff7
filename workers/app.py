"""The Celery application: the wake task that drains the fact queue, and the nightly sleep on beat (the shared
scope's night, then a group of one task per user with facts to consolidate).

The Redis stream (see agentmem/writer/fact_queue.py) holds the facts; a Celery
message only wakes a worker, so a lost or repeated message costs nothing.
Workers run the solo pool: the process that loaded the model runs the tasks.
A worker builds the writer alone (model, queue, lock, editor), not the Memory facade.

    celery -A agentmem.workers.app worker --pool solo    (or: agentmem worker)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from celery import Celery, group, signals
from celery.schedules import crontab

from ..config import Settings, cron_fields
from ..sleep.night import run_night, run_user_night, users_due
from ..storage.layout import Layout
from ..writer.dispatch import SLEEP_TASK, SLEEP_USER_TASK, WAKE_TASK, task_queue
from ..writer.pipeline import TRANSIENT
from ..writer.service import Writer
from ..writer.writer_lock import LockBusy

log = logging.getLogger(__name__)

# a safety net for wake messages lost with a crashed broker or worker
SWEEP_SECONDS = 30.0


def make_app(settings: Settings) -> Celery:
    if not settings.redis_url:
        raise ValueError("the Celery workers need AGENTMEM_REDIS_URL (without it the embedded pipeline runs in-process)")
    app = Celery("agentmem", broker=settings.redis_url)
    layout = Layout(settings.home)
    queue = task_queue(layout.namespace)
    app.conf.update(
        task_default_queue=queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        # Redis redelivers a task unacknowledged for this long (acks_late): it must outlast a night
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        beat_schedule={
            "nightly-sleep": {"task": SLEEP_TASK, "schedule": crontab(**cron_fields(settings.sleep_cron))},
            "wake-sweep": {"task": WAKE_TASK, "schedule": SWEEP_SECONDS},
        },
    )
    app.agentmem_settings = settings
    _register(app)
    return app


def _register(app: Celery) -> None:
    # the tasks close over this app's settings and writer: shared=False keeps them out of other apps in the process
    state = {"writer": None}
    opening = threading.Lock()

    def writer() -> Writer:
        with opening:
            if state["writer"] is None:
                state["writer"] = Writer(app.agentmem_settings)
            return state["writer"]

    @app.task(name=WAKE_TASK, bind=True, shared=False, acks_late=True, reject_on_worker_lost=True, max_retries=None)
    def wake(self, shard: int | None = None):
        """Drain the fact queue of writer shard `shard` (None: of every shard whose lock is free) as its single
        writer; idempotent, so repeats are harmless."""
        w = writer()
        consumer = f"{self.request.hostname or 'worker'}-{os.getpid()}"
        try:
            totals = w.drain(consumer, shard=shard)
        except LockBusy as e:
            # the holder drains what we were woken for; come back in case it dies first
            log.info("wake: another worker holds the writer lock; retrying in %.1f s", e.retry_after)
            raise self.retry(countdown=e.retry_after, max_retries=None)
        except TRANSIENT as e:
            delay = min(60, 2 ** min(self.request.retries, 6))
            log.warning("wake failed (%s); retrying in %s s", e, delay)
            raise self.retry(exc=e, countdown=delay, max_retries=None)
        if (w.queue.backlog() if shard is None else w.queue.shard(shard).backlog()):
            # facts that arrived while we released the lock: their nudge may have found it busy
            self.apply_async(args=[shard])
        log.info("wake: %s", totals)
        return totals

    @app.task(name=SLEEP_TASK, bind=True, shared=False, acks_late=True, reject_on_worker_lost=True)
    def sleep(self):
        """The nightly consolidation as the single writer (wake edits wait); a redelivered night is not run again."""
        w = writer()
        settings = app.agentmem_settings
        night = self.request.id
        with w.writing(wait=3600.0) as editor:
            done = night and editor.ledger.night(night)
            if done and done["finished"]:
                log.info("night %s already ran (%s); not running it again", night, done["report"]["outcome"])
                return done["report"]
            # what has stopped holding goes first, so tonight's adapters are not trained on it
            w.expire(editor, 0)
            report = run_night(editor, settings.sleep, w.layout.sleep_reports, night=night)
        # each user's night on its own, across the workers: one user's failure holds back no other's (a user whose
        # night adapter went with an expired fact is due again by that change)
        due = users_due(w.ledger, w.layout, settings.sleep)
        if due:
            group(sleep_user.si(scope) for scope in due).apply_async()
        log.info("night %s: %s; %d users' nights sent", night, report["outcome"], len(due))
        return report

    @app.task(name=SLEEP_USER_TASK, bind=True, shared=False, acks_late=True, reject_on_worker_lost=True,
              max_retries=None)
    def sleep_user(self, scope: str):
        """One user's night as the writer of that user's shard; a redelivered night is not run again."""
        w = writer()
        night = self.request.id
        try:
            with w.writing(wait=5.0, shard=w.shard_of(scope)) as editor:
                done = night and editor.ledger.night(night)
                if done and done["finished"]:
                    return done["report"]
                w.expire(editor, w.shard_of(scope))
                return run_user_night(editor, scope, app.agentmem_settings.sleep, w.layout.user_sleep_reports(scope),
                                      night=night)
        except LockBusy as e:
            # the shard's writer is busy (a wake batch): keep this worker free and come back
            raise self.retry(countdown=e.retry_after, max_retries=None)

    @signals.worker_ready.connect(weak=False)
    def _ready(sender=None, **_):
        # a restarted worker picks up what a crashed one left and what was spooled while Redis was down
        if sender is not None and sender.app is not app:
            return
        writer().flush_spool()
        app.send_task(WAKE_TASK)

    @signals.worker_shutdown.connect(weak=False)
    def _shutdown(sender=None, **_):
        if state["writer"] is not None:
            state["writer"].close()


# a heartbeat file is touched this often while the worker process runs, tasks included
HEARTBEAT_SECONDS = 15.0


def run_worker(settings: Settings, beat: bool = False, loglevel: str = "INFO", heartbeat: Path | None = None) -> None:
    """Run one worker in this process (solo pool), optionally with the beat scheduler embedded.

    With `heartbeat`, a thread touches that file every HEARTBEAT_SECONDS: a health check can read its age,
    where `celery inspect ping` gets no answer while the solo pool runs a task.
    """
    if heartbeat is not None:
        threading.Thread(target=_beat_heart, args=(Path(heartbeat),), daemon=True, name="heartbeat").start()
    app = make_app(settings)
    layout = Layout(settings.home)
    argv = ["worker", "--pool=solo", f"--loglevel={loglevel}", "-Q", task_queue(layout.namespace),
            "-n", f"agentmem-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    if beat:
        argv += ["--beat", "--schedule", str(layout.beat_schedule)]
    app.worker_main(argv)


def _beat_heart(path: Path) -> None:
    while True:
        try:
            path.touch()
        except OSError as e:
            log.warning("cannot touch the heartbeat file %s: %s", path, e)
        time.sleep(HEARTBEAT_SECONDS)


app = make_app(Settings()) if os.environ.get("AGENTMEM_REDIS_URL") else None
