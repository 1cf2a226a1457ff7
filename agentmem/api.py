"""`agentmem api`: the HTTP API for managing memory (observe, facts, history, forget, sleep, status, metrics).

Every route but /health and the OpenAPI description needs a bearer token.
Each token is bound to one user id (Settings.api_tokens): a user's token
reads, observes and forgets only that user's facts, and another user's fact
answers 404 exactly like a missing one. A token bound to "*" is an operator's:
it may act for any user (naming one with `user_id`), start a night, publish
an adapter and read /metrics. Inference stays in `agentmem serve`.
"""

import logging
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.dependencies.utils import get_flat_dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from .config import USER_ID
from .extract import ExtractionError
from .facts import FactError
from .facts.schema import MAX_FIELD_CHARS, MAX_OBJECT_CHARS
from .metrics import MemoryCollector, render
from .serving.auth import Forbidden, TokenMap, Unauthorized, acting_for, issue
from .storage.layout import ADAPTER_FILES
from .storage.ledger import ACTIVE, FAILED, FORGOTTEN, PENDING, QUEUED, REJECTED, SPOOLED, SUPERSEDED
from .storage.overview import users_overview
from .storage.quota import QuotaExceeded
from .writer.writer_lock import LockBusy

log = logging.getLogger("agentmem.api")

UserId = Annotated[str, Field(pattern=f"^{USER_ID.pattern}$")]
FactId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]  # also a token's id
# a write waits this long for a worker's batch to finish, then answers 503 with Retry-After: the API serves
# one Memory call at a time, so a longer wait would hold every other request too
WRITER_WAIT_S = 10.0
FactStatus = Literal[SPOOLED, QUEUED, PENDING, ACTIVE, REJECTED, SUPERSEDED, FORGOTTEN, FAILED]


# -- schemas ----------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Strict):
    role: Literal["user", "assistant", "system"]
    content: str = Field(min_length=1, max_length=20_000)


class ObserveRequest(_Strict):
    messages: list[Message] = Field(min_length=1, max_length=200)
    user_id: UserId | None = Field(None, description="whose conversation; a user's token may only name itself")


class ObservedFact(BaseModel):
    id: str
    subject: str
    relation: str
    object: str
    status: str = Field(description="queued, spooled (Redis unreachable: kept locally), known, or rejected")
    reason: str | None = None

    @classmethod
    def of(cls, fact) -> "ObservedFact":
        """A fact as `observe` and `remember_later` tag it."""
        return cls(id=fact.id, subject=fact.subject, relation=fact.relation, object=fact.object, status=fact.status,
                   reason=fact.reason)


class ObserveResponse(BaseModel):
    user_id: str
    facts: list[ObservedFact]


class FactIn(_Strict):
    subject: str = Field(min_length=1, max_length=MAX_FIELD_CHARS)
    relation: str = Field(min_length=1, max_length=MAX_FIELD_CHARS)
    object: str = Field(min_length=1, max_length=MAX_OBJECT_CHARS)
    prompt: str | None = Field(None, max_length=2 * MAX_FIELD_CHARS,
                               description="a completion prompt with '{subject}' once; derived from the relation if absent")
    question: str | None = Field(None, max_length=2 * MAX_FIELD_CHARS,
                                 description="a chat question naming the subject; derived from the relation if absent")
    expires: float | str | None = Field(None, description="when it stops holding, in Unix seconds or ISO 8601 (UTC "
                                                          "if no zone is given); it is forgotten then")


class RememberRequest(_Strict):
    facts: list[FactIn] = Field(min_length=1, max_length=100)
    user_id: UserId | None = Field(None, description="whose memory: a user's token may only name itself (or nobody: "
                                                     "its own); an operator's names a user, or nobody for the shared "
                                                     "scope every user reads")


class QueuedFacts(BaseModel):
    user_id: str | None = Field(description="whose memory the facts went to; null: the shared scope")
    facts: list[ObservedFact]


class FactRecord(BaseModel):
    id: str
    user_id: str
    subject: str
    relation: str
    object: str
    status: str
    stage: int
    scale: float
    reason: str | None
    created: float
    updated: float
    version_added: int | None
    version_removed: int | None
    expires: float | None = Field(None, description="when it is forgotten (Unix seconds); null: never by itself")
    fact: dict[str, Any]


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")  # the event's details, which differ by kind
    seq: int
    ts: float
    kind: str


class Forgotten(BaseModel):
    forgotten: str
    version: int


class UserForgotten(BaseModel):
    forgotten_user: str
    facts: int = Field(description="how many facts of the user went")


class TokenInfo(BaseModel):
    id: str = Field(description="names the token in listings and revocation; not the token")
    user_id: str
    created: float


class IssuedToken(TokenInfo):
    token: str = Field(description="the bearer token: shown in this answer once, kept nowhere")


class Revoked(BaseModel):
    revoked: str


class SleepStarted(BaseModel):
    runs_in: Literal["celery", "thread"]


class AdapterRequest(_Strict):
    path: str = Field(min_length=1, max_length=4096,
                      description="a PEFT LoRA adapter folder inside the memory home (relative to it, or absolute)")


class AdapterPublished(BaseModel):
    version: int


class Status(BaseModel):
    version: int
    live: dict[str, Any] | None
    facts: dict[str, int] = Field(description="counts by status: the caller's facts, or all for an operator")
    queue: int | None = Field(description="facts on the queue not yet applied; null if the queue is unreachable")
    mode: Literal["redis", "embedded"]
    base_model: dict[str, Any] | None = Field(description="the base model the memory is bound to; null before any "
                                                          "process bound it")
    night: dict[str, Any] | None = Field(description="the newest night (the caller's own, or the shared scope's for "
                                                     "an operator): started, outcome, seconds, facts, version")


class UserSummary(BaseModel):
    user_id: str
    facts: dict[str, int] = Field(description="the user's facts by status")
    version: int = Field(description="the user's newest version (0: none published yet)")
    night: dict[str, Any] | None = Field(description="the user's newest night: started, outcome, seconds, facts, "
                                                     "version")


class Health(BaseModel):
    status: Literal["ok"]
    version: int


class Problem(BaseModel):
    detail: Any


# -- who is asking -----------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    user_id: str | None  # None: an operator, who may act for any user

    def acting_for(self, requested: str | None, default: str | None = None) -> str | None:
        """The user a request acts for: a user's own id, or the one an operator names (else `default`)."""
        try:
            return acting_for(self.user_id, requested, default)
        except Forbidden as e:
            raise HTTPException(403, str(e)) from None

    def require_operator(self) -> None:
        if self.user_id is not None:
            raise HTTPException(403, "this needs an operator token")


class Tokens:
    """Bearer tokens and the users they act for (see serving/auth.py)."""

    def __init__(self, tokens: dict[str, str], dev: bool, issued=None):
        if not tokens and not dev:
            raise ValueError("the API needs at least one bearer token (AGENTMEM_API_TOKENS, e.g. "
                             "'{\"<random token>\": \"<user id>\"}'); for a local development run pass --dev")
        self.tokens = TokenMap(tokens, issued)
        self.dev = dev and not tokens

    def check(self, creds: HTTPAuthorizationCredentials | None) -> Caller:
        if self.dev:
            return Caller(None)
        try:
            return Caller(self.tokens.user_of(creds and creds.credentials))
        except Unauthorized as e:
            raise HTTPException(401, str(e), headers={"WWW-Authenticate": "Bearer"}) from None


# -- requests too large -------------------------------------------------------


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413 before the app reads them (declared or streamed)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        body, more = b"", True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return await self.app(scope, _replay(msg), send)
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(scope, receive, send)
        await self.app(scope, _replay({"type": "http.request", "body": body, "more_body": False}, receive), send)

    async def _refuse(self, scope, receive, send):
        response = JSONResponse({"detail": f"the request body is over {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)


def _replay(first: dict, then=None):
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await then() if then else {"type": "http.disconnect"}

    return receive


# -- the app -------------------------------------------------------------------


def inside(home: Path, path: str) -> Path:
    """`path` (relative to `home`, or absolute) with every symlink followed; 403 if it leads outside `home`."""
    home = Path(home).resolve()
    p = Path(path)
    try:
        real = (p if p.is_absolute() else home / p).resolve(strict=True)
    except (OSError, RuntimeError):
        raise HTTPException(404, f"{path!r} does not exist") from None
    if not real.is_relative_to(home):
        raise HTTPException(403, f"{path!r} is outside the memory home")
    return real


_RESPONSES = {400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem}, 413: {"model": Problem},
              429: {"model": Problem}, 503: {"model": Problem}}


def declared_query_only(request: Request) -> None:
    """Refuse a query parameter the route does not declare, as pydantic refuses an unknown body field.

    A misspelt filter (`?stauts=active`) would otherwise be ignored and answer a wider listing than asked for.
    """
    route = request.scope.get("route")
    known = {p.alias for p in get_flat_dependant(route.dependant).query_params} if route else set()
    unknown = [k for k in dict.fromkeys(request.query_params.keys()) if k not in known]
    if unknown:
        raise RequestValidationError([{"type": "extra_forbidden", "loc": ("query", k), "input": request.query_params[k],
                                       "msg": "Extra inputs are not permitted"} for k in unknown])


def create_app(mem, dev: bool = False) -> FastAPI:
    """The API over an open `Memory`. Without tokens in its settings it refuses to build unless `dev`."""
    tokens = Tokens(mem.settings.api_tokens, dev, issued=mem.ledger.token_user)
    # one Memory call at a time: its ledger connection is shared and its transactions must not interleave
    lock = threading.Lock()
    collector = MemoryCollector(mem.ledger, mem.backlog, mem.layout.sleep_reports)
    app = FastAPI(title="agentmem memory API", version="1", responses=_RESPONSES,
                  dependencies=[Depends(declared_query_only)],
                  description=__doc__.split("\n", 2)[2].strip())
    # added first, so it runs inside the access log: refused bodies are logged too
    app.add_middleware(BodyLimit, max_bytes=mem.settings.api_max_body_bytes)
    scheme = HTTPBearer(auto_error=False, description="a token from AGENTMEM_API_TOKENS")

    def authenticate(request: Request,
                     creds: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)]) -> Caller:
        caller = tokens.check(creds)
        request.state.user = "*" if caller.user_id is None else caller.user_id
        return caller

    Authed = Annotated[Caller, Depends(authenticate)]

    @contextmanager
    def memory():
        with lock:
            try:
                yield mem
            except LockBusy as e:
                raise HTTPException(503, str(e), headers={"Retry-After": str(max(1, round(e.retry_after)))}) from None
            except QuotaExceeded as e:
                later = {"Retry-After": str(round(e.retry_after))} if e.retry_after else None
                raise HTTPException(429, str(e), headers=later) from None

    def owned(caller: Caller, fact_id: str) -> dict:
        row = mem.ledger.get(fact_id)
        # another user's fact is reported exactly as a missing one: its existence is not theirs to know
        if row is None or caller.user_id not in (None, row["user_id"]):
            raise HTTPException(404, f"no fact with id {fact_id!r}")
        return row

    @app.middleware("http")
    async def access_log(request: Request, call_next):
        rid = request.headers.get("x-request-id", "")
        rid = rid if rid.isalnum() and len(rid) <= 64 else uuid.uuid4().hex
        t0 = time.perf_counter()
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        log.info("%s %s %d", request.method, request.url.path, response.status_code, extra={
            "request_id": rid, "method": request.method, "path": request.url.path, "status": response.status_code,
            "ms": round((time.perf_counter() - t0) * 1000, 1), "user": getattr(request.state, "user", None)})
        return response

    @app.get("/health", response_model=Health, tags=["service"])
    def health():
        """Liveness and the newest published version; needs no token."""
        with lock:
            return Health(status="ok", version=mem.version)

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def metrics(caller: Authed):
        """Prometheus metrics (operators only): queue depth, edit and publish latency, facts by status, recall audit."""
        caller.require_operator()
        with lock:
            return Response(render(collector), media_type="text/plain; version=0.0.4")

    @app.post("/v1/observe", response_model=ObserveResponse, tags=["memory"], responses={502: {"model": Problem}})
    def observe(body: ObserveRequest, caller: Authed):
        """The conversation hook: extract facts from the user's turns, screen them and queue them for editing."""
        user = caller.acting_for(body.user_id, "default" if tokens.dev else None)
        if user is None:
            raise HTTPException(403, "an operator token acts for no user of its own: name the user_id")
        with memory() as m:
            try:
                found = m.observe([msg.model_dump() for msg in body.messages], user_id=user)
            except (FactError, ValueError) as e:
                raise HTTPException(400, str(e)) from None
            except ExtractionError as e:
                # the extractor's address is the operator's business, not the caller's
                log.error("observe: %s", e)
                raise HTTPException(502, "fact extraction failed: the extractor model is unreachable or answered "
                                         "badly; nothing was recorded, try again later") from None
        return ObserveResponse(user_id=user, facts=[ObservedFact.of(f) for f in found])

    @app.post("/v1/facts", response_model=QueuedFacts, status_code=202, tags=["memory"])
    def remember(body: RememberRequest, caller: Authed):
        """State facts directly, as structured triples: screened as the hook screens what a user says, then queued
        for the wake editor (`status` queued, spooled, known or rejected, as /v1/observe answers). A malformed
        fact refuses the whole request and queues none."""
        user = caller.acting_for(body.user_id)
        facts = [{**f.model_dump(exclude_none=True), "user_id": user} for f in body.facts]
        with memory() as m:
            try:
                found = m.remember_later(facts)
            except (FactError, ValueError) as e:
                raise HTTPException(400, str(e)) from None
        return QueuedFacts(user_id=user, facts=[ObservedFact.of(f) for f in found])

    @app.get("/v1/facts", response_model=list[FactRecord], tags=["memory"])
    def list_facts(caller: Authed, user_id: Annotated[UserId | None, Query()] = None,
                   status: Annotated[FactStatus | None, Query()] = None,
                   limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                   offset: Annotated[int, Query(ge=0)] = 0):
        """The caller's facts (an operator: every user's, or `user_id`'s), oldest first."""
        user = caller.acting_for(user_id)
        with lock:
            rows = mem.ledger.facts(user_id=user, status=status)
        return rows[offset: offset + limit]

    @app.get("/v1/facts/{fact_id}", response_model=FactRecord, tags=["memory"])
    def get_fact(fact_id: FactId, caller: Authed):
        with lock:
            return owned(caller, fact_id)

    @app.get("/v1/facts/{fact_id}/history", response_model=list[Event], tags=["memory"])
    def history(fact_id: FactId, caller: Authed):
        """Every event of one fact, oldest first."""
        with lock:
            owned(caller, fact_id)
            return mem.ledger.history(fact_id)

    @app.delete("/v1/facts/{fact_id}", response_model=Forgotten, tags=["memory"])
    def forget(fact_id: FactId, caller: Authed):
        """Remove a fact from the weights (or from the queue) and publish the result."""
        with memory() as m:
            owned(caller, fact_id)
            m.forget(fact_id, wait=WRITER_WAIT_S)
            return Forgotten(forgotten=fact_id, version=m.version)

    @app.get("/v1/users", response_model=list[UserSummary], tags=["operator"])
    def list_users(caller: Authed, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   offset: Annotated[int, Query(ge=0)] = 0):
        """The users with memory (operators only), by id: facts by status, newest version, last night."""
        caller.require_operator()
        with lock:
            return users_overview(mem.ledger, mem.layout, limit, offset)

    @app.delete("/v1/users/{user_id}", response_model=UserForgotten, tags=["memory"])
    def forget_user(user_id: UserId, caller: Authed):
        """Remove everything of a user at once (an operator, or the user's own token): facts, edits, adapters and
        versions; nothing of theirs is answerable after, and the ledger keeps no value of theirs."""
        caller.acting_for(user_id)
        with memory() as m:
            return UserForgotten(forgotten_user=user_id, facts=m.forget_user(user_id, wait=WRITER_WAIT_S))

    @app.post("/v1/users/{user_id}/tokens", response_model=IssuedToken, status_code=201, tags=["operator"])
    def issue_token(user_id: UserId, caller: Authed):
        """A new bearer token for the user (operators only): it acts for them at once, here and in every model
        server of the home, with no restart. The answer is the only place the token is ever shown."""
        caller.require_operator()
        with lock:
            return issue(mem.ledger, user_id)

    @app.get("/v1/tokens", response_model=list[TokenInfo], tags=["memory"])
    def list_tokens(caller: Authed, user_id: Annotated[UserId | None, Query()] = None):
        """The issued tokens (never the tokens themselves): the caller's own, or for an operator everyone's or
        `user_id`'s. Tokens from AGENTMEM_API_TOKENS are not listed."""
        with lock:
            return mem.ledger.tokens(caller.acting_for(user_id))

    @app.delete("/v1/tokens/{token_id}", response_model=Revoked, tags=["memory"])
    def revoke_token(token_id: FactId, caller: Authed):
        """Revoke an issued token (an operator, or its own user): refused at once by every API and model server."""
        with lock:
            if mem.ledger.drop_token(token_id, caller.user_id) is None:
                raise HTTPException(404, f"no token with id {token_id!r}")
        return Revoked(revoked=token_id)

    @app.get("/v1/status", response_model=Status, tags=["memory"])
    def status(caller: Authed):
        """Version, what the model server serves, fact counts (the caller's own, or all for an operator), queue depth,
        base model and newest night."""
        with lock:
            return mem.status(caller.user_id)

    @app.post("/v1/sleep", response_model=SleepStarted, status_code=202, tags=["operator"],
              responses={409: {"model": Problem}})
    def sleep(caller: Authed):
        """Start a night now (operators only): consolidation of every user's facts into the adapter."""
        caller.require_operator()
        with memory() as m:
            try:
                return SleepStarted(runs_in=m.sleep_later())
            except RuntimeError as e:
                raise HTTPException(409, str(e)) from None

    @app.post("/v1/adapters", response_model=AdapterPublished, tags=["operator"])
    def publish_adapter(body: AdapterRequest, caller: Authed):
        """Serve a PEFT LoRA adapter from a new version (operators only); the folder and its files must lie in the home."""
        caller.require_operator()
        folder = inside(mem.home, body.path)
        for name in ADAPTER_FILES:
            if (folder / name).exists():
                inside(mem.home, str(folder / name))  # a symlinked file may point elsewhere
        with memory() as m:
            try:
                return AdapterPublished(version=m.publish_adapter(folder, wait=WRITER_WAIT_S))
            except ValueError as e:  # not an adapter folder
                raise HTTPException(400, str(e)) from None

    return app


def serve(mem, host: str, port: int, dev: bool = False) -> None:
    """Answer on host:port until SIGINT or SIGTERM."""
    import uvicorn

    uvicorn.run(create_app(mem, dev), host=host, port=port, log_config=None, access_log=False)
