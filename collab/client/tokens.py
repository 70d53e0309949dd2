"""Where the access token comes from: a fixed string, or a provider called when needed.

A provider (a function or coroutine function returning the token) is called before the first
connection and again after the server closed with 4401 (missing or expired token). A 4401
for a token fresh from the provider is final: asking again would loop forever.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

TokenProvider = Callable[[], str | Awaitable[str]]
Token = str | TokenProvider | None


class TokenSource:
    def __init__(self, token: Token) -> None:
        self._provider = token if callable(token) else None
        self._value: str | None = None if callable(token) else token
        self._fresh = False  # fetched, and not yet accepted by a successful sync

    async def get(self) -> str | None:
        if self._provider is not None and self._value is None:
            value = self._provider()
            if inspect.isawaitable(value):
                value = await value
            if not isinstance(value, str):
                raise TypeError(f"the token provider returned {type(value).__name__}, not str")
            self._value, self._fresh = value, True
        return self._value

    def accepted(self) -> None:
        """The server let us sync with the current token."""
        self._fresh = False

    def refresh(self) -> bool:
        """After a 4401: True if the provider will be asked for a new token."""
        if self._provider is None or self._fresh:
            return False
        self._value = None
        return True
