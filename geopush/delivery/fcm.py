"""FCM, seen from geopush: pure message building, the one place the SDK is configured, and
the mapping of each SDK answer to what the sender does with the delivery (SPEC section 6).

Sending itself (`firebase_admin.messaging.send_each_async`) happens in the sender loop.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import firebase_admin
from firebase_admin import credentials, exceptions, messaging

from geopush.codes import DeliveryReason, DeliveryStatus

DEFAULT_ENDPOINT = "https://fcm.googleapis.com"
SEND_PATH = "/v1/projects/{project_id}/messages:send"
DEFAULT_TIMEOUT_S = 30.0
# FCM keeps a message at most 4 weeks; a longer Android ttl is refused.
MAX_TTL_S = 28 * 24 * 3600
_MAX_APNS_COLLAPSE_ID_BYTES = 64


# --- message building (pure) -------------------------------------------------------------


class DeliveryExpired(ValueError):
    """No ttl left: the delivery must be marked `expired`, never sent."""


def _text(value: object | None) -> str:
    return "" if value is None else str(value)


def build_message(
    *,
    token: str,
    title: str,
    body: str,
    delivery_id: object,
    offer_id: object,
    store_id: object | None,
    geofence_id: object | None,
    deeplink: str | None,
    ttl_s: float,
    now: datetime,
) -> messaging.Message:
    """The FCM message of one delivery, with `ttl_s` seconds left to live at `now`.

    The offer id is the collapse key on both platforms, so a phone that was offline sees
    one copy of an offer, not one per visit. Android gets `priority=high` and APNs
    `apns-priority: 10` because a store offer is worth nothing once the customer has walked
    past.

    Raises DeliveryExpired with less than a second to live, and ValueError for anything
    else the SDK or FCM would refuse: the SDK checks a whole batch before sending any of
    it, so one bad message left in a batch would fail every message with it.
    """
    ttl = min(math.floor(ttl_s), MAX_TTL_S)
    if ttl < 1:
        raise DeliveryExpired("no ttl left: the delivery has expired and must not be sent")
    if not isinstance(token, str) or not token:
        raise ValueError("token must be a non-empty string")
    if not isinstance(title, str) or not isinstance(body, str):
        raise ValueError("title and body must be strings")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    collapse_key = _text(offer_id)
    if not collapse_key:
        raise ValueError("offer_id is required: it is the collapse key")
    if len(collapse_key.encode()) > _MAX_APNS_COLLAPSE_ID_BYTES:
        raise ValueError("offer_id longer than APNs allows for apns-collapse-id (64 bytes)")
    data = {
        "delivery_id": _text(delivery_id),
        "offer_id": collapse_key,
        "store_id": _text(store_id),
        "geofence_id": _text(geofence_id),
        "deeplink": _text(deeplink),
    }
    message = messaging.Message(
        notification=messaging.Notification(title=title, body=body),
        data=data,
        android=messaging.AndroidConfig(ttl=ttl, collapse_key=collapse_key, priority="high"),
        apns=messaging.APNSConfig(
            headers={
                "apns-expiration": str(math.floor(now.timestamp()) + ttl),
                "apns-collapse-id": collapse_key,
                "apns-priority": "10",
            }
        ),
    )
    # firebase-admin 7 deprecates `Message(token=...)` (with a DeprecationWarning per
    # message) in favour of `fid`, a Firebase installation id — a different identifier the
    # app does not send us. FCM v1 still takes `token` on the wire, so set the attribute
    # the encoder reads; tests/api/test_fcm_sdk_contract.py checks it still reaches the wire.
    message.token = token
    return message


# --- the SDK, configured in one place ------------------------------------------------------


def _sdk_changed(what: str) -> RuntimeError:
    return RuntimeError(
        f"firebase-admin {firebase_admin.__version__} changed: {what}. geopush sets the FCM "
        "endpoint, turns off the SDK's retries and keeps its OAuth flow from resending "
        "THIRD_PARTY_AUTH_ERROR through private attributes; update "
        "geopush/delivery/fcm.py (tests/api/test_fcm_sdk_contract.py shows what it expects)."
    )


def _service(app: firebase_admin.App) -> Any:
    """The app's `_MessagingService` (created on first use, then cached by the app)."""
    get_service = getattr(messaging, "_get_messaging_service", None)
    if get_service is None:
        raise _sdk_changed("messaging._get_messaging_service is gone")
    return get_service(app)


_THIRD_PARTY_AUTH_ERROR = b"THIRD_PARTY_AUTH_ERROR"
# For the aiohttp transport (delivery/transport.py), which follows the same auth flow.
THIRD_PARTY_AUTH_ERROR = _THIRD_PARTY_AUTH_ERROR
sdk_changed = _sdk_changed


def _auth_flow_class() -> type:
    """The SDK's OAuth flow, except that FCM's THIRD_PARTY_AUTH_ERROR is final.

    FCM answers THIRD_PARTY_AUTH_ERROR (the project's APNs or web-push credentials were
    refused) with HTTP 401, and the SDK's flow takes every 401 for an expired OAuth token:
    it fetches a new one (a blocking call) and sends the message again, twice. New OAuth
    tokens cannot fix APNs credentials, so geopush returns that answer at once: one request
    per attempt. Any other 401 (a revoked OAuth token) still refreshes and resends.
    """
    try:
        from firebase_admin._http_client import GoogleAuthCredentialFlow
    except ImportError as exc:
        raise _sdk_changed("GoogleAuthCredentialFlow moved") from exc

    class FcmAuthFlow(GoogleAuthCredentialFlow):  # type: ignore[misc]
        requires_response_body = True  # httpx reads the answer before the flow sees it

        def auth_flow(self, request: Any) -> Any:
            flow = super().auth_flow(request)
            request = next(flow)
            while True:
                response = yield request
                if response.status_code == 401 and _THIRD_PARTY_AUTH_ERROR in response.content:
                    return
                try:
                    request = flow.send(response)
                except StopIteration:
                    return

    return FcmAuthFlow


def _no_retry_client(app: firebase_admin.App, timeout_s: float) -> Any:
    """An async SDK client with the SDK's own retries off.

    Its default retries 500/503 four times with its own backoff but never 429, unseen by
    geopush's attempt count and backoff; geopush retries every transient error itself.
    """
    try:
        from firebase_admin._http_client import HttpxAsyncClient
        from firebase_admin._retry import HttpxRetry
    except ImportError as exc:
        raise _sdk_changed("HttpxAsyncClient or HttpxRetry moved") from exc
    credential = app.credential.get_credential()
    try:
        client = HttpxAsyncClient(
            credential=credential,
            retry_config=HttpxRetry(max_retries=0),
            timeout=timeout_s,  # annotated int in older SDKs, passed to httpx
        )
    except TypeError as exc:
        raise _sdk_changed("HttpxAsyncClient/HttpxRetry take other arguments") from exc
    httpx_client = getattr(client, "_async_client", None)
    if httpx_client is None or not hasattr(httpx_client, "auth"):
        raise _sdk_changed("HttpxAsyncClient has no httpx client in _async_client")
    httpx_client.auth = _auth_flow_class()(credential)
    return client


def configure_messaging(app: firebase_admin.App, endpoint: str, timeout_s: float) -> str:
    """Point `app`'s messaging at `{endpoint}/v1/projects/{project}/messages:send`, no SDK
    retries. Returns the send URL. The SDK has no public option for either."""
    service = _service(app)
    for attribute in ("_fcm_url", "_async_client", "_project_id"):
        if not hasattr(service, attribute):
            raise _sdk_changed(f"_MessagingService has no {attribute}")
    url = endpoint.rstrip("/") + SEND_PATH.format(project_id=service._project_id)
    service._fcm_url = url
    service._async_client = _no_retry_client(app, timeout_s)
    return url


def send_url(app: firebase_admin.App) -> str:
    """Where `app` sends messages: the URL `configure_messaging` set (or the SDK's default).

    Both transports read it here, so `[fcm] endpoint` is applied in one place."""
    url = getattr(_service(app), "_fcm_url", None)
    if not isinstance(url, str):
        raise _sdk_changed("_MessagingService has no _fcm_url")
    return url


def make_firebase_app(
    credentials_file: str | os.PathLike[str],
    project_id: str | None,
    endpoint: str = DEFAULT_ENDPOINT,
    name: str = "geopush",
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> firebase_admin.App:
    """A named firebase app (several may live in one process) sending to `endpoint`.

    `project_id` None or empty: the service-account file's. The OAuth token comes from the
    file's `token_uri`. Call `close_firebase_app` on the event loop that sent with it.
    """
    if not os.fspath(credentials_file):
        raise ValueError("[fcm] credentials_file is required to send through FCM")
    options: dict[str, Any] = {"httpTimeout": timeout_s}
    if project_id:
        options["projectId"] = project_id
    app = firebase_admin.initialize_app(
        credentials.Certificate(os.fspath(credentials_file)), options, name=name
    )
    try:
        configure_messaging(app, endpoint, timeout_s)
    except BaseException:
        _delete_app(app)
        raise
    return app


def _delete_app(app: firebase_admin.App) -> None:
    """`firebase_admin.delete_app`, which calls `asyncio.run` and so cannot run on a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        firebase_admin.delete_app(app)
        return
    thread = threading.Thread(target=firebase_admin.delete_app, args=(app,))
    thread.start()
    thread.join()


async def close_firebase_app(app: firebase_admin.App) -> None:
    """Close the app's HTTP connections on this loop (their loop), then delete the app."""
    await _service(app)._async_client.aclose()
    # delete_app closes the client again with asyncio.run: a no-op now, but asyncio.run
    # refuses to run inside a loop, hence the worker thread.
    await asyncio.to_thread(firebase_admin.delete_app, app)


# --- what an FCM answer means for the delivery ---------------------------------------------


class SendAction(StrEnum):
    """What the sender does with a delivery after one attempt."""

    SENT = "sent"  # mark sent, keep the message name
    FAIL = "fail"  # mark failed with `reason`; deactivate the token if asked
    RETRY = "retry"  # transient: back off, try again until max_attempts
    QUOTA = "quota"  # as RETRY, and slow the whole sender down


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """One attempt's result, in geopush's terms."""

    action: SendAction
    message_name: str | None = None
    reason: DeliveryReason | None = None
    deactivate_token: bool = False
    retry_after: float | None = None
    # The SDK's exception class and message, for logs and the delivery's last error. FCM's
    # messages name no token.
    error: str | None = None

    @property
    def status(self) -> DeliveryStatus | None:
        """The delivery's new status, or None when it stays queued for a retry."""
        if self.action is SendAction.SENT:
            return DeliveryStatus.SENT
        if self.action is SendAction.FAIL:
            return DeliveryStatus.FAILED
        return None


# Most specific first: the FCM classes subclass the generic ones (UnregisteredError is a
# NotFoundError, ...), and a generic 404/403/401 must not deactivate a token.
_PERMANENT: tuple[tuple[type[exceptions.FirebaseError], DeliveryReason, bool], ...] = (
    (messaging.UnregisteredError, DeliveryReason.UNREGISTERED, True),
    (messaging.SenderIdMismatchError, DeliveryReason.SENDER_ID_MISMATCH, True),
    (messaging.ThirdPartyAuthError, DeliveryReason.THIRD_PARTY_AUTH_ERROR, False),
    (exceptions.InvalidArgumentError, DeliveryReason.INVALID_ARGUMENT, True),
)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None or not (value := value.strip()):
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000" in the date: RFC 5322 says UTC
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def _retry_after_of(error: exceptions.FirebaseError, now: float | None) -> float | None:
    response = error.http_response
    if response is None:
        return None
    return parse_retry_after(response.headers.get("Retry-After"), now)


def classify_exception(error: BaseException, now: float | None = None) -> SendOutcome:
    """The outcome of an attempt that raised `error`.

    Also for an exception from `send_each_async` itself, which then applies to every
    message of the batch: the SDK raises UnknownError for the whole batch when its blocking
    OAuth token fetch fails (google-auth errors are not caught per message).
    Anything not known to be permanent is retried: an unknown 5xx, a network error, a
    timeout, and also a 401/403/404 without FCM's code, which say the sender's credentials
    or project are wrong — not the token — so no token is deactivated for them.
    """
    text = f"{type(error).__name__}: {error}"
    if not isinstance(error, exceptions.FirebaseError):
        return SendOutcome(SendAction.RETRY, error=text)
    for error_type, reason, deactivate in _PERMANENT:
        if isinstance(error, error_type):
            return SendOutcome(
                SendAction.FAIL, reason=reason, deactivate_token=deactivate, error=text
            )
    retry_after = _retry_after_of(error, now)
    if isinstance(error, exceptions.ResourceExhaustedError):  # QuotaExceededError included
        return SendOutcome(SendAction.QUOTA, retry_after=retry_after, error=text)
    return SendOutcome(SendAction.RETRY, retry_after=retry_after, error=text)


def classify(response: messaging.SendResponse, now: float | None = None) -> SendOutcome:
    """The outcome of one message of a `send_each_async` batch."""
    if response.success:
        return SendOutcome(SendAction.SENT, message_name=response.message_id)
    if response.exception is None:  # an answer without a name: not FCM's contract
        return SendOutcome(SendAction.RETRY, error="FCM answered without a message name")
    return classify_exception(response.exception, now)
