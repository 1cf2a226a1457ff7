"""Bearer tokens and the users they act for, shared by `agentmem api` and `agentmem serve`.

A token is bound to one user id, or to OPERATOR ("*"), who may act for any user. Every check compares the
given token against all of them in constant time, so timing tells nothing of how much of a token was right.
"""

from __future__ import annotations

import hmac

OPERATOR = "*"


class Unauthorized(Exception):
    """No token, or an unknown one (HTTP 401)."""


class Forbidden(Exception):
    """A known token asked for what it may not do (HTTP 403)."""


class TokenMap:
    def __init__(self, tokens: dict[str, str]):
        self._tokens = [(t.encode(), None if u == OPERATOR else u) for t, u in tokens.items()]

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def user_of(self, bearer: str | None) -> str | None:
        """The user the token acts for, None for an operator; Unauthorized if missing or unknown."""
        if bearer is None:
            raise Unauthorized("a bearer token is required")
        given = bearer.encode()
        found = [user for token, user in self._tokens if hmac.compare_digest(token, given)]
        if not found:
            raise Unauthorized("unknown bearer token")
        return found[0]


def acting_for(caller: str | None, requested: str | None, default: str | None = None) -> str | None:
    """The user a request acts for: the caller's own id, or for an operator (None) the one named, else `default`."""
    if caller is None:
        return requested or default
    if requested is not None and requested != caller:
        raise Forbidden("this token may only act for its own user")
    return caller
