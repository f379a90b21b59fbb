"""The FCM emulator against the real firebase-admin SDK, over real HTTP on 127.0.0.1.

Each injected FCM error must reach geopush as the SDK's own exception class and then as
the right delivery outcome (SPEC section 6): that chain is what decides whether a token is
deactivated or a delivery retried.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import aiohttp
import firebase_admin
import pytest
from firebase_admin import exceptions, messaging

from geopush.codes import DeliveryReason, DeliveryStatus
from geopush.delivery.fcm import (
    DeliveryExpired,
    SendAction,
    build_message,
    classify,
    classify_exception,
    close_firebase_app,
    make_firebase_app,
)
from geopush.emulator import EmulatorClient, EmulatorThread, write_service_account
from geopush.emulator.failures import FailureRule, RuleError, parse_token_directives

# fcm_emulator, fcm_control, firebase_app, ...
pytest_plugins = ["tests.emulator_fixtures"]

ANY_PROJECT = "any-project"


def offer_message(
    token: str, *, ttl_s: float = 600, offer_id: str = "offer-7"
) -> messaging.Message:
    """A typical delivery's message, as the sender builds it."""
    return build_message(
        token=token,
        title="Coffee for 2 $",
        body="Show this at the counter",
        delivery_id="d-1",
        offer_id=offer_id,
        store_id="s-3",
        geofence_id=None,
        deeplink="geopush://offers/offer-7",
        ttl_s=ttl_s,
        now=datetime.now(UTC),
    )


async def send_one(app: firebase_admin.App, token: str) -> messaging.SendResponse:
    batch = await messaging.send_each_async([offer_message(token)], app=app)
    return batch.responses[0]


def fake_jwt(claims: dict[str, object]) -> str:
    """A JWT the emulator accepts: it checks the shape, not the signature."""

    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def good_claims() -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": "sa@p.iam.gserviceaccount.com",
        "aud": "http://127.0.0.1/token",
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "iat": now,
        "exp": now + 3600,
    }


async def access_token(session: aiohttp.ClientSession, base_url: str) -> str:
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": fake_jwt(good_claims()),
    }
    async with session.post(f"{base_url}/token", data=form) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer["expires_in"] == 3600 and answer["token_type"] == "Bearer"
    return answer["access_token"]


# --- success ------------------------------------------------------------------------------


async def test_success_is_recorded_with_android_apns_and_data(firebase_app, fcm_control):
    before = int(time.time())
    response = await send_one(firebase_app, "device-token-1")

    outcome = classify(response)
    assert outcome.action is SendAction.SENT
    assert outcome.status is DeliveryStatus.SENT
    [record] = await fcm_control.messages("device-token-1")
    assert outcome.message_name == record["name"]
    project_id = firebase_app.project_id
    assert record["name"].startswith(f"projects/{project_id}/messages/")
    assert record["project_id"] == project_id
    message = record["message"]
    assert message["token"] == "device-token-1"
    assert message["notification"] == {
        "title": "Coffee for 2 $",
        "body": "Show this at the counter",
    }
    assert message["data"] == {
        "delivery_id": "d-1",
        "offer_id": "offer-7",
        "store_id": "s-3",
        "geofence_id": "",
        "deeplink": "geopush://offers/offer-7",
    }
    assert message["android"] == {"ttl": "600s", "collapse_key": "offer-7", "priority": "high"}
    headers = message["apns"]["headers"]
    assert headers["apns-collapse-id"] == "offer-7"
    assert before + 600 <= int(headers["apns-expiration"]) <= int(time.time()) + 600


async def test_messages_filter_by_token_and_clear(firebase_app, fcm_control):
    batch = await messaging.send_each_async(
        [offer_message("tok-a"), offer_message("tok-b"), offer_message("tok-a")], app=firebase_app
    )
    assert batch.success_count == 3
    assert len(await fcm_control.messages("tok-a")) == 2
    assert len(await fcm_control.messages()) == 3
    await fcm_control.clear_messages()
    assert await fcm_control.messages() == []
    assert await fcm_control.attempts() == []


# --- every FCM error, through the SDK, to a delivery outcome ---------------------------------

ERRORS = [
    # token, SDK exception, action, reason, deactivate token
    ("fail-unregistered-x", messaging.UnregisteredError, SendAction.FAIL,
     DeliveryReason.UNREGISTERED, True),
    ("fail-invalid_argument-x", exceptions.InvalidArgumentError, SendAction.FAIL,
     DeliveryReason.INVALID_ARGUMENT, True),
    ("fail-sender_id_mismatch-x", messaging.SenderIdMismatchError, SendAction.FAIL,
     DeliveryReason.SENDER_ID_MISMATCH, True),
    ("fail-third_party_auth_error-x", messaging.ThirdPartyAuthError, SendAction.FAIL,
     DeliveryReason.THIRD_PARTY_AUTH_ERROR, False),
    ("fail-quota_exceeded-x", messaging.QuotaExceededError, SendAction.QUOTA, None, False),
    ("fail-unavailable-x", exceptions.UnavailableError, SendAction.RETRY, None, False),
    ("fail-internal-x", exceptions.InternalError, SendAction.RETRY, None, False),
]  # fmt: skip


@pytest.mark.parametrize(("token", "sdk_error", "action", "reason", "deactivate"), ERRORS)
async def test_injected_error_maps_to_sdk_class_and_outcome(
    firebase_app, token, sdk_error, action, reason, deactivate
):
    response = await send_one(firebase_app, token)

    assert type(response.exception) is sdk_error
    outcome = classify(response)
    assert (outcome.action, outcome.reason, outcome.deactivate_token) == (
        action,
        reason,
        deactivate,
    )
    assert outcome.retry_after is None
    expected_status = DeliveryStatus.FAILED if action is SendAction.FAIL else None
    assert outcome.status is expected_status


async def test_runtime_rule_sets_the_error(firebase_app, fcm_control):
    await fcm_control.add_failure("device-9", "SENDER_ID_MISMATCH")

    response = await send_one(firebase_app, "device-9")

    assert isinstance(response.exception, messaging.SenderIdMismatchError)
    assert classify(response).reason is DeliveryReason.SENDER_ID_MISMATCH


async def test_quota_retry_after_is_parsed(firebase_app, fcm_control):
    await fcm_control.add_failure("device-q", "QUOTA_EXCEEDED", retry_after=42)
    batch = await messaging.send_each_async(
        [offer_message("device-q"), offer_message("fail-quota_exceeded-ra7-x")], app=firebase_app
    )

    runtime, prefixed = (classify(r) for r in batch.responses)
    assert (runtime.action, runtime.retry_after) == (SendAction.QUOTA, 42.0)
    assert (prefixed.action, prefixed.retry_after) == (SendAction.QUOTA, 7.0)


async def test_unavailable_retry_after_is_parsed(firebase_app, fcm_control):
    await fcm_control.add_failure("device-u", "UNAVAILABLE", retry_after=5)

    outcome = classify(await send_one(firebase_app, "device-u"))

    assert (outcome.action, outcome.retry_after) == (SendAction.RETRY, 5.0)


async def test_dropped_connection_is_a_retried_network_error(firebase_app, fcm_control):
    response = await send_one(firebase_app, "drop-1-x")

    assert type(response.exception) is exceptions.UnknownError
    assert response.exception.http_response is None
    assert classify(response).action is SendAction.RETRY
    assert classify(await send_one(firebase_app, "drop-1-x")).action is SendAction.SENT
    attempts = await fcm_control.attempts("drop-1-x")
    assert [a["status"] for a in attempts] == [None, 200]


async def test_slow_answer_past_the_timeout_is_a_retried_deadline(
    fcm_emulator, fcm_credentials_file
):
    app = make_firebase_app(
        fcm_credentials_file, None, fcm_emulator.base_url, name="test-slow", timeout_s=0.3
    )
    try:
        response = await send_one(app, "slow-1000-x")
        assert type(response.exception) is exceptions.DeadlineExceededError
        assert classify(response).action is SendAction.RETRY
        assert classify(await send_one(app, "slow-20-x")).action is SendAction.SENT
    finally:
        await close_firebase_app(app)


# --- counts -----------------------------------------------------------------------------------


async def test_prefix_times_fails_then_succeeds(firebase_app, fcm_control):
    token = "fail-unavailable-2-device"
    outcomes = [classify(await send_one(firebase_app, token)).action for _ in range(3)]

    assert outcomes == [SendAction.RETRY, SendAction.RETRY, SendAction.SENT]
    assert [a["status"] for a in await fcm_control.attempts(token)] == [503, 503, 200]


async def test_runtime_times_honoured(firebase_app, fcm_control):
    await fcm_control.add_failure("device-t", "INTERNAL", times=1)

    first = await send_one(firebase_app, "device-t")
    second = await send_one(firebase_app, "device-t")

    assert isinstance(first.exception, exceptions.InternalError)
    assert second.success
    assert len(await fcm_control.attempts("device-t")) == 2


async def test_wildcard_rule_shares_one_count(firebase_app, fcm_control):
    await fcm_control.add_failure("*", "UNAVAILABLE", times=2)
    batch = await messaging.send_each_async(
        [offer_message(f"any-{i}") for i in range(3)], app=firebase_app
    )

    assert batch.failure_count == 2 and batch.success_count == 1


async def test_third_party_auth_error_is_one_request_and_no_token_refresh(
    firebase_app, fcm_control
):
    # THIRD_PARTY_AUTH_ERROR is an HTTP 401. The SDK's own auth flow answers every 401 by
    # fetching a new OAuth token and sending again, twice; geopush's flow stops at FCM's
    # code, since a new OAuth token cannot fix the project's APNs credentials.
    await send_one(firebase_app, "warm-up")
    tokens_before = (await fcm_control.stats())["tokens_issued"]

    response = await send_one(firebase_app, "fail-third_party_auth_error-y")

    assert isinstance(response.exception, messaging.ThirdPartyAuthError)
    assert len(await fcm_control.attempts("fail-third_party_auth_error-y")) == 1
    assert (await fcm_control.stats())["tokens_issued"] == tokens_before


# --- authentication ----------------------------------------------------------------------------


async def test_sdk_recovers_from_revoked_access_token(firebase_app, fcm_emulator, fcm_control):
    assert (await send_one(firebase_app, "device-r")).success
    fcm_emulator.state.revoke_tokens()

    assert (await send_one(firebase_app, "device-r")).success
    assert [a["status"] for a in await fcm_control.attempts("device-r")] == [200, 401, 200]


@pytest.mark.parametrize("authorization", [None, "Bearer not-issued", "Basic abc"])
async def test_bad_bearer_token_is_401_in_google_shape(fcm_emulator, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    body = {"message": {"token": "t", "notification": {"title": "x"}}}
    url = f"{fcm_emulator.base_url}/v1/projects/{ANY_PROJECT}/messages:send"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        assert response.status == 401
        error = (await response.json())["error"]
    assert error["code"] == 401 and error["status"] == "UNAUTHENTICATED"
    assert fcm_emulator.state.messages() == []


async def test_token_endpoint_failure_fails_the_whole_batch(fcm_emulator, tmp_path):
    # google-auth errors escape the SDK's per-message handling: send_each_async raises.
    credentials = write_service_account(
        tmp_path / "sa.json", f"{fcm_emulator.base_url}/no-such-token-endpoint", ANY_PROJECT
    )
    app = make_firebase_app(credentials, None, fcm_emulator.base_url, name="test-no-token")
    try:
        with pytest.raises(exceptions.UnknownError) as raised:
            await messaging.send_each_async([offer_message("a"), offer_message("b")], app=app)
    finally:
        await close_firebase_app(app)
    assert classify_exception(raised.value).action is SendAction.RETRY
    assert fcm_emulator.state.attempts() == []


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials", "assertion": "a.b.c"}, "unsupported_grant_type"),
        ({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}, "invalid_request"),
        (
            {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "abc"},
            "invalid_grant",
        ),
        (
            {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": fake_jwt({**good_claims(), "scope": ""}),
            },
            "invalid_grant",
        ),
        (
            {
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": fake_jwt({**good_claims(), "exp": 1_000_000}),
            },
            "invalid_grant",
        ),
    ],
)
async def test_token_endpoint_refuses_bad_grants(fcm_emulator, form, error):
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fcm_emulator.base_url}/token", data=form) as response,
    ):
        assert response.status == 400
        assert (await response.json())["error"] == error


# --- message shape -----------------------------------------------------------------------------

GOOD = {"token": "t", "notification": {"title": "a", "body": "b"}, "data": {"k": "v"}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"msg": GOOD}, "message"),
        ({"message": {**GOOD, "topic": "news"}}, "message"),
        ({"message": {"notification": {"title": "a"}}}, "message"),
        ({"message": {**GOOD, "data": {"k": 1}}}, "message.data"),
        ({"message": {**GOOD, "data": {"google.x": "v"}}}, "message.data[google.x]"),
        ({"message": {**GOOD, "notification": {"title": 5}}}, "message.notification.title"),
        ({"message": {**GOOD, "colour": "red"}}, "message.colour"),
        ({"message": {**GOOD, "android": {"ttl": 600}}}, "message.android.ttl"),
        ({"message": {**GOOD, "android": {"priority": "urgent"}}}, "message.android.priority"),
        (
            {"message": {**GOOD, "apns": {"headers": {"apns-expiration": "soon"}}}},
            "message.apns.headers[apns-expiration]",
        ),
        ({"message": {**GOOD, "data": {"k": "v" * 5000}}}, "message"),
    ],
)
async def test_bad_message_shape_is_invalid_argument(fcm_emulator, body, field):
    url = f"{fcm_emulator.base_url}/v1/projects/{ANY_PROJECT}/messages:send"
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {await access_token(session, fcm_emulator.base_url)}"}
        async with session.post(url, json=body, headers=headers) as response:
            assert response.status == 400
            error = (await response.json())["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    fcm_detail, bad_request = error["details"]
    assert fcm_detail["errorCode"] == "INVALID_ARGUMENT"
    assert field in [v["field"] for v in bad_request["fieldViolations"]]
    assert fcm_emulator.state.messages() == []


async def test_validate_only_is_checked_not_recorded(firebase_app, fcm_emulator):
    batch = await messaging.send_each_async(
        [offer_message("dry-run")], dry_run=True, app=firebase_app
    )

    assert batch.responses[0].message_id.endswith("/fake_message_id")
    assert fcm_emulator.state.messages() == []


# --- failure rules and message building (pure) -------------------------------------------------


def test_token_grammar():
    assert parse_token_directives("plain-token") == []
    assert parse_token_directives("fail-typo-x") == []
    [rule] = parse_token_directives("fail-quota_exceeded-1-ra3-abc")
    assert (rule.error, rule.times, rule.retry_after) == ("QUOTA_EXCEEDED", 1, 3)
    slow, fail = parse_token_directives("slow-200-fail-internal-abc")
    assert slow.delay_s == 0.2 and (fail.error, fail.times) == ("INTERNAL", None)
    [drop] = parse_token_directives("drop-2-abc")
    assert drop.drop and drop.times == 2


def test_rule_needs_an_effect():
    with pytest.raises(RuleError):
        FailureRule()
    with pytest.raises(RuleError):
        FailureRule(drop=True, times=-1)


async def test_control_api_refuses_bad_rules(fcm_control):
    for bad in ({"error": "UNREGISTERED"}, {"token": "t", "error": "NOPE"}, {"token": "t"}):
        with pytest.raises(RuntimeError, match="400"):
            await fcm_control._call("POST", "/failures", json=bad)


def test_build_message_refuses_what_fcm_would():
    now = datetime.now(UTC)
    common = {
        "token": "t", "title": "a", "body": "b", "delivery_id": 1, "store_id": None,
        "geofence_id": None, "deeplink": None,
    }  # fmt: skip
    with pytest.raises(DeliveryExpired):
        build_message(**common, offer_id="o", ttl_s=0.5, now=now)
    with pytest.raises(ValueError, match="token"):
        build_message(**{**common, "token": ""}, offer_id="o", ttl_s=60, now=now)
    with pytest.raises(ValueError, match="collapse"):
        build_message(**common, offer_id="", ttl_s=60, now=now)
    with pytest.raises(ValueError, match="64 bytes"):
        build_message(**common, offer_id="o" * 65, ttl_s=60, now=now)
    with pytest.raises(ValueError, match="timezone"):
        build_message(**common, offer_id="o", ttl_s=60, now=datetime(2030, 1, 1))
    capped = build_message(**common, offer_id="o", ttl_s=10**9, now=now)
    assert capped.android.ttl == 28 * 24 * 3600


def test_emulator_thread_picks_a_free_port():
    with EmulatorThread(port=0) as first, EmulatorThread(port=0) as second:
        assert first.port != second.port
        assert first.token_uri == f"http://127.0.0.1:{first.port}/token"


async def test_control_client_needs_its_context():
    with pytest.raises(RuntimeError, match="async with"):
        await EmulatorClient("http://127.0.0.1:1").messages()
