"""Shape checks of a `messages:send` body, as strict as FCM where geopush can get it wrong.

FCM rejects these with 400 INVALID_ARGUMENT; checking them here means a message-building
bug shows up in tests and demos instead of as failed deliveries in production.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

# Fields of the v1 `Message` resource (https://firebase.google.com/docs/reference/fcm/rest/v1/
# projects.messages): FCM rejects unknown ones ("Cannot find field").
_MESSAGE_KEYS = frozenset(
    {
        "name",
        "data",
        "notification",
        "android",
        "webpush",
        "apns",
        "fcm_options",
        "token",
        "topic",
        "condition",
        "fid",
    }
)
_TARGETS = ("token", "topic", "condition", "fid")
_NOTIFICATION_KEYS = frozenset({"title", "body", "image"})
_ANDROID_KEYS = frozenset(
    {
        "collapse_key",
        "priority",
        "ttl",
        "restricted_package_name",
        "data",
        "notification",
        "fcm_options",
        "direct_boot_ok",
        "bandwidth_constrained_ok",
        "restricted_satellite_ok",
    }
)
_ANDROID_BOOLS = ("direct_boot_ok", "bandwidth_constrained_ok", "restricted_satellite_ok")
_APNS_KEYS = frozenset({"headers", "payload", "fcm_options", "live_activity_token"})
_RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
_MAX_TTL_S = 28 * 24 * 3600
# FCM's limit on a notification message: 4096 bytes of data and notification together.
_MAX_PAYLOAD_BYTES = 4096
_MAX_COLLAPSE_ID_BYTES = 64


@dataclass(frozen=True, slots=True)
class Violation:
    """One invalid field, named as FCM names it in a `BadRequest.fieldViolations` entry."""

    field: str
    description: str


def _is_str_map(value: object) -> TypeGuard[Mapping[str, str]]:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _unknown(path: str, value: Mapping[str, Any], known: frozenset[str]) -> list[Violation]:
    return [
        Violation(
            f"{path}.{key}" if path else key,
            f'Invalid JSON payload received. Unknown name "{key}".',
        )
        for key in value
        if key not in known
    ]


def _check_data(path: str, data: object) -> list[Violation]:
    if not _is_str_map(data):
        return [Violation(path, "data must be a map of string to string")]
    return [
        Violation(f"{path}[{key}]", "reserved key in data")
        for key in data
        if key in _RESERVED_DATA_KEYS or key.startswith(("google.", "gcm."))
    ]


def _check_notification(notification: object) -> list[Violation]:
    if not isinstance(notification, Mapping):
        return [Violation("message.notification", "must be an object")]
    found = _unknown("message.notification", notification, _NOTIFICATION_KEYS)
    found += [
        Violation(f"message.notification.{key}", "must be a string")
        for key in _NOTIFICATION_KEYS
        if key in notification and not isinstance(notification[key], str)
    ]
    return found


def _check_android(android: object) -> list[Violation]:
    path = "message.android"
    if not isinstance(android, Mapping):
        return [Violation(path, "must be an object")]
    found = _unknown(path, android, _ANDROID_KEYS)
    for key in ("collapse_key", "restricted_package_name"):
        if key in android and not isinstance(android[key], str):
            found.append(Violation(f"{path}.{key}", "must be a string"))
    if "priority" in android and android["priority"] not in ("normal", "high", "NORMAL", "HIGH"):
        found.append(Violation(f"{path}.priority", "must be normal or high"))
    if "ttl" in android:
        ttl = android["ttl"]
        if not isinstance(ttl, str) or not _DURATION.match(ttl):
            found.append(Violation(f"{path}.ttl", 'must be a duration such as "3600s"'))
        elif float(ttl[:-1]) > _MAX_TTL_S:
            found.append(Violation(f"{path}.ttl", "must be at most 4 weeks"))
    if "data" in android:
        found += _check_data(f"{path}.data", android["data"])
    for key in ("notification", "fcm_options"):
        if key in android and not isinstance(android[key], Mapping):
            found.append(Violation(f"{path}.{key}", "must be an object"))
    found += [
        Violation(f"{path}.{key}", "must be a boolean")
        for key in _ANDROID_BOOLS
        if key in android and not isinstance(android[key], bool)
    ]
    return found


def _check_apns_headers(headers: object) -> list[Violation]:
    path = "message.apns.headers"
    if not _is_str_map(headers):
        return [Violation(path, "headers must be a map of string to string")]
    found: list[Violation] = []
    expiration = headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        found.append(Violation(f"{path}[apns-expiration]", "must be epoch seconds"))
    priority = headers.get("apns-priority")
    if priority is not None and priority not in ("1", "5", "10"):
        found.append(Violation(f"{path}[apns-priority]", "must be 1, 5 or 10"))
    collapse = headers.get("apns-collapse-id")
    if collapse is not None and len(collapse.encode()) > _MAX_COLLAPSE_ID_BYTES:
        found.append(Violation(f"{path}[apns-collapse-id]", "must be at most 64 bytes"))
    return found


def _check_apns(apns: object) -> list[Violation]:
    path = "message.apns"
    if not isinstance(apns, Mapping):
        return [Violation(path, "must be an object")]
    found = _unknown(path, apns, _APNS_KEYS)
    if "headers" in apns:
        found += _check_apns_headers(apns["headers"])
    payload = apns.get("payload")
    if payload is not None and (
        not isinstance(payload, Mapping)
        or ("aps" in payload and not isinstance(payload["aps"], Mapping))
    ):
        found.append(Violation(f"{path}.payload", "must be an object with an aps object"))
    return found


def _check_target(message: Mapping[str, Any]) -> list[Violation]:
    present = [key for key in _TARGETS if key in message]
    if len(present) != 1:
        return [Violation("message", "exactly one of token, topic, condition or fid is required")]
    target = present[0]
    if not isinstance(message[target], str) or not message[target]:
        return [Violation(f"message.{target}", "must be a non-empty string")]
    return []


def _check_size(message: Mapping[str, Any]) -> list[Violation]:
    size = sum(
        len(json.dumps(message[key], separators=(",", ":")).encode())
        for key in ("data", "notification")
        if key in message
    )
    if size > _MAX_PAYLOAD_BYTES:
        return [Violation("message", f"Message is too big: {size} > {_MAX_PAYLOAD_BYTES} bytes")]
    return []


def check_send_body(body: object) -> list[Violation]:
    """Every problem of a `messages:send` body; empty when FCM would accept it."""
    if not isinstance(body, Mapping) or not isinstance(body.get("message"), Mapping):
        return [Violation("message", 'body must be {"message": {...}}')]
    found = _unknown("", body, frozenset({"message", "validate_only"}))
    if "validate_only" in body and not isinstance(body["validate_only"], bool):
        found.append(Violation("validate_only", "must be a boolean"))
    message: Mapping[str, Any] = body["message"]
    found += _unknown("message", message, _MESSAGE_KEYS)
    found += _check_target(message)
    if "notification" in message:
        found += _check_notification(message["notification"])
    if "data" in message:
        found += _check_data("message.data", message["data"])
    if "android" in message:
        found += _check_android(message["android"])
    if "apns" in message:
        found += _check_apns(message["apns"])
    for key in ("webpush", "fcm_options"):
        if key in message and not isinstance(message[key], Mapping):
            found.append(Violation(f"message.{key}", "must be an object"))
    if not found:
        found += _check_size(message)
    return found


def target_of(body: object) -> str | None:
    """The token (or topic, condition, fid) a body is addressed to, if it can be read."""
    if isinstance(body, Mapping) and isinstance(message := body.get("message"), Mapping):
        for key in _TARGETS:
            if isinstance(value := message.get(key), str):
                return value
    return None
