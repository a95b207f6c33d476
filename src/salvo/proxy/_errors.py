"""Errors as OpenAI's JSON shape, ``{"error": {"message", "type", "param", "code"}}``.

Every failure the proxy reports goes through :func:`from_exception`, which maps salvo's error
tree onto HTTP statuses (ProviderError -> its own status, TimeoutError -> 504, other transport
errors -> 502, ConfigError -> 400) and scrubs the message: configured keys, bearer tokens,
``key=`` query parameters and key-like strings are replaced with ``[redacted]``; transport
errors get a message of the proxy's own (theirs name the upstream URL). Anything unexpected is
a 500 whose message says only that; the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

import msgspec
from aiohttp import web

from .._errors import (
    AllModelsFailedError,
    ConfigError,
    ProviderError,
    ResponseDecodeError,
    SalvoError,
    StreamError,
    TimeoutError,
    TransportError,
)

__all__ = [
    "JSON_HEADERS",
    "ProxyError",
    "Redactor",
    "error_body",
    "error_response",
    "from_exception",
    "model_not_found",
]

log = logging.getLogger("salvo.proxy")

_ENCODE = msgspec.json.Encoder().encode
JSON_HEADERS = {"Content-Type": "application/json"}

_KEYLIKE = re.compile(r"\b(?:sk|pk|rk|key|api|ak)[-_][A-Za-z0-9_\-]{12,}")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")
_QUERY_SECRET = re.compile(
    r"(?i)\b((?:api[_-]?)?key|token|secret|sig|signature|password)=[^&\s'\"]+"
)

_TYPE_BY_STATUS = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class ProxyError(Exception):
    """A failure to report with this status, in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _default_type(status)
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


def _default_type(status: int) -> str:
    kind = _TYPE_BY_STATUS.get(status)
    if kind is not None:
        return kind
    return "server_error" if status >= 500 else "invalid_request_error"


def model_not_found(model: str) -> ProxyError:
    return ProxyError(
        404,
        f"The model {model!r} does not exist or is not served by this proxy; "
        "GET /v1/models lists the models it serves.",
        param="model",
        code="model_not_found",
    )


class Redactor:
    """Scrubs secrets out of text that may reach a client or a log."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        found = {s for s in secrets if isinstance(s, str) and len(s) >= 4}
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        text = _BEARER.sub("Bearer [redacted]", text)
        text = _QUERY_SECRET.sub(r"\1=[redacted]", text)
        return _KEYLIKE.sub("[redacted]", text)


def _str_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value)
    return None


def _from_provider(exc: ProviderError, redact: Redactor) -> ProxyError:
    status = exc.status_code if 400 <= exc.status_code <= 599 else 502
    body = exc.body if isinstance(exc.body, dict) else {}
    kind, param, code = (_str_or_none(body.get(k)) for k in ("type", "param", "code"))
    return ProxyError(  # every field the upstream wrote may echo a secret
        status,
        redact(exc.message),
        type=redact(kind) if kind else _default_type(status),
        param=redact(param) if param else None,
        code=redact(code) if code else None,
    )


def _from_transport(exc: TransportError) -> ProxyError:
    about = f" for model {exc.model!r}" if exc.model else ""
    if isinstance(exc, TimeoutError):
        return ProxyError(
            504,
            f"The upstream provider did not answer in time{about}.",
            type="timeout_error",
            code="upstream_timeout",
        )
    if isinstance(exc, StreamError):
        msg, code = f"The upstream stream{about} broke or carried an error.", "upstream_stream"
    elif isinstance(exc, ResponseDecodeError):
        msg, code = f"The upstream provider sent an unreadable response{about}.", "upstream_bad"
    else:
        msg, code = f"The upstream provider could not be reached{about}.", "upstream_unreachable"
    return ProxyError(502, msg, type="server_error", code=code)


def _from_group(exc: AllModelsFailedError, redact: Redactor) -> ProxyError:
    parts = [from_exception(e, redact) for e in exc.exceptions]
    statuses = {p.status for p in parts}
    status = statuses.pop() if len(statuses) == 1 else 502
    names = exc.models or tuple(str(i) for i in range(len(parts)))
    summary = "; ".join(f"{n}: {p.message}" for n, p in zip(names, parts, strict=False))
    return ProxyError(
        status,
        f"All {len(parts)} models failed. {summary}",
        type=_default_type(status),
        code="all_models_failed",
    )


def from_exception(exc: BaseException, redact: Redactor) -> ProxyError:
    """The ProxyError to report for ``exc`` (logging what the client must not see)."""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, AllModelsFailedError):
        return _from_group(exc, redact)
    if isinstance(exc, ProviderError):
        return _from_provider(exc, redact)
    if isinstance(exc, TransportError):
        log.warning("upstream failure: %s", redact(str(exc)))
        return _from_transport(exc)
    if isinstance(exc, ConfigError):
        return ProxyError(400, redact(str(exc)))
    if isinstance(exc, SalvoError):
        return ProxyError(500, "The proxy could not complete the request.", code="salvo_error")
    if isinstance(exc, web.HTTPException):
        return _from_http(exc)
    log.error("unexpected error in the proxy", exc_info=exc)
    return ProxyError(500, "The proxy hit an internal error; see its log.", code="internal_error")


def _from_http(exc: web.HTTPException) -> ProxyError:
    status = exc.status
    if status == 413:
        return ProxyError(
            413,
            f"The request body is too large for this proxy. {exc.text or ''}".strip(),
            code="request_too_large",
        )
    if status == 404:
        return ProxyError(404, "Unknown URL: this proxy serves /v1/... and /health.",
                          code="unknown_url")  # fmt: skip
    if status == 405:
        return ProxyError(405, "This method is not allowed on this URL.", code="method_not_allowed")
    return ProxyError(status, exc.reason or "The request failed.")


def error_body(err: ProxyError) -> bytes:
    return _ENCODE({"error": err.body()})


def error_response(err: ProxyError) -> web.Response:
    return web.Response(status=err.status, body=error_body(err), headers=JSON_HEADERS)
