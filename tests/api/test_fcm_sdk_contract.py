"""What geopush relies on in firebase-admin's private parts. If one of these fails after an
SDK upgrade, fix `geopush/delivery/fcm.py` before anything else: messages would otherwise
go to Google instead of the configured endpoint, or be retried behind geopush's back.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import firebase_admin
import pytest
from firebase_admin import messaging

from geopush.delivery.fcm import (
    DEFAULT_ENDPOINT,
    SendAction,
    build_message,
    classify,
    close_firebase_app,
    configure_messaging,
    make_firebase_app,
)

pytest_plugins = ["tests.emulator_fixtures"]

SDK_MESSAGING_SERVICE = messaging._MessagingService


def message(token: str) -> messaging.Message:
    return build_message(
        token=token,
        title="t",
        body="b",
        delivery_id="d",
        offer_id="o",
        store_id=None,
        geofence_id=None,
        deeplink=None,
        ttl_s=60,
        now=datetime.now(UTC),
    )


def test_default_url_is_the_one_geopush_rebuilds():
    # geopush always sets the URL itself; with the default endpoint it must equal the SDK's.
    assert SDK_MESSAGING_SERVICE.FCM_URL == DEFAULT_ENDPOINT + "/v1/projects/{0}/messages:send"


def test_fcm_error_codes_still_map_to_the_classes_geopush_classifies():
    types = SDK_MESSAGING_SERVICE.FCM_ERROR_TYPES
    assert types["UNREGISTERED"] is messaging.UnregisteredError
    assert types["SENDER_ID_MISMATCH"] is messaging.SenderIdMismatchError
    assert types["THIRD_PARTY_AUTH_ERROR"] is messaging.ThirdPartyAuthError
    assert types["QUOTA_EXCEEDED"] is messaging.QuotaExceededError


async def test_app_points_at_endpoint_with_retries_off(fcm_emulator, fcm_credentials_file):
    app = make_firebase_app(
        fcm_credentials_file,
        "other-project",
        fcm_emulator.base_url + "/",
        "contract-url",
        timeout_s=3,
    )
    try:
        service = messaging._get_messaging_service(app)
        assert service._fcm_url == (
            f"{fcm_emulator.base_url}/v1/projects/other-project/messages:send"
        )
        assert service._async_client.timeout == 3
        for transport in service._async_client.async_client._mounts.values():
            assert transport._retry.retries_left == 0
    finally:
        await close_firebase_app(app)


async def test_project_defaults_to_the_service_account_file(firebase_app, fcm_control):
    batch = await messaging.send_each_async([message("contract-1")], app=firebase_app)

    [record] = await fcm_control.messages("contract-1")
    assert record["project_id"] == firebase_app.project_id == "geopush-test"
    assert classify(batch.responses[0]).message_name == record["name"]


@pytest.mark.parametrize("token", ["fail-unavailable-1-c", "fail-internal-1-c"])
async def test_sdk_does_not_retry_5xx_itself(firebase_app, fcm_control, token):
    # The SDK's default would retry 500 and 503 up to 4 times and succeed here.
    response = (await messaging.send_each_async([message(token)], app=firebase_app)).responses[0]

    assert classify(response).action is SendAction.RETRY
    assert len(await fcm_control.attempts(token)) == 1


def test_token_reaches_the_wire_without_deprecation_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built = message("device-token")
    assert SDK_MESSAGING_SERVICE.encode_message(built)["token"] == "device-token"


async def test_missing_private_attribute_fails_loudly_naming_the_version(
    fcm_emulator, fcm_credentials_file
):
    app = make_firebase_app(fcm_credentials_file, None, fcm_emulator.base_url, "contract-gone")
    try:
        del messaging._get_messaging_service(app)._fcm_url  # what an SDK refactor would do
        with pytest.raises(RuntimeError, match=firebase_admin.__version__):
            configure_messaging(app, fcm_emulator.base_url, 1.0)
    finally:
        await close_firebase_app(app)
