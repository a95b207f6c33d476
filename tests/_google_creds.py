"""A real service account for the Vertex tests: an RSA key generated here, its JSON file
pointing at the fake's token endpoint, its public key registered with the fake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from salvo.testing import FakeProvider
from salvo.testing._google_oauth import google_auth_of


def service_account(fake: FakeProvider, tmp_path: Path, *, key_id: str = "k1",
                    register: bool = True) -> Path:  # fmt: skip
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    email = f"salvo-{key_id}@test-project.iam.gserviceaccount.com"
    info: dict[str, Any] = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": fake.token_url,
    }
    if register:
        numbers = key.public_key().public_numbers()
        google_auth_of(fake).add_service_account(key_id, email, numbers.n, numbers.e)
    path = tmp_path / f"sa-{key_id}.json"
    path.write_text(json.dumps(info))
    return path
