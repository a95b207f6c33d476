"""Google service-account access tokens for Vertex AI and Cloud Storage (protocols.md 16.3-16.4).

google-auth (the optional extra ``salvo-llm[vertex]``, imported on first use, never at
``import salvo``) loads the service account's key and signs the JWT assertion (RS256, ``kid``
the key id, ``aud`` Google's token URL, scope ``cloud-platform``). Its own refresh is blocking,
so the exchange at the account's ``token_uri`` is made here, on the caller's aiohttp session:
``POST`` the JWT-bearer grant, read ``access_token`` and ``expires_in``. Transport errors go
through salvo's one translator, a cancelled exchange closes its response, 5xx answers are tried
three times, and a 4xx answer becomes an AuthenticationError with Google's ``error:
error_description`` (never the assertion or a token).

One :class:`ServiceAccountAuth` per account (``credentials_auth`` keeps them): a token is reused
until 225 s before it expires (google-auth's own margin), then refreshed by one caller while
the others wait for that refresh (one lock per event loop). ``invalidate`` drops a token the
server refused, so the next attempt gets a fresh one. Tokens and keys never appear in a repr,
a log line or an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ._errors import AuthenticationError, ConfigError, ServerError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["CLOUD_PLATFORM", "ServiceAccountAuth", "credentials_auth", "load_credentials"]

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Refresh this many seconds before the token expires (google-auth's REFRESH_THRESHOLD).
REFRESH_MARGIN = 225.0
_EXTRA = (
    "Vertex AI needs google-auth to sign its service-account tokens: install the extra with "
    "pip install 'salvo-llm[vertex]'."
)
_AUTHS: dict[tuple[str, str, str], ServiceAccountAuth] = {}


def _google() -> Any:
    try:
        from google.auth import crypt, jwt
    except ImportError:
        raise ConfigError(_EXTRA) from None
    return crypt, jwt


def load_credentials(source: Any) -> dict[str, Any]:
    """A service-account JSON as a dict, from a mapping, a JSON string or a file path."""
    if isinstance(source, Mapping):
        info = dict(source)
    elif isinstance(source, str) and source.lstrip().startswith("{"):
        try:
            info = json.loads(source)
        except ValueError:
            raise ConfigError("vertex_credentials holds text that is not valid JSON.") from None
    elif isinstance(source, str | os.PathLike):
        try:
            with open(source, encoding="utf-8") as f:
                info = json.load(f)
        except OSError as exc:
            raise ConfigError(
                f"Cannot read the service-account file {os.fspath(source)!r}: {exc.strerror}."
            ) from None
        except ValueError:
            raise ConfigError(
                f"The service-account file {os.fspath(source)!r} is not valid JSON."
            ) from None
    else:
        raise ConfigError("vertex_credentials must be a file path, a JSON string or a mapping.")
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(
            "Vertex AI takes service-account credentials (a JSON key with type "
            "'service_account'); user and external-account credentials are not supported."
        )
    missing = [k for k in ("client_email", "private_key") if not info.get(k)]
    if missing:
        raise ConfigError(f"The service-account JSON lacks {', '.join(missing)}.")
    return info


def credentials_auth(info: Mapping[str, Any]) -> ServiceAccountAuth:
    """The shared token source of a service account (one per account, key and token URI)."""
    digest = hashlib.sha256(str(info["private_key"]).encode()).hexdigest()
    key = (str(info["client_email"]), digest, str(info.get("token_uri") or GOOGLE_TOKEN_URI))
    auth = _AUTHS.get(key)
    if auth is None:
        auth = _AUTHS[key] = ServiceAccountAuth(info)
    return auth


class ServiceAccountAuth:
    """Access tokens of one service account, shared by every call that uses it."""

    def __init__(self, info: Mapping[str, Any], *, scopes: tuple[str, ...] = (CLOUD_PLATFORM,)):
        crypt, _ = _google()
        try:
            self._signer = crypt.RSASigner.from_service_account_info(dict(info))
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                "The service-account private_key cannot be loaded (expected a PEM RSA key)."
            ) from None
        self.email = str(info["client_email"])
        self.key_id = info.get("private_key_id")
        self.token_uri = str(info.get("token_uri") or GOOGLE_TOKEN_URI)
        self.scopes = scopes
        self._token: str | None = None
        self._expiry = 0.0
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"<ServiceAccountAuth {self.email} token_uri={self.token_uri}>"

    def _assertion(self) -> str:
        _, jwt = _google()
        now = int(time.time())
        claims = {"iss": self.email, "aud": GOOGLE_TOKEN_URI, "iat": now, "exp": now + 3600,
                  "scope": " ".join(self.scopes)}  # fmt: skip
        header = {"kid": self.key_id} if self.key_id else None
        token: bytes = jwt.encode(self._signer, claims, header=header)
        return token.decode()

    def _fresh(self) -> str | None:
        if self._token is not None and time.time() < self._expiry - REFRESH_MARGIN:
            return self._token
        return None

    async def __call__(self, session: aiohttp.ClientSession) -> dict[str, str]:
        """``{"authorization": "Bearer <token>"}``, refreshing the token first when due."""
        token = self._fresh()
        if token is None:
            loop = asyncio.get_running_loop()
            lock = self._locks.get(loop)
            if lock is None:
                lock = self._locks[loop] = asyncio.Lock()
            async with lock:
                token = self._fresh() or await self._refresh(session)
        return {"authorization": f"Bearer {token}"}

    def invalidate(self, headers: Mapping[str, str]) -> None:
        """Forget the token in ``headers`` (the server refused it); a newer one is kept."""
        if self._token is not None and headers.get("authorization") == f"Bearer {self._token}":
            self._token = None

    async def _refresh(self, session: aiohttp.ClientSession) -> str:
        form = urlencode({"grant_type": _JWT_GRANT, "assertion": self._assertion()})
        headers = {"content-type": "application/x-www-form-urlencoded"}
        for attempt in range(3):
            status, body = await self._post(session, form, headers)
            if status < 500:
                break
            if attempt < 2:
                await asyncio.sleep(0.2 * 2**attempt)
        data: Any = None
        try:
            data = json.loads(body)
        except ValueError:
            pass
        if status >= 400 or not isinstance(data, dict):
            raise self._error(status, data, body)
        token, expires = data.get("access_token"), data.get("expires_in", 3600)
        try:
            seconds = float(expires)
        except (TypeError, ValueError):
            seconds = -1.0
        if not isinstance(token, str) or not token or seconds <= 0:
            raise self._error(status, {"error": "invalid_response", "error_description":
                                       "no access_token or expires_in"}, body)  # fmt: skip
        self._token, self._expiry = token, time.time() + seconds
        self.refreshes += 1
        return token

    async def _post(
        self, session: aiohttp.ClientSession, form: str, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        from ._http import is_transport_error, translate_transport_error

        resp = None
        try:
            resp = await session.post(self.token_uri, data=form, headers=headers)
            return resp.status, await resp.read()
        except BaseException as exc:
            if resp is not None:
                resp.close()
            if isinstance(exc, Exception) and is_transport_error(exc):
                raise translate_transport_error(
                    exc, provider="vertex_ai", model="", url=self.token_uri
                ) from None
            raise

    def _error(self, status: int, data: Any, body: bytes) -> Exception:
        if isinstance(data, dict) and data.get("error"):
            detail = f"{data.get('error')}: {data.get('error_description') or ''}".strip(": ")
        else:
            detail = f"an answer that is not a token response ({len(body)} bytes)"
        text = (
            f"The token endpoint {self.token_uri} refused the service account {self.email} "
            f"(HTTP {status}): {detail}. Check vertex_credentials / "
            "GOOGLE_APPLICATION_CREDENTIALS."
        )
        cls = AuthenticationError if 400 <= status < 500 else ServerError
        return cls(text, status_code=status if status >= 400 else 502, provider="vertex_ai",
                   model="")  # fmt: skip
