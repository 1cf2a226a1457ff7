"""Logging for the services: plain lines for people, or one JSON object per line for log collectors.

Fields passed with `extra={...}` become keys of the JSON object, so a request
log line carries its method, path, status and user as data, not as prose.
"""

from __future__ import annotations

import json
import logging
import time

# attributes every LogRecord has; anything else on a record came in through `extra`
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def formatter(kind: str) -> logging.Formatter:
    """The formatter for `kind` ("json" or "text", as in Settings.log_format)."""
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)


def setup(kind: str, level: str = "INFO") -> None:
    """Send every logger's records to stderr in the `kind` format."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(kind))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic reports its setup each time a ledger opens: noise beside the service's own lines
    logging.getLogger("alembic").setLevel(logging.WARNING)
