"""`MemoryClient`: agentmem over HTTP, for an application on another machine: no model, no torch, no shared home.

    client = MemoryClient("http://mem:8080", server_url="http://mem:8000", token="<u1's token>")
    facts = client.observe([{"role": "user", "content": "I live in Lisbon."}])
    client.wait([f.id for f in facts])          # until the workers have written them into the weights
    client.ask("Where do I live?")              # "Lisbon", from u1's memory, in a new conversation

Writes, listings and forgetting go to the memory API (`agentmem api`); answers
come from the model server (`agentmem serve`); both take the same bearer token.
A user's token acts for that user (`user_id` may be left out, or name them);
an operator's names the user in each call, or none for the shared scope.
Refusals raise what `Memory` raises: FactError (a ValueError) for bad input,
QuotaExceeded past a user's quota, KeyError for a fact that is not the
caller's, PermissionError for a token refused, and ClientError otherwise.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import httpx

from .extract import ExtractionError, chat_messages
from .facts import SHARED, Fact, FactError
from .serving.client import ServerClient, ServerError
from .storage.ledger import PENDING, WAITING
from .storage.quota import QuotaExceeded

UNAPPLIED = (*WAITING, PENDING)  # a fact in one of these has not reached the weights yet
FACT_FIELDS = ("subject", "relation", "object", "prompt", "question", "expires")
PAGE = 10_000  # the API's largest page of facts


class ClientError(RuntimeError):
    """The memory API or the model server could not be reached, or failed; `status` is its HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class MemoryClient:
    """`api_url`: `agentmem api`; `server_url`: `agentmem serve` (needed by ask and chat only). A request answered
    503 (the writer busy, a version not live yet) is tried again after its Retry-After, up to `retries` times."""

    def __init__(self, api_url: str, server_url: str | None = None, token: str | None = None, timeout: float = 60.0,
                 retries: int = 3, transport: httpx.BaseTransport | None = None):
        self.url = api_url.rstrip("/")
        self.retries = retries
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=auth, transport=transport,
                                 timeout=httpx.Timeout(timeout, connect=5.0))
        self.server = ServerClient(server_url, timeout=max(timeout, 120.0), token=token) if server_url else None
        # the newest versions this client has seen its facts reach: later answers come from at least these
        self._min_version = 0
        self._min_user_version: dict[str | None, int] = {}

    # -- writing ---------------------------------------------------------------

    def observe(self, messages: Iterable[Any], user_id: str | None = None) -> list[Fact]:
        """The conversation hook: the facts the API extracted from the user's turns, each with `id`, `status`
        (queued, spooled, known, rejected) and `reason`. Messages: LangChain messages or role/content dicts."""
        conv = chat_messages(messages)
        if not conv:
            raise FactError("no user, assistant or system message to observe")
        out = self._call("POST", "/v1/observe", json={"messages": conv, "user_id": user_id})
        return [_tagged(f, out["user_id"]) for f in out["facts"]]

    def remember_later(self, facts: Iterable[Fact | dict], user_id: str | None = None) -> list[Fact]:
        """State facts directly: screened as observed ones and queued, all in one scope (`user_id`, or each fact's
        own; an operator naming nobody: the shared scope). One malformed fact queues none."""
        parsed = [Fact.parse(f) for f in facts]
        if not parsed:
            raise FactError("no facts given")
        scopes = {f.user_id for f in parsed if f.user_id is not None} | ({user_id} if user_id else set())
        if len(scopes) > 1:
            raise FactError(f"the facts of one call go to one scope; these name {sorted(scopes)}")
        body = {"facts": [{k: getattr(f, k) for k in FACT_FIELDS if getattr(f, k) is not None} for f in parsed],
                "user_id": next(iter(scopes), None)}
        out = self._call("POST", "/v1/facts", json=body)
        return [_tagged(f, out["user_id"]) for f in out["facts"]]

    def wait(self, ids: Iterable[str] | None = None, timeout: float = 60.0, poll: float = 0.25) -> bool:
        """Block until the given facts (default: all of the caller's) have left the queue; False on timeout.
        Answers after this come from at least the versions that wrote them."""
        ids = None if ids is None else list(dict.fromkeys(ids))
        deadline = time.monotonic() + timeout
        while True:
            rows = [self.fact(i) for i in ids] if ids is not None else self.facts(status=UNAPPLIED)
            if not any(r["status"] in UNAPPLIED for r in rows):
                for r in rows if ids is not None else ():
                    self._saw(r)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)

    def forget(self, fact_id: str) -> int:
        """Remove a fact from the weights (or from the queue); returns the version that no longer has it."""
        version = self._call("DELETE", f"/v1/facts/{_segment(fact_id)}")["version"]
        self._min_version = max(self._min_version, version)
        return version

    def forget_user(self, user_id: str) -> int:
        """Everything of `user_id` gone at once; returns how many facts went."""
        return self._call("DELETE", f"/v1/users/{_segment(user_id)}")["facts"]

    def sleep(self) -> str:
        """Start a night now (an operator's token); returns where it runs ("celery" or "thread")."""
        return self._call("POST", "/v1/sleep")["runs_in"]

    def issue_token(self, user_id: str) -> dict:
        """A new token for `user_id` (an operator's token): id, user_id, created, and the token, shown only here."""
        return self._call("POST", f"/v1/users/{_segment(user_id)}/tokens")

    def revoke_token(self, token_id: str) -> None:
        """Revoke an issued token (an operator's, or its own user's): refused at once by the API and the server."""
        self._call("DELETE", f"/v1/tokens/{_segment(token_id)}")

    def tokens(self, user_id: str | None = None) -> list[dict]:
        """The issued tokens by id (never the tokens): the caller's own, or an operator's choice."""
        return self._call("GET", "/v1/tokens", params=_params(user_id=user_id))

    # -- reading ---------------------------------------------------------------

    def facts(self, user_id: str | None = None, status: str | tuple[str, ...] | None = None) -> list[dict]:
        """The caller's facts, oldest first (an operator: everyone's, or `user_id`'s), with id, status and fact."""
        statuses = [status] if status is None or isinstance(status, str) else list(status)
        out = [row for s in statuses for row in self._pages(user_id, s)]
        return sorted(out, key=lambda r: r["created"]) if len(statuses) > 1 else out

    def _pages(self, user_id: str | None, status: str | None) -> Iterator[dict]:
        offset = 0
        while True:
            page = self._call("GET", "/v1/facts", params=_params(user_id=user_id, status=status, limit=PAGE,
                                                                  offset=offset))
            yield from page
            if len(page) < PAGE:
                return
            offset += len(page)

    def fact(self, fact_id: str) -> dict:
        return self._call("GET", f"/v1/facts/{_segment(fact_id)}")

    def history(self, fact_id: str) -> list[dict]:
        return self._call("GET", f"/v1/facts/{_segment(fact_id)}/history")

    def status(self) -> dict:
        return self._call("GET", "/v1/status")

    def users(self, limit: int = 100, offset: int = 0) -> list[dict]:
        """The users with memory (an operator's token)."""
        return self._call("GET", "/v1/users", params={"limit": limit, "offset": offset})

    # -- answering -------------------------------------------------------------

    def ask(self, question: str, user_id: str | None = None, max_new_tokens: int = 48) -> str:
        """Greedy chat answer from the model server with the caller's memory (an operator: `user_id`'s, or the
        shared memory alone); no memory text enters the context."""
        return self.chat([{"role": "user", "content": question}], user_id, max_new_tokens)

    def chat(self, messages: Iterable[Any], user_id: str | None = None, max_new_tokens: int = 128) -> str:
        conv, at = self._asking(messages, user_id)
        with _answering():
            return self.server.chat(conv, max_new_tokens, **at)

    def stream_chat(self, messages: Iterable[Any], user_id: str | None = None,
                    max_new_tokens: int = 128) -> Iterator[str]:
        """`chat`, as text pieces while they are generated."""
        conv, at = self._asking(messages, user_id)
        with _answering():
            yield from self.server.stream_chat(conv, max_new_tokens, **at)

    def _asking(self, messages: Iterable[Any], user_id: str | None) -> tuple[list[dict], dict]:
        """The conversation to send, and the versions its answer must come from at least."""
        if self.server is None:
            raise ClientError("answers come from the model server: give MemoryClient a server_url")
        conv = chat_messages(messages)
        if not conv or conv[-1]["role"] != "user":
            raise ValueError("a conversation must end with a user turn")
        return conv, {"min_version": self._min_version, "user": user_id,
                      "min_user_version": self._min_user_version.get(user_id, 0)}

    @property
    def version(self) -> int:
        """The newest shared version (as the memory API reports it)."""
        return self.status()["version"]

    # -- plumbing --------------------------------------------------------------

    def _saw(self, row: dict) -> None:
        """Remember the version that wrote `row`, so that later answers are at least that new."""
        if row.get("version_added") is None:
            return
        if row["user_id"] == SHARED:
            self._min_version = max(self._min_version, row["version_added"])
        else:
            # keyed by how this client names the user: a user's own token names nobody
            for who in {None, row["user_id"]}:
                self._min_user_version[who] = max(self._min_user_version.get(who, 0), row["version_added"])

    def _call(self, method: str, path: str, **kw) -> Any:
        for attempt in range(self.retries + 1):
            try:
                r = self.http.request(method, path, **kw)
            except httpx.TransportError as e:
                raise ClientError(f"memory API {self.url} unreachable: {e}") from None
            if r.status_code != 503 or attempt == self.retries:
                break
            time.sleep(_retry_after(r, default=2.0 ** attempt))
        if r.is_success:
            return r.json()
        raise _error(r)

    def close(self) -> None:
        self.http.close()
        if self.server is not None:
            self.server.close()

    def __enter__(self) -> "MemoryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def _answering() -> Iterator[None]:
    """The model server's refusal of a token as PermissionError, as the memory API's."""
    try:
        yield
    except ServerError as e:
        if e.status in (401, 403):
            raise PermissionError(str(e)) from None
        raise


def _tagged(f: dict, user_id: str | None) -> Fact:
    return Fact.parse({**f, "user_id": user_id})


def _segment(value: str) -> str:
    """`value` as one path segment: a slash or dot-dot could otherwise reach another route."""
    if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
        raise KeyError(f"no such id {value!r}")
    return value


def _params(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


def _retry_after(r: httpx.Response, default: float) -> float:
    try:
        return min(30.0, max(0.0, float(r.headers.get("Retry-After", default))))
    except ValueError:
        return default


def _detail(r: httpx.Response) -> str:
    """The API's one-line reason: FastAPI's `detail` (text, or pydantic's list naming the field)."""
    try:
        detail = r.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return r.text[:300] or r.reason_phrase
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', ())[1:])}: {d.get('msg')}" for d in detail)
    return str(detail)


def _error(r: httpx.Response) -> Exception:
    why, status = _detail(r), r.status_code
    if status in (400, 413, 422):
        return FactError(why)
    if status in (401, 403):
        return PermissionError(why)
    if status == 404:
        return KeyError(why)
    if status == 429:
        later = r.headers.get("Retry-After")
        return QuotaExceeded(why, float(later) if later else None)
    if status == 502:
        return ExtractionError(why)
    return ClientError(f"memory API answered {status}: {why}", status)
