"""A local stand-in for FCM HTTP v1 (`geopush fcm-emulator`), for development, demos, tests.

Serves the OAuth2 token endpoint a service account's `token_uri` points at and
`messages:send`, checking bearer tokens and message shapes as FCM does and answering
errors in FCM's exact JSON, so the real firebase-admin SDK raises its real exception
classes. Failure injection is per token: see `geopush.emulator.failures`.
"""

from geopush.emulator.client import EmulatorClient
from geopush.emulator.credentials import write_service_account
from geopush.emulator.server import create_app, run
from geopush.emulator.state import EmulatorState
from geopush.emulator.thread import EmulatorThread

__all__ = [
    "EmulatorClient",
    "EmulatorState",
    "EmulatorThread",
    "create_app",
    "run",
    "write_service_account",
]
