"""The gateway of `agentmem serve` with a fake engine: following versions past a broken one, and its request limits.

The real engines behind it are exercised by tests/test_serving.py.
"""

import asyncio
import contextlib
import json
import shutil
import time

import httpx
import pytest
import torch
from safetensors.torch import save_file

from agentmem.config import Settings
from agentmem.serving.auth import issue
from agentmem.serving.gateway import MIN_VERSION_HEADER, Gateway, create_app
from agentmem.serving.limits import Limits, UserRate
from agentmem.storage.layout import MANIFEST_FILE, WEIGHTS_FILE, Layout
from agentmem.storage.ledger import Ledger

CHAT = {"model": "agentmem", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
LIMITS = Limits(max_body_bytes=2048, max_tokens=100, max_n=2, max_logprobs=3, request_timeout_s=0.5)


class FakeEngine:
    """Applies a version by reading its tensors, as the real engines do; answers after `delay` seconds."""

    name = "fake"

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.applied: list[int] = []
        self.failed: list[int] = []
        self.fail_once: set[int] = set()
        self.bodies: list[dict] = []
        self.users: list[str | None] = []  # the user adapter each request was answered with
        self.cancelled = 0

    async def start(self):
        pass

    async def stop(self):
        pass

    async def apply(self, pub):
        try:
            if pub.version in self.fail_once:
                self.fail_once.discard(pub.version)
                raise RuntimeError("a transient failure")
            pub.tensors()
        except Exception:
            self.failed.append(pub.version)
            raise
        self.applied.append(pub.version)

    async def complete(self, route, body, user=None):
        self.bodies.append(body)
        self.users.append(user and user.name)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                                          "finish_reason": "stop"}]}

    async def stream(self, route, body, user=None):
        self.bodies.append(body)
        self.users.append(user and user.name)
        try:
            for i in range(3):
                yield {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}
                await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def publish(home, n: int, broken: bool = False) -> None:
    """Version n as the editor writes it (a manifest and changed tensors), or with an unreadable tensors file."""
    layout = Layout(home)
    d = layout.version_dir(n)
    d.mkdir(parents=True)
    (d / MANIFEST_FILE).write_text(json.dumps({"version": n}))
    if broken:
        (d / WEIGHTS_FILE).write_bytes(b"not safetensors")
    else:
        save_file({"w": torch.full((2,), float(n))}, str(d / WEIGHTS_FILE))
    ledger = Ledger.open(layout)
    with ledger.transaction():
        ledger.add_version(n, "test")
    ledger.close()


async def until(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(home, engine, limits: Limits = LIMITS, wait_s: float = 5.0, **kw):
    gw = Gateway(home, engine, poll_s=0.02, wait_s=wait_s, limits=limits, **kw)
    await gw.start()
    try:
        transport = httpx.ASGITransport(app=create_app(gw))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
            yield gw, client
    finally:
        await gw.stop()


def lines(r: httpx.Response) -> list[str]:
    return [l[len("data: "):] for l in r.text.splitlines() if l.startswith("data: ")]


# -- following versions ------------------------------------------------------


def test_each_request_is_answered_with_the_adapter_of_the_user_its_token_acts_for(tmp_path):
    tokens = {"t" * 20: "u1", "s" * 20: "u2", "o" * 20: "*"}

    def bearer(t):
        return {"Authorization": f"Bearer {t * 20}"}

    async def main():
        engine = FakeEngine()
        publish(tmp_path, 1)
        ledger = Ledger.open(Layout(tmp_path))
        with ledger.transaction():
            ledger.add_user_version("u1", 1, "u1-a", facts=[])
            ledger.add_user_version("u1", 2, "u1-b", facts=[])
            ledger.add_user_version("u2", 1, None, facts=[])  # u2's facts were all forgotten
        async with running(tmp_path, engine, tokens=tokens, wait_s=0.3) as (gw, client):
            r = await client.post("/v1/chat/completions", json=CHAT, headers=bearer("t"))
            assert r.status_code == 200 and r.headers["X-AgentMem-User-Version"] == "2"
            assert r.json()["agentmem"]["user_adapter"] == "u1-b"
            for who, user in [("s", None), ("o", None), ("o", "u1"), ("o", "u3")]:
                body = {**CHAT, **({"user": user} if user else {})}
                assert (await client.post("/v1/chat/completions", json=body, headers=bearer(who))).status_code == 200
            assert engine.users == ["u1-b", None, None, "u1-b", None]
            assert "user" not in engine.bodies[-1]  # who asked is the gateway's business, not the engine's
            refused = [await client.post("/v1/chat/completions", json=CHAT),
                       await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer nope"}),
                       await client.post("/v1/chat/completions", json={**CHAT, "user": "u2"}, headers=bearer("t")),
                       await client.post("/v1/chat/completions", json=CHAT, headers={
                           **bearer("t"), "X-AgentMem-Min-User-Version": "3"})]
            assert [r.status_code for r in refused] == [401, 401, 403, 503]
            assert len(engine.users) == 5
        ledger.close()
        async with running(tmp_path, FakeEngine()) as (gw, client):  # no tokens, not --dev
            r = await client.post("/v1/chat/completions", json={**CHAT, "user": "u1"})
            assert r.status_code == 403 and "no tokens" in r.json()["error"]["message"]
        dev = FakeEngine()
        async with running(tmp_path, dev, dev=True) as (gw, client):
            assert (await client.post("/v1/chat/completions", json={**CHAT, "user": "u1"})).status_code == 200
            assert dev.users == ["u1-b"]

    asyncio.run(main())


def test_a_token_issued_while_serving_acts_for_its_user_at_once_and_is_refused_once_revoked(tmp_path):
    async def main():
        engine = FakeEngine()
        publish(tmp_path, 1)
        ledger = Ledger.open(Layout(tmp_path))
        with ledger.transaction():
            ledger.add_user_version("u3", 1, "u3-a", facts=[])
        # a server with tokens of its own, where a revoked token is 401; and one without, which answers it as a
        # request without a token: from the shared memory alone
        for tokens, after in (({"o" * 20: "*"}, 401), ({}, 200)):
            async with running(tmp_path, engine, tokens=tokens, wait_s=0.3) as (gw, client):
                issued = issue(ledger, "u3")
                mine = {"Authorization": f"Bearer {issued['token']}"}
                r = await client.post("/v1/chat/completions", json=CHAT, headers=mine)
                assert r.status_code == 200 and engine.users[-1] == "u3-a"
                other = await client.post("/v1/chat/completions", json={**CHAT, "user": "u1"}, headers=mine)
                assert other.status_code == 403
                ledger.drop_token(issued["id"])
                r = await client.post("/v1/chat/completions", json=CHAT, headers=mine)
                assert r.status_code == after and (after == 401 or engine.users[-1] is None)
        ledger.close()

    asyncio.run(main())


def test_each_users_turn_is_handed_to_the_memory_api_and_the_answer_never_waits_for_it(tmp_path):
    """The memory API here is canned; tests/test_client.py hands turns to the real one."""
    handed, answer = [], {"status": 200}

    async def memory_api(request: httpx.Request) -> httpx.Response:
        handed.append((json.loads(request.content), request.headers.get("authorization")))
        return httpx.Response(answer["status"], json={})

    tokens = {"t" * 20: "u1", "o" * 20: "*"}

    async def main():
        publish(tmp_path, 1)
        async with running(tmp_path, FakeEngine(), tokens=tokens, observe_url="http://memory-api") as (gw, client):
            await gw.observer.aclose()
            gw.observer = httpx.AsyncClient(base_url="http://memory-api", transport=httpx.MockTransport(memory_api))
            conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello! Where do you live?"},
                    {"role": "user", "content": [{"type": "text", "text": "Porto."}]}]
            r = await client.post("/v1/chat/completions", json={**CHAT, "messages": conv},
                                  headers={"Authorization": f"Bearer {'t' * 20}"})
            assert r.status_code == 200
            await until(lambda: len(handed) == 1)
            assert handed[0] == ({"messages": [{"role": "assistant", "content": "Hello! Where do you live?"},
                                               {"role": "user", "content": "Porto."}], "user_id": "u1"},
                                 f"Bearer {'t' * 20}")
            # an operator naming a user hands it as that user; naming no one, nothing is learned
            for body in ({**CHAT, "user": "u2"}, CHAT):
                assert (await client.post("/v1/chat/completions", json=body,
                                          headers={"Authorization": f"Bearer {'o' * 20}"})).status_code == 200
            await until(lambda: len(handed) == 2)
            assert handed[1][0]["user_id"] == "u2"
            answer["status"] = 500  # a memory API that fails costs the learning, never the answer
            r = await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {'t' * 20}"})
            assert r.status_code == 200
            await until(lambda: len(handed) == 3)
        assert len(handed) == 3  # a 500 is not tried again; a 503 or an unreachable API is

    asyncio.run(main())


@pytest.mark.parametrize("breakage", ["unreadable", "pruned"])
def test_a_version_that_cannot_be_applied_gives_way_to_a_newer_one(tmp_path, breakage):
    async def main():
        engine = FakeEngine()
        publish(tmp_path, 1)
        async with running(tmp_path, engine, wait_s=10) as (gw, client):
            assert gw.version == 1
            if breakage == "unreadable":
                publish(tmp_path, 2, broken=True)
            else:
                engine.fail_once.add(2)
                publish(tmp_path, 2)
            await until(lambda: 2 in engine.failed)
            if breakage == "pruned":
                shutil.rmtree(Layout(tmp_path).version_dir(2))  # as prune_versions(keep=5) does
            publish(tmp_path, 3)
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 200, r.text
            assert r.json()["agentmem"]["version"] == 3
            assert engine.applied == [1, 3]

    asyncio.run(main())


# -- what a request may ask ----------------------------------------------------


def test_an_unknown_field_is_refused_by_name_and_only_checked_fields_reach_the_engine(tmp_path):
    async def main():
        engine = FakeEngine()
        async with running(tmp_path, engine) as (_, client):
            r = await client.post("/v1/chat/completions", json={**CHAT, "chat_template": "{{ secrets }}"})
            assert r.status_code == 400
            assert "'chat_template'" in r.json()["error"]["message"]
            r = await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 4, "echo": True})
            assert r.status_code == 400 and "'echo'" in r.json()["error"]["message"]
            assert engine.bodies == []
            body = {**CHAT, "temperature": 0.5, "stop": ["\n"], "n": 2, "seed": 3, "logprobs": True, "top_logprobs": 2,
                    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}
            r = await client.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            assert engine.bodies == [body]

    asyncio.run(main())


@pytest.mark.parametrize("route, fields, named", [
    ("chat", {"max_tokens": 101}, ["max_tokens", "100"]),
    ("chat", {"max_completion_tokens": 101}, ["max_completion_tokens", "100"]),
    ("chat", {"max_tokens": "100000"}, ["max_tokens", "integer"]),  # a string would slip past the cap
    ("chat", {"n": 3}, ["n", "2"]),
    ("chat", {"top_logprobs": 4}, ["top_logprobs", "3"]),
    ("completion", {"logprobs": 4}, ["logprobs", "3"]),
    ("completion", {"max_tokens": 10**9}, ["max_tokens", "100"]),
    ("chat", {"stop": ["a", "b", "c", "d", "e"]}, ["stop", "4"]),
    ("chat", {"stream_options": {"include_usage": True, "continuous_usage_stats": True}}, ["stream_options"]),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
     ["messages[0].content"]),
    ("chat", {"messages": [{"role": "user", "content": "hi", "tool_calls": []}]}, ["messages[0].tool_calls"]),
    ("chat", {"response_format": {"type": "regex", "regex": ".*"}}, ["response_format", "json_schema"]),
    ("chat", {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, ["response_format.json_schema"]),
    ("chat", {"response_format": {"type": "json_object", "schema": {}}}, ["response_format", "'json_object'"]),
    ("completion", {"response_format": {"type": "json_object"}}, ["'response_format'"]),
])
def test_a_value_over_its_limit_is_refused_naming_the_field_and_the_limit(tmp_path, route, fields, named):
    async def main():
        engine = FakeEngine()
        base = CHAT if route == "chat" else {"model": "agentmem", "prompt": "x"}
        path = "/v1/chat/completions" if route == "chat" else "/v1/completions"
        async with running(tmp_path, engine) as (_, client):
            r = await client.post(path, json={**base, **fields})
        assert r.status_code == 400, r.text
        message = r.json()["error"]["message"]
        assert all(word in message for word in named), message
        assert engine.bodies == []

    asyncio.run(main())


def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(tmp_path):
    sent = []

    async def chunks():
        for _ in range(100):
            sent.append(1)
            yield b" " * 1024

    async def main():
        async with running(tmp_path, FakeEngine()) as (_, client):
            url = "/v1/chat/completions"
            r = await client.post(url, content=chunks(), headers={"content-length": str(100 * 1024)})
            assert r.status_code == 413 and "2048 bytes" in r.json()["error"]["message"]
            assert sent == []  # refused on the declared length
            r = await client.post(url, content=chunks())  # chunked: no declared length
            assert r.status_code == 413
            assert len(sent) <= 3

    asyncio.run(main())


@pytest.mark.parametrize("value", ["²".encode("latin-1"), b"1e3", b"-1", b"9" * 30])
def test_a_min_version_that_is_not_ascii_digits_is_refused(tmp_path, value):
    async def main():
        async with running(tmp_path, FakeEngine()) as (_, client):
            r = await client.post("/v1/chat/completions", json=CHAT, headers={MIN_VERSION_HEADER: value})
            assert r.status_code == 400, r.text
            assert MIN_VERSION_HEADER in r.json()["error"]["message"]
            r = await client.post("/v1/chat/completions", json=CHAT, headers={MIN_VERSION_HEADER: "0"})
            assert r.status_code == 200

    asyncio.run(main())


# -- how long a request may run ----------------------------------------------------


def test_a_request_past_the_time_limit_ends_and_does_not_hold_back_a_publish(tmp_path):
    async def main():
        engine = FakeEngine(delay=3.0)
        publish(tmp_path, 1)
        async with running(tmp_path, engine) as (gw, client):
            slow = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
            await until(lambda: engine.bodies)
            publish(tmp_path, 2)
            r = await slow
            assert r.status_code == 504
            assert "limit of 0.5 s" in r.json()["error"]["message"]
            assert engine.cancelled == 1
            await until(lambda: gw.version == 2, timeout=1.0)

    asyncio.run(main())


def test_a_stream_past_the_time_limit_ends_with_an_error_event(tmp_path):
    async def main():
        engine = FakeEngine(delay=1.0)
        publish(tmp_path, 1)
        async with running(tmp_path, engine) as (gw, client):
            t0 = time.monotonic()
            r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
            assert r.status_code == 200
            assert time.monotonic() - t0 < 1.5
            first, error, done = lines(r)
            assert json.loads(first)["agentmem"]["version"] == 1
            assert json.loads(error)["error"]["code"] == 504 and done == "[DONE]"
            assert engine.cancelled == 1
            publish(tmp_path, 2)
            await until(lambda: gw.version == 2, timeout=1.0)

    asyncio.run(main())


def test_streaming_answers_every_chunk_labelled(tmp_path):
    async def main():
        publish(tmp_path, 1)
        async with running(tmp_path, FakeEngine()) as (_, client):
            r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
            assert r.status_code == 200
            *chunks, done = lines(r)
            assert done == "[DONE]"
            chunks = [json.loads(c) for c in chunks]
            assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "w0 w1 w2 "
            assert {c["agentmem"]["version"] for c in chunks} == {1}

    asyncio.run(main())


def test_a_client_that_stops_reading_a_stream_does_not_hold_back_a_publish(tmp_path):
    body = json.dumps({**CHAT, "stream": True}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "root_path": "",
             "query_string": b"", "client": ("127.0.0.1", 1), "server": ("gateway", 80),
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}

    async def main():
        gw = Gateway(tmp_path, FakeEngine(), poll_s=0.02, wait_s=5, limits=LIMITS)
        publish(tmp_path, 1)
        await gw.start()
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        started = asyncio.Event()

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # still connected

        async def send(message):
            if message["type"] == "http.response.body":
                started.set()
                await asyncio.Event().wait()  # the client reads nothing more

        request = asyncio.create_task(create_app(gw)(scope, receive, send))
        try:
            await asyncio.wait_for(started.wait(), 5)
            publish(tmp_path, 2)
            await until(lambda: gw.version == 2, timeout=2.0)
        finally:
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await request
            await gw.stop()

    asyncio.run(main())


def test_each_users_own_requests_are_held_to_their_share_of_a_minute(tmp_path):
    clock = [0.0]
    rate = UserRate(3, clock=lambda: clock[0])
    assert [rate.take("u1") for _ in range(3)] == [None] * 3  # a burst up to the minute's share
    assert rate.take("u1") == pytest.approx(20.0)  # then one each 20 s
    assert rate.take("u2") is None  # another user's share is their own
    clock[0] = 20.0
    assert rate.take("u1") is None and rate.take("u1") == pytest.approx(20.0)
    assert UserRate(0).take("u1") is None  # 0: no limit

    tokens = {"t" * 20: "u1", "o" * 20: "*"}

    async def main():
        publish(tmp_path, 1)
        limits = Limits(**{**LIMITS.__dict__, "user_requests_per_minute": 2})
        async with running(tmp_path, FakeEngine(), limits=limits, tokens=tokens) as (gw, client):
            mine, operator = {"Authorization": f"Bearer {'t' * 20}"}, {"Authorization": f"Bearer {'o' * 20}"}
            codes = [(await client.post("/v1/chat/completions", json=CHAT, headers=mine)).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            r = await client.post("/v1/chat/completions", json=CHAT, headers=mine)
            assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 30
            assert r.json()["error"]["type"] == "rate_limit_error"
            # the application's own requests for the user (an operator's token) are not the user's flood
            body = {**CHAT, "user": "u1"}
            assert (await client.post("/v1/chat/completions", json=body, headers=operator)).status_code == 200

    asyncio.run(main())


def test_the_limits_are_settings():
    s = Settings(serve_max_tokens=64, serve_request_timeout_s=2.5)
    assert (s.serve_max_tokens, s.serve_request_timeout_s) == (64, 2.5)
    assert Settings().serve_max_body_bytes == Limits().max_body_bytes
    assert Settings().serve_user_requests_per_minute == Limits().user_requests_per_minute
    with pytest.raises(ValueError):
        Settings(serve_max_n=0)
