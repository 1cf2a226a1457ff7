"""Bearer tokens and the users they act for, shared by `agentmem api` and `agentmem serve`.

A token is bound to one user id, or to OPERATOR ("*"), who may act for any user. Tokens from the settings are
compared against all of them in constant time, so timing tells nothing of how much of a token was right. Tokens
issued to users while the services run live in the ledger as their SHA-256 alone, looked up by it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Callable

OPERATOR = "*"


class Unauthorized(Exception):
    """No token, or an unknown one (HTTP 401)."""


class Forbidden(Exception):
    """A known token asked for what it may not do (HTTP 403)."""


ISSUED_PREFIX = "amt_"  # an issued token says what it is, so a leaked one is easy to find in logs and code


def new_token() -> tuple[str, str, str]:
    """(id, token, digest) of a new issued token: 256 random bits; the id names it in listings, the digest is kept."""
    token = ISSUED_PREFIX + secrets.token_urlsafe(32)
    return "tok_" + secrets.token_hex(6), token, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(ledger, user_id: str) -> dict:
    """A new token for `user_id`: id, user_id, created, and the token, which is shown here once and kept nowhere
    (the ledger holds its digest). It acts for that user at once, in every API and model server of the home."""
    token_id, token, kept = new_token()
    return {**ledger.add_token(token_id, user_id, kept), "token": token}


class TokenMap:
    """`tokens`: the settings' token -> user id (or OPERATOR); `issued`: a digest -> user id lookup of the tokens
    issued since (the ledger's), asked only for a token the settings do not hold."""

    def __init__(self, tokens: dict[str, str], issued: Callable[[str], str | None] | None = None):
        self._tokens = [(t.encode(), None if u == OPERATOR else u) for t, u in tokens.items()]
        self._issued = issued

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def user_of(self, bearer: str | None) -> str | None:
        """The user the token acts for, None for an operator; Unauthorized if missing or unknown."""
        if bearer is None:
            raise Unauthorized("a bearer token is required")
        given = bearer.encode()
        found = [user for token, user in self._tokens if hmac.compare_digest(token, given)]
        if found:
            return found[0]
        if (user := self.issued_user(bearer)) is not None:
            return user
        raise Unauthorized("unknown bearer token")

    def issued_user(self, bearer: str) -> str | None:
        """The user of an issued token (one that cannot be another kind's is not looked up)."""
        if self._issued is None or not bearer.startswith(ISSUED_PREFIX) or len(bearer) > 128:
            return None
        return self._issued(digest(bearer))


def acting_for(caller: str | None, requested: str | None, default: str | None = None) -> str | None:
    """The user a request acts for: the caller's own id, or for an operator (None) the one named, else `default`."""
    if caller is None:
        return requested or default
    if requested is not None and requested != caller:
        raise Forbidden("this token may only act for its own user")
    return caller
