"""An application on another machine, integration: `MemoryClient` over HTTP against the production shape in real
processes: `agentmem api`, a Celery `agentmem worker` on the real Redis at 127.0.0.1:6379, and `agentmem serve`
(embedded engine; the vLLM engine answers the same gateway in test_users_serving), each with its own copy of the
bundled model. The test process loads no model: it holds two users' tokens and an operator's, as an application
would."""

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
import redis

from agentmem import FactError, MemoryClient, QuotaExceeded
from agentmem.adapters.langchain import AgentMemChatHistory, ChatAgentMem
from agentmem.serving.engines import free_port
from agentmem.serving.process import ServeProcess
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import ACTIVE, FORGOTTEN
from checks import REDIS_URL, Workers

ADMIN, U1, U2 = "admin-token-0123456789abcdef", "u1-token-0123456789abcdef", "u2-token-0123456789abcdef"
TOKENS = json.dumps({ADMIN: "*", U1: "u1", U2: "u2"})
PER_HOUR = 3  # each user may hand over this many facts an hour


def said(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(memory API URL, model server URL) of one home, with one worker; torn down with its Redis keys."""
    r = redis.Redis.from_url(REDIS_URL)
    try:
        r.ping()
    except redis.ConnectionError as e:
        pytest.fail(f"these tests need the real Redis at {REDIS_URL}: {e}")
    home = tmp_path_factory.mktemp("client") / "home"
    home.mkdir()
    workers = Workers(home)
    workers.start(warm=False)
    port = free_port()
    api_log = home / "api.log"
    api = subprocess.Popen([sys.executable, "-m", "agentmem", "api", "--home", str(home), "--redis-url", REDIS_URL,
                            "--port", str(port)], stdout=api_log.open("w"), stderr=subprocess.STDOUT,
                           env={**os.environ, "HF_HUB_OFFLINE": "1", "AGENTMEM_API_TOKENS": TOKENS,
                                "AGENTMEM_USER_FACTS_PER_HOUR": str(PER_HOUR)})
    # the server hands each user's chat turn to the API: an OpenAI client alone gets memory
    server = ServeProcess(home, "embedded", env={"AGENTMEM_API_TOKENS": TOKENS,
                                                 "AGENTMEM_SERVE_OBSERVE_URL": f"http://127.0.0.1:{port}"})
    try:
        server.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert api.poll() is None and time.monotonic() < deadline, api_log.read_text()[-3000:]
            time.sleep(0.5)
        yield url, server.url
    finally:
        server.stop()
        api.kill()
        api.wait()
        workers.stop_all()
        for key in r.scan_iter(Layout(home).namespace + "*"):
            r.delete(key)


@pytest.fixture
def clients(stack):
    api, server = stack
    made = {who: MemoryClient(api, server_url=server, token=token) for who, token in (("u1", U1), ("u2", U2),
                                                                                      ("admin", ADMIN))}
    yield made
    for c in made.values():
        c.close()


def test_a_user_observes_over_http_and_is_answered_from_their_own_memory_alone(clients):
    u1, u2, admin = clients["u1"], clients["u2"], clients["admin"]
    (fact,) = u1.observe(said("I live in Lisbon."))
    assert (fact.subject, fact.object, fact.user_id, fact.status) == ("User u1", "Lisbon", "u1", "queued")
    assert u1.wait([fact.id], timeout=180)
    assert "lisbon" in u1.ask("Where do I live?").lower()  # a new conversation: nothing of it in the context
    assert [(f["id"], f["status"]) for f in u1.facts()] == [(fact.id, ACTIVE)]
    assert "lisbon" in admin.ask("Where do I live?", user_id="u1").lower()

    # another user gets none of it, by any route
    assert "lisbon" not in u2.ask("Where do I live?").lower()
    assert u2.facts() == []
    with pytest.raises(KeyError, match="no fact"):
        u2.fact(fact.id)
    with pytest.raises(KeyError):
        u2.forget(fact.id)
    with pytest.raises(PermissionError, match="its own user"):
        u2.observe(said("I live in Oslo."), user_id="u1")
    with pytest.raises(PermissionError):
        u2.ask("Where do I live?", user_id="u1")
    with pytest.raises(PermissionError, match="operator"):
        u2.users()
    assert [u["user_id"] for u in admin.users()] == ["u1"]

    # bad input is refused by name, and nothing of it is recorded
    with pytest.raises(FactError, match="messages.0.content"):
        u1.observe(said("x" * 20_001))
    assert len(u1.facts()) == 1

    u1.forget(fact.id)
    assert u1.fact(fact.id)["status"] == FORGOTTEN
    assert "lisbon" not in u1.ask("Where do I live?").lower()


def test_a_user_signs_up_with_a_token_issued_while_every_service_runs(clients, stack):
    admin = clients["admin"]
    issued = admin.issue_token("u3")
    with pytest.raises(PermissionError, match="operator"):
        clients["u1"].issue_token("u3")
    with MemoryClient(stack[0], server_url=stack[1], token=issued["token"]) as u3:
        assert u3.facts() == [] and u3.ask("What is the capital of France?")  # both servers know it already
        assert [t["id"] for t in u3.tokens()] == [issued["id"]]
        u3.revoke_token(issued["id"])
        with pytest.raises(PermissionError):
            u3.facts()
        with pytest.raises(PermissionError):
            u3.ask("What is the capital of France?")
    assert admin.tokens("u3") == []


def test_an_openai_client_pointed_at_the_server_alone_gets_memory(clients, stack):
    """No agentmem code on the application's side: its chat requests carry the user's token, and what the user says
    in them is learned."""
    issued = clients["admin"].issue_token("u4")

    def chat(*turns: str) -> str:
        messages = [{"role": "assistant" if i % 2 else "user", "content": t} for i, t in enumerate(turns)]
        r = httpx.post(f"{stack[1]}/v1/chat/completions", timeout=120, headers={"Authorization": f"Bearer {issued['token']}"},
                       json={"model": "agentmem", "temperature": 0, "max_tokens": 24, "messages": messages})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"].lower()

    chat("Hi! I just moved here.", "Welcome! What is your cat called?", "Miso.")
    with MemoryClient(stack[0], token=issued["token"]) as u4:
        deadline = time.monotonic() + 60
        while not (learned := u4.facts()):
            assert time.monotonic() < deadline, "the turn never reached the memory API"
            time.sleep(0.25)
        assert [(f["subject"], f["relation"], f["object"]) for f in learned] == [("User u4", "owns a cat named", "Miso")]
        assert u4.wait(timeout=180)
    assert "miso" in chat("What is my cat's name?")  # a new conversation


def test_langchain_runs_on_the_client_and_past_a_users_quota_nothing_more_is_learned(clients):
    u2 = clients["u2"]
    history = AgentMemChatHistory(memory=u2, user_id="u2", session_id="s1")
    history.add_user_message("I work as a nurse.")
    (fact,) = history.observed
    assert u2.wait([fact.id], timeout=180)
    llm = ChatAgentMem(memory=u2, user_id="u2", max_tokens=24)
    assert "nurse" in llm.invoke("What is my job?").content.lower()
    assert "".join(c.content for c in llm.stream("What is my job?")).lower() == llm.invoke("What is my job?").content.lower()

    # the quota: the job above and these two make the hour's three; one more is refused whole, from any route
    allowed = u2.remember_later([{"subject": "User u2", "relation": "lives in", "object": "Porto"},
                                 {"subject": "User u2", "relation": "owns a dog named", "object": "Rex"}])
    assert [f.status for f in allowed] == ["queued", "queued"]
    with pytest.raises(QuotaExceeded) as e:
        u2.remember_later([{"subject": "User u2", "relation": "plays", "object": "the cello"}])
    assert e.value.retry_after and 0 < e.value.retry_after <= 3600
    history.add_user_message("My sister lives in Vienna.")  # the conversation goes on; only its learning waits
    assert len(history.not_learned) == 1
    assert {f["id"] for f in u2.facts()} == {fact.id, *(f.id for f in allowed)}
    assert u2.wait(timeout=180)  # every fact of the caller's off the queue
    assert {f["status"] for f in u2.facts()} == {ACTIVE}
