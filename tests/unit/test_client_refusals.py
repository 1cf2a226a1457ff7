"""`MemoryClient` turns each refusal of the memory API into what `Memory` raises, tries a busy writer again, and
checks what it can before sending. The API's answers here are canned (httpx.MockTransport); the real API, worker and
model server drive the same client in tests/test_client.py."""

import httpx
import pytest

from agentmem import Fact, FactError, MemoryClient, QuotaExceeded
from agentmem.client import ClientError
from agentmem.extract import ExtractionError

FACT = {"id": "f_1", "subject": "User u1", "relation": "lives in", "object": "Lisbon", "status": "queued",
        "reason": None}


def client(*answers, seen=None) -> MemoryClient:
    """A client whose API answers `answers` in turn (status, body, headers), recording each request in `seen`."""
    todo = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        status, body, headers = todo.pop(0)
        return httpx.Response(status, json=body, headers=headers)

    return MemoryClient("http://api.test", token="a-token-0123456789abcdef", transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("status, body, headers, raised, says", [
    (422, {"detail": [{"loc": ["body", "messages", 0, "content"], "msg": "String should have at most 20000 characters"}]},
     {}, FactError, "messages.0.content: String should have at most 20000 characters"),
    (400, {"detail": "facts[0].subject: must not be empty"}, {}, FactError, "subject: must not be empty"),
    (401, {"detail": "unknown bearer token"}, {}, PermissionError, "unknown bearer token"),
    (403, {"detail": "this token may only act for its own user"}, {}, PermissionError, "its own user"),
    (404, {"detail": "no fact with id 'f_1'"}, {}, KeyError, "no fact with id"),
    (429, {"detail": "user u1 has handed over 500 facts in the last hour"}, {"Retry-After": "12"}, QuotaExceeded,
     "500 facts"),
    (502, {"detail": "fact extraction failed"}, {}, ExtractionError, "extraction failed"),
    (500, {"detail": "Internal Server Error"}, {}, ClientError, "answered 500"),
])
def test_each_refusal_raises_what_memory_raises_with_the_apis_reason(status, body, headers, raised, says):
    with pytest.raises(raised, match=says) as e:
        client((status, body, headers)).observe([{"role": "user", "content": "I live in Lisbon."}])
    if raised is QuotaExceeded:
        assert e.value.retry_after == 12.0


def test_a_busy_writer_is_tried_again_after_its_retry_after_and_then_given_up(monkeypatch):
    slept = []
    monkeypatch.setattr("agentmem.client.time.sleep", slept.append)
    busy = (503, {"detail": "the writer is busy"}, {"Retry-After": "1"})
    assert client(busy, (200, {"forgotten": "f_1", "version": 7}, {})).forget("f_1") == 7
    assert slept == [1.0]
    with pytest.raises(ClientError, match="503: the writer is busy") as e:
        client(busy, busy, busy, busy).forget("f_1")
    assert e.value.status == 503


def test_observed_facts_come_back_as_facts_of_the_users_scope():
    seen = []
    c = client((200, {"user_id": "u1", "facts": [FACT]}, {}), seen=seen)
    (f,) = c.observe([{"role": "user", "content": "I live in Lisbon."}])
    assert isinstance(f, Fact) and (f.id, f.user_id, f.object, f.status) == ("f_1", "u1", "Lisbon", "queued")
    assert seen[0].headers["Authorization"] == "Bearer a-token-0123456789abcdef"


def test_what_can_be_refused_before_sending_is_not_sent():
    seen = []
    c = client(seen=seen)
    with pytest.raises(FactError, match="subject"):
        c.remember_later([{"subject": "", "relation": "lives in", "object": "Oslo"}])
    with pytest.raises(FactError, match="one scope"):
        c.remember_later([Fact(subject="A", relation="lives in", object="Oslo", user_id="u1"),
                          Fact(subject="B", relation="lives in", object="Rome", user_id="u2")])
    with pytest.raises(KeyError):
        c.forget("../users/u2")
    with pytest.raises(ClientError, match="server_url"):
        c.ask("Where do I live?")
    assert seen == []


def test_an_unreachable_api_is_one_clear_error():
    c = MemoryClient("http://127.0.0.1:9", timeout=2.0)
    with pytest.raises(ClientError, match="unreachable"):
        c.status()
