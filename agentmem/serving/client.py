"""How `Memory` talks to a running `agentmem serve`: greedy chat and completion at a minimum version."""

from __future__ import annotations

import json
from typing import Iterator

import httpx

from .wire import MIN_USER_VERSION_HEADER, MIN_VERSION_HEADER, MODEL_ID, VERSION_HEADER


DEFAULT_URL = "http://127.0.0.1:8000"  # where `agentmem serve` answers unless told otherwise


class ServerError(RuntimeError):
    """The model server could not be reached or refused the request; `status` is its HTTP status, if it answered."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ServerClient:
    """`token`: the bearer sent with every request (an operator's, to name users; or one user's own)."""

    def __init__(self, url: str, timeout: float = 120.0, token: str | None = None):
        self.url = url.rstrip("/")
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout, connect=5.0), headers=auth)
        self.last_version = 0  # the version that produced the last answer

    @staticmethod
    def _request(body: dict, min_version: int, user: str | None, min_user_version: int) -> tuple[dict, dict]:
        """The body and headers of a greedy request as `user` (None: shared only), at least at these versions."""
        headers = {MIN_VERSION_HEADER: str(min_version), MIN_USER_VERSION_HEADER: str(min_user_version)}
        return {"model": MODEL_ID, "temperature": 0, **body, **({"user": user} if user else {})}, headers

    def _post(self, path: str, body: dict, min_version: int, user: str | None = None,
              min_user_version: int = 0) -> dict:
        body, headers = self._request(body, min_version, user, min_user_version)
        try:
            r = self.http.post(path, json=body, headers=headers)
        except httpx.TransportError as e:
            raise ServerError(f"model server {self.url} unreachable: {e}") from None
        if r.status_code != 200:
            try:
                msg = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                msg = r.text[:300]
            raise ServerError(f"model server {self.url} answered {r.status_code}: {msg}", r.status_code)
        self.last_version = int(r.headers.get(VERSION_HEADER, 0))
        return r.json()

    def chat(self, messages: list[dict], max_tokens: int, min_version: int = 0, user: str | None = None,
             min_user_version: int = 0) -> str:
        out = self._post("/v1/chat/completions", {"messages": messages, "max_tokens": max_tokens}, min_version,
                         user, min_user_version)
        return out["choices"][0]["message"]["content"].strip()

    def stream_chat(self, messages: list[dict], max_tokens: int, min_version: int = 0, user: str | None = None,
                    min_user_version: int = 0) -> Iterator[str]:
        body, headers = self._request({"messages": messages, "max_tokens": max_tokens, "stream": True}, min_version,
                                      user, min_user_version)
        try:
            with self.http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                if r.status_code != 200:
                    raise ServerError(f"model server {self.url} answered {r.status_code}: {r.read()[:300]!r}",
                                      r.status_code)
                self.last_version = int(r.headers.get(VERSION_HEADER, 0))
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    delta = json.loads(line[len("data: "):])["choices"][0].get("delta", {})
                    if delta.get("content"):
                        yield delta["content"]
        except httpx.TransportError as e:
            raise ServerError(f"model server {self.url} unreachable: {e}") from None

    def complete(self, prompt: str, max_tokens: int, min_version: int = 0, user: str | None = None,
                 min_user_version: int = 0) -> str:
        out = self._post("/v1/completions", {"prompt": prompt, "max_tokens": max_tokens}, min_version, user,
                         min_user_version)
        return out["choices"][0]["text"].strip()

    def live_version(self) -> int:
        try:
            r = self.http.get("/v1/models")
            r.raise_for_status()
            return int(r.json()["data"][0]["agentmem"]["version"])
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as e:
            raise ServerError(f"model server {self.url} unreachable: {e}") from None

    def close(self) -> None:
        self.http.close()
