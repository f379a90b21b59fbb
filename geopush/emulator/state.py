"""What one emulator remembers: issued OAuth tokens, received messages, attempts, failures.

Thread-safe, because tests may read it from their own thread while the emulator's event
loop writes it; bounded, because `geopush demo` runs it for hours.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from typing import Any

from aiohttp import web

from geopush.emulator.failures import FailureBook

DEFAULT_TOKEN_TTL_S = 3600
DEFAULT_MAX_RECORDS = 10_000


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token handed out by `/token`, and whose service account asked for it."""

    client_email: str
    scope: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request to `messages:send`, however it ended (`status` None: dropped)."""

    token: str | None
    at: str
    status: int | None
    error: str | None

    def as_json(self) -> dict[str, Any]:
        return {"token": self.token, "at": self.at, "status": self.status, "error": self.error}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class EmulatorState:
    """The emulator's memory; oldest messages and attempts are dropped past `max_records`."""

    def __init__(
        self,
        *,
        token_ttl_s: int = DEFAULT_TOKEN_TTL_S,
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        self.token_ttl_s = token_ttl_s
        self.failures = FailureBook()
        self._lock = threading.Lock()
        self._tokens: dict[str, IssuedToken] = {}
        self._messages: deque[dict[str, Any]] = deque(maxlen=max_records)
        self._attempts: deque[Attempt] = deque(maxlen=max_records)
        self._ids = count(1)
        self._tokens_issued = 0

    def issue_token(self, client_email: str, scope: str) -> str:
        """A new opaque access token, valid `token_ttl_s` seconds."""
        token = f"ya29.emulator-{secrets.token_urlsafe(24)}"
        issued = IssuedToken(client_email, scope, time.time() + self.token_ttl_s)
        with self._lock:
            # Drop expired tokens here so a long demo does not accumulate them.
            now = time.time()
            self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}
            self._tokens[token] = issued
            self._tokens_issued += 1
        return token

    def token_valid(self, token: str) -> bool:
        with self._lock:
            issued = self._tokens.get(token)
        return issued is not None and issued.expires_at > time.time()

    def revoke_tokens(self) -> None:
        """Forget every access token, as if they had expired (the SDK must fetch a new one)."""
        with self._lock:
            self._tokens.clear()

    def record_attempt(self, token: str | None, status: int | None, error: str | None) -> None:
        with self._lock:
            self._attempts.append(Attempt(token, now_iso(), status, error))

    def record_message(self, project_id: str, message: dict[str, Any], received_at: str) -> str:
        """Keep a delivered message; return its FCM name."""
        with self._lock:
            message_id = f"0:{time.time_ns() // 1000}%{next(self._ids):08x}"
            name = f"projects/{project_id}/messages/{message_id}"
            self._messages.append(
                {
                    "name": name,
                    "project_id": project_id,
                    "received_at": received_at,
                    "message": message,
                }
            )
        return name

    def messages(self, token: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                m for m in self._messages if token is None or m["message"].get("token") == token
            ]

    def attempts(self, token: str | None = None) -> list[Attempt]:
        with self._lock:
            return [a for a in self._attempts if token is None or a.token == token]

    def stats(self) -> dict[str, int]:
        """Counts since start (tokens) or since the last clear (messages, attempts)."""
        with self._lock:
            return {
                "tokens_issued": self._tokens_issued,
                "messages": len(self._messages),
                "attempts": len(self._attempts),
            }

    def clear_messages(self) -> None:
        """Forget received messages and attempts (failure rules stay)."""
        with self._lock:
            self._messages.clear()
            self._attempts.clear()

    def reset(self) -> None:
        """Everything but issued tokens, so a running SDK client keeps working."""
        self.clear_messages()
        self.failures.clear()


STATE: web.AppKey[EmulatorState] = web.AppKey("emulator_state", EmulatorState)
