"""Google's OAuth token endpoint for service accounts (protocols.md 16.3-16.4), for the fake.

``POST /token`` (form: ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``,
``assertion=<JWT>``) checks the assertion the way Google does: an RS256 signature that verifies
against the public key registered for the header's ``kid`` (RSASSA-PKCS1-v1_5 over SHA-256,
checked here with plain integer arithmetic, so the fake needs no crypto package), ``iss`` the
account's email, ``aud`` Google's token URL (or this endpoint's own URL), ``exp`` in the future
and at most an hour after ``iat``, and a ``scope``. A good assertion gets ``{"access_token",
"expires_in", "token_type": "Bearer"}``; a bad one 400 ``invalid_grant`` with Google's texts.

`GoogleAuth` (``google_auth_of(fake)``) holds the registered accounts (`add_service_account`
takes the RSA public numbers ``n`` and ``e``), the tokens it issued with their expiry
(`expire_tokens` makes every one of them stale at once), ``token_lifetime``, ``latency``
(seconds before each answer), and
``fail_next``: scripted answers ``(status, body bytes)`` for the next token requests, to test
a token endpoint that misbehaves. `check_bearer` is what the Vertex and Cloud Storage routes
use: 401 ``UNAUTHENTICATED`` for a missing, unknown or expired token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import msgspec
from aiohttp import web

from ._faults import encode, send_json
from ._state import STATE_KEY, Exchange, FakeState, route

__all__ = ["GOOGLE_TOKEN_URL", "GoogleAuth", "check_bearer", "google_auth_of", "install"]

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_SHA256_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
_DECODE = msgspec.json.Decoder()


@dataclass(slots=True)
class _Account:
    email: str
    n: int
    e: int


@dataclass(slots=True)
class GoogleAuth:
    """The fake's service accounts and the access tokens it issued."""

    accounts: dict[str, _Account] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (time.time())
    token_lifetime: int = 3599
    fail_next: list[tuple[int, bytes]] = field(default_factory=list)
    issued: int = 0
    latency: float = 0.0  # seconds before the token endpoint answers

    def add_service_account(self, key_id: str, email: str, n: int, e: int = 65537) -> None:
        """Register the public key (RSA ``n``, ``e``) that signs ``email``'s assertions."""
        self.accounts[key_id] = _Account(email, n, e)

    def expire_tokens(self) -> None:
        """Make every token issued so far stale (requests carrying one get 401)."""
        for token in self.tokens:
            self.tokens[token] = 0.0

    def valid(self, token: str) -> bool:
        expiry = self.tokens.get(token)
        return expiry is not None and expiry > time.time()

    def clear(self) -> None:
        self.accounts.clear()
        self.tokens.clear()
        self.fail_next.clear()
        self.token_lifetime = 3599
        self.issued = 0
        self.latency = 0.0


def google_auth_of(owner: Any) -> GoogleAuth:
    """The GoogleAuth of a FakeProvider (or of its FakeState)."""
    state: FakeState = getattr(owner, "state", owner)
    return state.ext_store("google_auth", GoogleAuth, lambda _: GoogleAuth())


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rs256_ok(signing_input: bytes, signature: bytes, n: int, e: int) -> bool:
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    em = pow(s, e, n).to_bytes(k, "big")
    t = _SHA256_INFO + hashlib.sha256(signing_input).digest()
    return em == b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


def verify_assertion(auth: GoogleAuth, assertion: str, own_url: str) -> str | None:
    """None when ``assertion`` is a good JWT-bearer grant, else Google's error text."""
    try:
        head_b64, claims_b64, sig_b64 = assertion.split(".")
        header = _DECODE.decode(_b64url(head_b64))
        claims = _DECODE.decode(_b64url(claims_b64))
        signature = _b64url(sig_b64)
    except (ValueError, binascii.Error, msgspec.DecodeError):
        return "Invalid JWT: the assertion is not a signed JWT."
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return "Invalid JWT: the assertion is not a signed JWT."
    if header.get("alg") != "RS256":
        return "Invalid JWT: the signing algorithm must be RS256."
    account = auth.accounts.get(str(header.get("kid")))
    if account is None or not _rs256_ok(
        f"{head_b64}.{claims_b64}".encode(), signature, account.n, account.e
    ):
        return "Invalid JWT Signature."
    if claims.get("iss") != account.email:
        return "Invalid JWT: the issuer is not the key's service account."
    if claims.get("aud") not in (GOOGLE_TOKEN_URL, own_url):
        return "Invalid JWT: the audience must be the token endpoint."
    now = time.time()
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        return "Invalid JWT: iat and exp are required."
    if exp <= now or iat > now + 60 or exp - iat > 3600:
        return (
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
            "timeframe. Check your iat and exp values in the JWT claim."
        )
    if not claims.get("scope"):
        return "Invalid JWT: a scope is required."
    return None


async def _form_error(ex: Exchange, status: int, error: str, text: str) -> web.StreamResponse:
    body = encode({"error": error, "error_description": text})
    return await send_json(ex, status, body, {}, scripted=False)


@route
async def token(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    auth = google_auth_of(state)
    raw = await request.read()
    ex = state.begin(request, provider="google_oauth", model="", stream=False, body=None)
    if auth.latency:
        await asyncio.sleep(auth.latency)
    if auth.fail_next:
        status, body = auth.fail_next.pop(0)
        return await send_json(ex, status, body, {}, scripted=False)
    form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    if form.get("grant_type") != JWT_GRANT:
        return await _form_error(ex, 400, "unsupported_grant_type", "Invalid grant_type.")
    problem = verify_assertion(auth, form.get("assertion", ""), str(request.url))
    if problem is not None:
        return await _form_error(ex, 400, "invalid_grant", problem)
    access = f"ya29.fake-{secrets.token_hex(16)}"
    auth.tokens[access] = time.time() + auth.token_lifetime
    auth.issued += 1
    answer = {"access_token": access, "expires_in": auth.token_lifetime, "token_type": "Bearer"}
    return await send_json(ex, 200, encode(answer), {}, scripted=False)


def check_bearer(request: web.Request) -> str | None:
    """None when the request carries a live access token, else the 401 message."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return (
            "Request is missing required authentication credential. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential."
        )
    if not google_auth_of(request.app[STATE_KEY]).valid(value.strip()):
        return (
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential."
        )
    return None


def install(app: web.Application) -> None:
    google_auth_of(app[STATE_KEY])
    app.router.add_post("/token", token)
