"""The aiohttp transport against the SDK's own: every SPEC section 6 outcome classified alike.

Each case sends one message through `messaging.send_each_async` (the real SDK, configured as
geopush configures it) and one through `FcmTransport`, to the FCM emulator with the same
failure injected (each path its own token, so per-token counts do not mix), and compares
what `fcm.classify` makes of the answers, the SDK exception class, and how many requests
reached the emulator.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from firebase_admin import messaging

from geopush.delivery.fcm import SendAction, build_message, classify, send_url
from geopush.delivery.transport import FcmTransport

pytest_plugins = ["tests.emulator_fixtures"]

SDK_TIMEOUT_S = 2.0  # the firebase_app fixture's timeout (tests/emulator_fixtures.py)


def message(token: str, now: datetime | None = None) -> messaging.Message:
    return build_message(token=token, title="t", body="b", delivery_id="d", offer_id="o",
                         store_id=None, geofence_id=None, deeplink=None, ttl_s=60,
                         now=now or datetime.now(UTC))


@pytest.fixture
async def transport(firebase_app):
    sender = FcmTransport(firebase_app, timeout_s=SDK_TIMEOUT_S)
    yield sender
    await sender.close()


def _seen(response: messaging.SendResponse) -> tuple[object, ...]:
    outcome = classify(response, now=0.0)
    return (outcome.action, outcome.reason, outcome.deactivate_token, outcome.retry_after,
            None if response.exception is None else type(response.exception))


CASES = {
    "success": ("ok-", SendAction.SENT),
    "unregistered": ("fail-unregistered-", SendAction.FAIL),
    "invalid_argument": ("fail-invalid_argument-", SendAction.FAIL),
    "sender_id_mismatch": ("fail-sender_id_mismatch-", SendAction.FAIL),
    "third_party_auth_error": ("fail-third_party_auth_error-", SendAction.FAIL),
    "unavailable": ("fail-unavailable-", SendAction.RETRY),
    "unavailable_retry_after": ("fail-unavailable-ra5-", SendAction.RETRY),
    "internal": ("fail-internal-", SendAction.RETRY),
    "quota_retry_after": ("fail-quota_exceeded-ra7-", SendAction.QUOTA),
    "quota": ("fail-quota_exceeded-", SendAction.QUOTA),
    "connection_dropped": ("drop-", SendAction.RETRY),
    "timeout": (f"slow-{int(SDK_TIMEOUT_S * 1000) + 1500}-", SendAction.RETRY),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_outcome_is_classified_as_the_sdk_classifies_it(case, firebase_app, transport,
                                                              fcm_control):
    prefix, action = CASES[case]
    sdk_token, ours_token = f"{prefix}{case}-sdk", f"{prefix}{case}-aio"
    now = datetime.now(UTC)  # one clock for both, so their expiry headers are equal

    [sdk] = (await messaging.send_each_async([message(sdk_token, now)],
                                             app=firebase_app)).responses
    [ours] = await transport.send_each([message(ours_token, now)])

    assert _seen(ours) == _seen(sdk)
    assert classify(ours).action is action
    if case != "timeout":  # the emulator records a slow attempt only once it answers
        assert len(await fcm_control.attempts(ours_token)) == len(
            await fcm_control.attempts(sdk_token))
    if action is SendAction.SENT:
        [record] = await fcm_control.messages(ours_token)
        assert ours.message_id == record["name"]
        [sdk_record] = await fcm_control.messages(sdk_token)
        assert record["message"] == {**sdk_record["message"], "token": ours_token}


async def test_an_expired_oauth_token_is_refreshed_and_the_message_resent(
        firebase_app, transport, fcm_emulator, fcm_control):
    [warm] = await transport.send_each([message("warm-aio")])
    assert warm.success
    fcm_emulator.state.revoke_tokens()  # as if every access token had expired at FCM

    [sdk] = (await messaging.send_each_async([message("revoked-sdk")],
                                             app=firebase_app)).responses
    fcm_emulator.state.revoke_tokens()
    [ours] = await transport.send_each([message("revoked-aio")])

    assert ours.success and sdk.success
    assert [a["status"] for a in await fcm_control.attempts("revoked-aio")] == [
        a["status"] for a in await fcm_control.attempts("revoked-sdk")]


async def test_a_message_the_sdk_refuses_is_refused_before_anything_is_sent(
        firebase_app, transport, fcm_control):
    bad = messaging.Message(token="bad-aio", data={"n": 1})  # data values must be strings
    with pytest.raises(ValueError) as sdk_error:
        await messaging.send_each_async([bad], app=firebase_app)
    with pytest.raises(ValueError) as our_error:
        await transport.send_each([bad, message("good-aio")])
    assert str(our_error.value) == str(sdk_error.value)
    # (Only this test's tokens: a slow attempt of an earlier test may land late.)
    assert await fcm_control.attempts("bad-aio") == []
    assert await fcm_control.attempts("good-aio") == []


def test_both_paths_send_to_the_configured_endpoint(firebase_app, fcm_emulator):
    url = f"{fcm_emulator.base_url}/v1/projects/{firebase_app.project_id}/messages:send"
    assert send_url(firebase_app) == url
    assert FcmTransport(firebase_app).url == url
