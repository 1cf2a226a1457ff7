"""The memory API's answer when the fact extractor fails: 502 with a clear message, not 500.

A stand-in Memory whose hook uses the LLM extractor against a port nobody listens on; the rest of the API
runs on the real model in tests/test_api.py.
"""

import socket

from fastapi.testclient import TestClient

from agentmem.api import create_app
from agentmem.config import Settings
from agentmem.extract import LLMExtractor
from agentmem.storage.layout import Layout
from agentmem.storage.ledger import Ledger


class Unreachable:
    """Just what create_app and POST /v1/observe use of a Memory."""

    def __init__(self, home, url: str):
        self.settings = Settings(home=home)
        self.layout = Layout(home)
        self.ledger = Ledger.open(self.layout)
        self.extractor = LLMExtractor(url, "m", timeout=2)

    def backlog(self):
        return None

    def observe(self, messages, user_id):
        return [f for m in messages for f in self.extractor.extract(m["content"], user_id)]


def test_an_unreachable_extractor_answers_502_without_its_address(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = TestClient(create_app(Unreachable(tmp_path, url), dev=True), raise_server_exceptions=False)
    r = client.post("/v1/observe", json={"messages": [{"role": "user", "content": "I live in Lisbon."}]})
    assert r.status_code == 502, r.text
    detail = r.json()["detail"]
    assert "extract" in detail and url not in detail
