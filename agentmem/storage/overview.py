"""The home at a glance, read from the ledger and the night reports alone: no model, no queue."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .layout import Layout
from .ledger import Ledger

log = logging.getLogger(__name__)

# what a night report says at a glance; the rest (configuration, parts, per-fact detail) stays in the report
NIGHT_FIELDS = ("started", "outcome", "seconds", "facts", "version")


def newest_night(reports_dir: Path) -> dict | None:
    """The newest night report in `reports_dir`, or None if no night has run (or none can be read)."""
    for path in sorted(Path(reports_dir).glob("night-*.json"), reverse=True):
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            log.warning("night report %s unreadable: %s", path, e)
    return None


def newest_night_glance(reports_dir: Path) -> dict | None:
    night = newest_night(reports_dir)
    return night and {k: night.get(k) for k in NIGHT_FIELDS}


def overview(ledger: Ledger, layout: Layout, user_id: str | None = None) -> dict:
    """The newest version, what a model server last said it serves, facts by status (one user's, or all), the
    base model the home is bound to, and the newest night (the user's own, or the shared scope's)."""
    return {"version": ledger.latest_version(), "live": ledger.live(), "facts": ledger.counts(user_id),
            "base_model": ledger.base_model(),
            "night": newest_night_glance(layout.sleep_reports if user_id is None else layout.user_sleep_reports(user_id))}


def users_overview(ledger: Ledger, layout: Layout, limit: int = 100, offset: int = 0) -> list[dict]:
    """A page of the users with facts, by id: facts by status, newest user version (0: none yet), newest night."""
    return [{**u, "night": newest_night_glance(layout.user_sleep_reports(u["user_id"]))}
            for u in ledger.users(limit, offset)]
