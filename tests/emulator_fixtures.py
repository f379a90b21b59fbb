"""Fixtures for tests that send through the real firebase-admin SDK to the FCM emulator.

A test module uses them with `pytest_plugins = ["tests.emulator_fixtures"]`.
The emulator runs in a thread for the whole session (the SDK's blocking OAuth call would
deadlock an emulator on the test's own event loop); each test starts from a reset state
and gets its own firebase app, because an app's HTTP connections belong to one loop.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import firebase_admin
import pytest

from geopush.delivery.fcm import close_firebase_app, make_firebase_app
from geopush.emulator import EmulatorClient, EmulatorThread, write_service_account

PROJECT_ID = "geopush-test"
# Short enough that a `slow-` token can time the SDK out without slowing the suite.
SDK_TIMEOUT_S = 2.0


@pytest.fixture(scope="session")
def fcm_emulator_server() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def fcm_credentials_file(
    tmp_path_factory: pytest.TempPathFactory, fcm_emulator_server: EmulatorThread
) -> Path:
    path = tmp_path_factory.mktemp("fcm") / "service-account.json"
    return write_service_account(path, fcm_emulator_server.token_uri, PROJECT_ID)


@pytest.fixture
def fcm_emulator(fcm_emulator_server: EmulatorThread) -> EmulatorThread:
    """The session's emulator, with no messages, attempts or failure rules left over."""
    fcm_emulator_server.state.reset()
    return fcm_emulator_server


@pytest.fixture
async def fcm_control(fcm_emulator: EmulatorThread) -> AsyncIterator[EmulatorClient]:
    async with EmulatorClient(fcm_emulator.base_url) as client:
        yield client


@pytest.fixture
async def firebase_app(
    fcm_emulator: EmulatorThread, fcm_credentials_file: Path
) -> AsyncIterator[firebase_admin.App]:
    app = make_firebase_app(
        fcm_credentials_file,
        None,
        fcm_emulator.base_url,
        name=f"test-{uuid.uuid4().hex}",
        timeout_s=SDK_TIMEOUT_S,
    )
    yield app
    await close_firebase_app(app)
