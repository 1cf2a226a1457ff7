"""What one request to the gateway may ask: the OpenAI fields it documents, each checked and capped, nothing else.

The engines (vLLM above all) accept many more fields, some of which change
what the server does (a chat template, a logits processor); the gateway hands
them only a body rebuilt from the fields below.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

# the fields both routes take; the embedded engine ignores the penalties, logprobs, user and stream_options
COMMON = ("model", "stream", "stream_options", "max_tokens", "n", "temperature", "top_p", "stop", "seed",
          "presence_penalty", "frequency_penalty", "logprobs", "user")
FIELDS = {"chat": (*COMMON, "messages", "max_completion_tokens", "top_logprobs", "response_format"),
          "completion": (*COMMON, "prompt")}
MESSAGE_FIELDS = ("role", "content", "name")
ROLES = ("system", "developer", "user", "assistant")
MAX_STOPS = 4  # OpenAI's own limit
_COUNT = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Limits:
    """Caps on one request (the AGENTMEM_SERVE_* settings default to these)."""

    max_body_bytes: int = 1_000_000
    max_tokens: int = 2048  # max_tokens and max_completion_tokens
    max_n: int = 4
    max_logprobs: int = 5  # completion logprobs and chat top_logprobs
    request_timeout_s: float = 60.0  # from taking the read lock to the last token
    user_requests_per_minute: int = 120  # each user's requests to one server (0: no limit)


class UserRate:
    """Each user's requests per minute, as a bucket of `per_minute` that refills evenly: a burst up to the minute's
    share, then one request per 60/per_minute seconds. One user's flood cannot take a server's CPU from the rest."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (requests left, when counted)

    def take(self, user: str) -> float | None:
        """Count one request of `user`; None if it may run, else the seconds until it may."""
        if not self.per_minute:
            return None
        now, rate = self.clock(), self.per_minute / 60.0
        left, then = self._buckets.get(user, (float(self.per_minute), now))
        left = min(float(self.per_minute), left + (now - then) * rate)
        if left < 1.0:
            self._buckets[user] = (left, now)
            return (1.0 - left) / rate
        self._buckets[user] = (left - 1.0, now)
        if len(self._buckets) > 10_000:  # users whose bucket is full again need no entry
            self._buckets = {u: b for u, b in self._buckets.items() if b[0] + (now - b[1]) * rate < self.per_minute}
        return None


class RequestError(ValueError):
    """A request body the gateway refuses (400); the message names the field."""


def count(text: str | None) -> int | None:
    """A non-negative integer written in ASCII digits (a header's value), or None."""
    # str.isdigit() also takes "²", which int() refuses
    return int(text) if text is not None and _COUNT.fullmatch(text) else None


def checked(route: str, body: dict, limits: Limits) -> dict:
    """`body` with only the allowed fields, each of its type and within `limits`; RequestError otherwise."""
    allowed = FIELDS[route]
    unknown = [k for k in body if k not in allowed]
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}; this server accepts {', '.join(allowed)}")
    _check(body, "stream", bool)
    _check(body, "user", str)
    _check(body, "seed", int)
    _range(body, "temperature", 0, 2)
    _range(body, "top_p", 0, 1)
    _range(body, "presence_penalty", -2, 2)
    _range(body, "frequency_penalty", -2, 2)
    _capped(body, "max_tokens", 1, limits.max_tokens)
    _capped(body, "n", 1, limits.max_n)
    _stop(body.get("stop"))
    _stream_options(body.get("stream_options"))
    if route == "chat":
        _capped(body, "max_completion_tokens", 1, limits.max_tokens)
        _check(body, "logprobs", bool)
        _capped(body, "top_logprobs", 0, limits.max_logprobs)
        _messages(body.get("messages"))
        _response_format(body.get("response_format"))
    else:
        _capped(body, "logprobs", 0, limits.max_logprobs)
        _prompt(body.get("prompt"))
    return dict(body)


def _is(value, kind: type) -> bool:
    # JSON true is a Python int too: a count must not be a bool, nor a bool a number
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


def _check(body: dict, name: str, kind: type) -> None:
    value = body.get(name)
    if value is not None and not _is(value, kind):
        raise RequestError(f"{name} must be {_KIND[kind]}, got {value!r}")


def _range(body: dict, name: str, lo: float, hi: float) -> None:
    _check(body, name, float)
    value = body.get(name)
    if value is not None and not lo <= value <= hi:
        raise RequestError(f"{name} must be between {lo} and {hi}, got {value}")


def _capped(body: dict, name: str, lo: int, cap: int) -> None:
    _check(body, name, int)
    value = body.get(name)
    if value is not None and value < lo:
        raise RequestError(f"{name} must be at least {lo}, got {value}")
    if value is not None and value > cap:
        raise RequestError(f"{name} is {value}; this server allows at most {cap}")


def _stop(stop) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise RequestError("stop must be a string or a list of strings")
    if len(stop) > MAX_STOPS:
        raise RequestError(f"stop has {len(stop)} strings; this server allows at most {MAX_STOPS}")


def _stream_options(options) -> None:
    if options is None:
        return
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise RequestError('stream_options may only be {"include_usage": true or false}')
    _check(options, "include_usage", bool)


def _messages(messages) -> None:
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages is required: a non-empty list of {role, content}")
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{where} must be an object with role and content")
        unknown = [k for k in m if k not in MESSAGE_FIELDS]
        if unknown:
            raise RequestError(f"unknown field {where}.{unknown[0]}; a message may have {', '.join(MESSAGE_FIELDS)}")
        if m.get("role") not in ROLES:
            raise RequestError(f"{where}.role must be one of {', '.join(ROLES)}, got {m.get('role')!r}")
        _check(m, "name", str)
        content = m.get("content")
        if content is None or isinstance(content, str):
            continue
        # text parts only: an image or audio part would have the engine fetch a URL
        if not isinstance(content, list) or not all(
                isinstance(p, dict) and p.keys() == {"type", "text"} and p["type"] == "text"
                and isinstance(p["text"], str) for p in content):
            raise RequestError(f'{where}.content must be text, or a list of {{"type": "text", "text": ...}} parts')


def _response_format(fmt) -> None:
    """OpenAI's three kinds; a schema's own contents are the grammar compiler's to refuse."""
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise RequestError('response_format must be {"type": "text"}, {"type": "json_object"} or '
                           '{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}')
    if set(fmt) - ({"type", "json_schema"} if fmt["type"] == "json_schema" else {"type"}):
        raise RequestError(f"response_format of type {fmt['type']!r} takes no other field than "
                           + ("json_schema" if fmt["type"] == "json_schema" else "type"))
    if fmt["type"] == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or set(spec) - {"name", "description", "schema", "strict"} \
                or not isinstance(spec.get("name"), str) or not isinstance(spec.get("schema"), dict):
            raise RequestError("response_format.json_schema must be {name, schema (an object), and optionally "
                               "description and strict}")
        _check(spec, "strict", bool)


def _prompt(prompt) -> None:
    if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt)):
        return
    raise RequestError("prompt is required: a string or a list of strings")


_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
