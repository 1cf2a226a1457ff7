"""What one user may hand the wake editor: facts accepted per rolling hour, and facts held or waiting at once."""

from __future__ import annotations

import time

from .ledger import ACTIVE, PENDING, WAITING, Ledger

HOUR = 3600.0


class QuotaExceeded(RuntimeError):
    """A user's call would pass their quota; `retry_after` (seconds) when waiting makes room, else None."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def check_user_quota(ledger: Ledger, user_id: str, adding: int, per_hour: int, max_facts: int,
                     now: float | None = None) -> None:
    """Raise QuotaExceeded if the user is over either limit (0: none). Called inside the transaction that has just
    recorded this call's `adding` facts of the user, so they are counted, and a refusal rolls them back."""
    now = time.time() if now is None else now
    if per_hour or max_facts:
        ledger.hold_user(user_id)  # a call at the same moment counts after this one has committed or rolled back
    if per_hour and adding > per_hour:
        raise QuotaExceeded(f"{adding} facts for user {user_id!r} in one call; at most {per_hour} an hour are allowed "
                            "(AGENTMEM_USER_FACTS_PER_HOUR)")
    if max_facts:
        held = sum(n for status, n in ledger.counts(user_id).items() if status in (ACTIVE, PENDING, *WAITING))
        if held > max_facts:
            raise QuotaExceeded(f"user {user_id!r} would hold {held} facts; at most {max_facts} are allowed "
                                "(AGENTMEM_USER_MAX_FACTS): forget some first")
    if per_hour:
        times = ledger.spooled_times(user_id, now - HOUR)
        if len(times) > per_hour:
            # room comes back as the oldest of the hour's facts age out of it
            wait = times[len(times) - per_hour - 1] + HOUR - now
            raise QuotaExceeded(f"user {user_id!r} would hand over {len(times)} facts in an hour; at most {per_hour} "
                                "are allowed (AGENTMEM_USER_FACTS_PER_HOUR)", retry_after=max(1.0, wait))
