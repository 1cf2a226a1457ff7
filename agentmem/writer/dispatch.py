"""Task names, the queue they go to, and how a process that is not a worker sends them.

A Celery message only wakes a worker: the facts themselves wait on the Redis
stream, so a lost or repeated message costs nothing.
"""

from __future__ import annotations

import logging

from celery import Celery

log = logging.getLogger(__name__)

WAKE_TASK = "agentmem.wake"
SLEEP_TASK = "agentmem.sleep"
SLEEP_USER_TASK = "agentmem.sleep_user"


def task_queue(namespace: str) -> str:
    """Tasks of one memory home go to their own queue, so several homes can share a Redis."""
    return namespace + ":tasks"


class Dispatch:
    """Sends tasks by name to the workers of one home (no task code is imported here)."""

    def __init__(self, redis_url: str, namespace: str):
        self.redis_url = redis_url
        self.queue = task_queue(namespace)
        self._app = None

    def send(self, task: str, args: list | None = None) -> None:
        if self._app is None:
            self._app = Celery("agentmem-client", broker=self.redis_url)
            self._app.conf.broker_connection_retry_on_startup = True
        self._app.send_task(task, args=args, queue=self.queue)

    def nudge(self, shards=None) -> None:
        """Wake a worker for each writer shard given (None: one for every shard); a lost nudge only delays the
        facts until the periodic sweep."""
        try:
            for k in [None] if shards is None else sorted(shards):
                self.send(WAKE_TASK, None if k is None else [k])
        except Exception as e:
            log.warning("could not wake a worker (%s); the periodic sweep will pick the facts up", e)
