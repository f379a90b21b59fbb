"""FCM HTTP v1 error answers, in the exact JSON shape Google sends.

The shape matters more than the wording: firebase-admin picks its exception class from
`error.details[].errorCode` (an `FcmError`) and falls back to `error.status`, so an answer
that drifts from this shape turns an `UnregisteredError` into a generic `NotFoundError` and
geopush would stop deactivating dead tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


class FcmErrorCode(StrEnum):
    """The `errorCode` values of FCM HTTP v1 that the emulator can answer with."""

    UNREGISTERED = "UNREGISTERED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    SENDER_ID_MISMATCH = "SENDER_ID_MISMATCH"
    THIRD_PARTY_AUTH_ERROR = "THIRD_PARTY_AUTH_ERROR"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class _ErrorKind:
    http_status: int
    rpc_status: str
    message: str


# HTTP status and google.rpc status per FCM's documented error codes
# (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode).
_KINDS: dict[FcmErrorCode, _ErrorKind] = {
    FcmErrorCode.UNREGISTERED: _ErrorKind(404, "NOT_FOUND", "Requested entity was not found."),
    FcmErrorCode.INVALID_ARGUMENT: _ErrorKind(
        400, "INVALID_ARGUMENT", "Request contains an invalid argument."
    ),
    FcmErrorCode.SENDER_ID_MISMATCH: _ErrorKind(403, "PERMISSION_DENIED", "SenderId mismatch"),
    FcmErrorCode.THIRD_PARTY_AUTH_ERROR: _ErrorKind(
        401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"
    ),
    FcmErrorCode.QUOTA_EXCEEDED: _ErrorKind(
        429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests'."
    ),
    FcmErrorCode.UNAVAILABLE: _ErrorKind(
        503, "UNAVAILABLE", "The service is currently unavailable."
    ),
    FcmErrorCode.INTERNAL: _ErrorKind(500, "INTERNAL", "Internal error encountered."),
}


def http_status(code: FcmErrorCode) -> int:
    """The HTTP status FCM answers with for `code`."""
    return _KINDS[code].http_status


def fcm_error_body(code: FcmErrorCode, message: str | None = None) -> dict[str, Any]:
    """The JSON body of an FCM error answer carrying an `FcmError` detail."""
    kind = _KINDS[code]
    return {
        "error": {
            "code": kind.http_status,
            "message": message or kind.message,
            "status": kind.rpc_status,
            "details": [{"@type": FCM_ERROR_TYPE, "errorCode": code.value}],
        }
    }


def unauthenticated_body() -> dict[str, Any]:
    """Google's answer to a missing or unknown OAuth token: no `FcmError` detail.

    The SDK maps it by status alone, to `UnauthenticatedError`, which is how a real project
    with revoked credentials looks to geopush.
    """
    return {
        "error": {
            "code": 401,
            "message": (
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential."
            ),
            "status": "UNAUTHENTICATED",
        }
    }
