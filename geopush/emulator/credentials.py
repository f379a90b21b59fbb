"""Service-account JSON files whose `token_uri` points at the emulator.

The key is a real RSA key, because google-auth signs the JWT assertion with it before it
ever talks to the token endpoint: a fake key would fail inside the SDK, not at the emulator.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode()


def service_account_info(token_uri: str, project_id: str) -> dict[str, str]:
    """The fields of a Google service-account key file, with a fresh key."""
    client_email = f"geopush-emulator@{project_id}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": _private_key_pem(),
        "client_email": client_email,
        "client_id": str(secrets.randbelow(10**21)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": (
            f"https://www.googleapis.com/robot/v1/metadata/x509/{client_email}"
        ),
        "universe_domain": "googleapis.com",
    }


def write_service_account(path: str | os.PathLike[str], token_uri: str, project_id: str) -> Path:
    """Write a service-account JSON for `project_id` (mode 0600: it holds a private key)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(service_account_info(token_uri, project_id), indent=2) + "\n"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        handle.write(data)
    return target
