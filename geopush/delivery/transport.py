"""FCM HTTP v1 sends through aiohttp, with firebase-admin as the authority for everything else.

The SDK's own transport (httpx, one auth flow per request) costs about 3 ms of CPU per
message; aiohttp moves the same bytes for a fraction of that. What stays the SDK's:

- the credentials and the OAuth token (the app's google-auth credential, refreshed by it,
  from the service account's `token_uri`);
- the message: built as `messaging.Message` and encoded and validated by the SDK's own
  encoder, so a message the SDK would refuse is refused here the same way, before sending;
- the errors: an FCM error answer, a network failure or a timeout becomes the exception the
  SDK would raise (its parser and its exception classes), so `fcm.classify` reads both
  paths alike. `tests/api/test_fcm_transport_contract.py` sends every SPEC section 6 outcome
  through both and compares.

The auth flow is the SDK's, as geopush configures it (`fcm.configure_messaging`): a 401
refreshes the token and resends, twice at most, except THIRD_PARTY_AUTH_ERROR, which is
final at once. The send URL is the one `fcm.configure_messaging` gave the app.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import firebase_admin
import google.auth.transport.requests
import httpx
from firebase_admin import exceptions, messaging

from geopush.delivery import fcm

# The SDK refreshes the token and resends on 401 this many times (GoogleAuthCredentialFlow).
_MAX_REFRESH_ATTEMPTS = 2


def _sdk_parts() -> tuple[Any, Any, Any]:
    """The SDK's encoder, FCM error parser and network-error mapping (private parts)."""
    try:
        from firebase_admin import _utils

        service_class = messaging._MessagingService
        return (service_class.encode_message,
                lambda error: _utils.handle_platform_error_from_httpx(
                    error, service_class._build_fcm_error_httpx),
                _utils.handle_httpx_error)
    except (ImportError, AttributeError) as exc:
        raise fcm.sdk_changed("the FCM encoder or error parsers moved") from exc


class FcmTransport:
    """Sends messages of one firebase app through one aiohttp session (on one event loop)."""

    def __init__(self, app: firebase_admin.App, timeout_s: float = fcm.DEFAULT_TIMEOUT_S,
                 max_connections: int = 100) -> None:
        self._credential = app.credential.get_credential()
        self._url = fcm.send_url(app)
        self._encode, self._fcm_error, self._network_error = _sdk_parts()
        self._headers = {
            "X-GOOG-API-FORMAT-VERSION": "2",
            "X-FIREBASE-CLIENT": f"fire-admin-python/{firebase_admin.__version__}",
            "Content-Type": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._refreshing: asyncio.Lock | None = None

    @property
    def url(self) -> str:
        return self._url

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send_each(self, messages: list[messaging.Message]) -> list[messaging.SendResponse]:
        """One response per message, in order, as `messaging.send_each_async` answers.

        Raises as the SDK does for the whole call: ValueError when a message does not
        encode, and UnknownError when the OAuth token cannot be had.
        """
        bodies = [json.dumps({"message": self._encode(m)}, separators=(",", ":")).encode()
                  for m in messages]
        try:
            await self._token(refresh=False)
        except Exception as error:  # google-auth's errors, as the SDK wraps them
            raise exceptions.UnknownError(
                message=f"Unknown error while making remote service calls: {error}",
                cause=error) from error
        return list(await asyncio.gather(*(self._send(body) for body in bodies)))

    async def _token(self, *, refresh: bool, stale: str | None = None) -> str:
        """The current access token; refreshed (in a thread: google-auth blocks) when it has
        expired, or when `refresh` and nobody replaced `stale` meanwhile."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        credential = self._credential
        if credential.valid and not (refresh and credential.token == stale):
            return str(credential.token)
        async with self._refreshing:
            if not credential.valid or (refresh and credential.token == stale):
                await asyncio.to_thread(credential.refresh,
                                        google.auth.transport.requests.Request())
            return str(credential.token)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                timeout=self._timeout, skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def _send(self, body: bytes) -> messaging.SendResponse:
        token = await self._token(refresh=False)
        for attempt in range(_MAX_REFRESH_ATTEMPTS + 1):
            try:
                async with self._client().post(
                    self._url, data=body,
                    headers={**self._headers, "Authorization": f"Bearer {token}"},
                ) as answer:
                    content = await answer.read()
                    status, headers = answer.status, answer.headers
            except TimeoutError as error:
                return messaging.SendResponse(None, self._network_error(
                    httpx.TimeoutException(f"timed out: {error}")))
            except aiohttp.ClientError as error:
                return messaging.SendResponse(None, self._network_error(_as_httpx(error)))
            if status == 200:
                return messaging.SendResponse(json.loads(content), None)
            if (status == 401 and attempt < _MAX_REFRESH_ATTEMPTS
                    and fcm.THIRD_PARTY_AUTH_ERROR not in content):
                try:
                    token = await self._token(refresh=True, stale=token)
                except Exception:
                    break  # the 401 stands, as the SDK's flow would leave it
                continue
            break
        request = httpx.Request("POST", self._url)
        response = httpx.Response(status, headers=list(headers.items()), content=content,
                                  request=request)
        refused = httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)
        return messaging.SendResponse(None, self._fcm_error(refused))


def _as_httpx(error: aiohttp.ClientError) -> httpx.TransportError:
    """The httpx error the SDK's transport meets in the same situation."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, aiohttp.ClientConnectorError):  # no connection at all
        return httpx.ConnectError(text)
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(text)  # closed without (a whole) answer
    return httpx.TransportError(text)
