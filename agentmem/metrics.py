"""Prometheus metrics of one memory home, read from the ledger, the queue and the night reports at each scrape.

Nothing is counted in process memory: edits happen in worker processes and
publishes in the model server, so the ledger they all write is the one place
that knows every latency, and any process that can read it can serve /metrics.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from .facts import SHARED
from .storage.ledger import ACTIVE, FAILED, FORGOTTEN, PENDING, QUEUED, REJECTED, SPOOLED, SUPERSEDED, Ledger
from .storage.overview import newest_night

log = logging.getLogger(__name__)

STATUSES = (SPOOLED, QUEUED, PENDING, ACTIVE, REJECTED, SUPERSEDED, FORGOTTEN, FAILED)
# a wake edit takes seconds on a CPU; a publish a fraction of one
EDIT_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
PUBLISH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def histogram(name: str, doc: str, values: list[float], buckets: tuple[float, ...]) -> HistogramMetricFamily:
    counts = [(str(b), sum(1 for v in values if v <= b)) for b in buckets]
    return HistogramMetricFamily(name, doc, buckets=[*counts, ("+Inf", len(values))], sum_value=sum(values))


class MemoryCollector:
    """Collects on demand; `backlog` returns the queue depth, or None when the queue cannot be reached."""

    def __init__(self, ledger: Ledger, backlog: Callable[[], int | None], reports_dir: Path):
        self.ledger, self.backlog, self.reports_dir = ledger, backlog, Path(reports_dir)

    def collect(self):
        counts = self.ledger.counts()
        facts = GaugeMetricFamily("agentmem_facts", "facts in the ledger by status", labels=["status"])
        for status in sorted({*STATUSES, *counts}):
            facts.add_metric([status], counts.get(status, 0))
        yield facts
        # by scope count, never by user id: a label per user would grow without bound and name people
        scopes = self.ledger.scopes()
        users = sum(1 for scope in scopes if scope != SHARED)
        yield GaugeMetricFamily("agentmem_users", "users with facts in the ledger (each has their own memory)",
                                value=users)
        shared = GaugeMetricFamily("agentmem_scope_facts", "facts in the shared scope and in all users' scopes",
                                   labels=["scope"])
        shared.add_metric(["shared"], scopes.get(SHARED, 0))
        shared.add_metric(["users"], sum(n for scope, n in scopes.items() if scope != SHARED))
        yield shared

        depth = self.backlog()
        yield GaugeMetricFamily("agentmem_queue_up", "1 if the fact queue could be read", value=int(depth is not None))
        if depth is not None:
            yield GaugeMetricFamily("agentmem_queue_depth", "facts on the queue not yet applied", value=depth)

        yield GaugeMetricFamily("agentmem_version", "newest published version", value=self.ledger.latest_version())
        live = self.ledger.live()
        if live is not None:
            yield GaugeMetricFamily("agentmem_live_version", "version a model server last reported serving",
                                    value=live["version"])
        yield histogram("agentmem_edit_latency_seconds", "from an edit's start to its commit (newest 10000 facts)",
                        self.ledger.edit_latencies(), EDIT_BUCKETS)
        yield histogram("agentmem_publish_latency_seconds",
                        "from a version's commit until a model server served it (newest 10000 versions)",
                        self.ledger.publish_latencies(), PUBLISH_BUCKETS)

        night = newest_night(self.reports_dir)
        if night is not None:
            yield from _recall_audit(night)


def _recall_audit(night: dict):
    """The last night's chat-recall audit: its fresh facts and a sample of the held ones, asked before and after."""
    recall = GaugeMetricFamily("agentmem_recall_audit_ratio", "chat recall measured by the last night",
                               labels=["phase"])
    for phase in ("before", "after"):
        if isinstance(night.get(phase), dict) and "recall" in night[phase]:
            recall.add_metric([phase], night[phase]["recall"])
    yield recall
    if "started" in night:
        yield GaugeMetricFamily("agentmem_recall_audit_timestamp_seconds", "when the last night started",
                                value=night["started"])
    yield GaugeMetricFamily("agentmem_recall_audit_published", "1 if the last night's adapter was published",
                            value=int(night.get("outcome") == "published"))


def render(collector: MemoryCollector) -> bytes:
    """The Prometheus text exposition of one collection."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
