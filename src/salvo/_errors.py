"""salvo's one exception tree.

::

    SalvoError
    ├── ConfigError            bad model string, unknown provider, missing key (names the
    │                          variable), malformed messages; raised before any request is sent
    ├── TransportError
    │   ├── TimeoutError       also the builtin TimeoutError
    │   ├── ConnectionError    connect failed, reset, closed mid-body
    │   ├── StreamError        stream broken or ended without its terminator
    │   └── ResponseDecodeError  a 2xx body that is not the JSON the provider promised
    ├── ProviderError          .status_code .provider .model .body .retry_after
    │   ├── BadRequestError (400, 422)
    │   ├── AuthenticationError (401)
    │   ├── PermissionDeniedError (403)
    │   ├── NotFoundError (404)
    │   ├── ConflictError (409)
    │   ├── RateLimitError (429)
    │   └── ServerError (5xx, 529)
    ├── AllModelsFailedError   also an ExceptionGroup holding every contender's error
    └── BudgetExceededError    the call's worst-case cost did not fit the budget; never sent

aiohttp's exceptions are translated into this tree in exactly one place,
:func:`salvo._http.translate_transport_error`.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

__all__ = [
    "AllModelsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ConfigError",
    "ConflictError",
    "ConnectionError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "ResponseDecodeError",
    "SalvoError",
    "ServerError",
    "StreamError",
    "TimeoutError",
    "TransportError",
    "error_for_status",
]


class SalvoError(Exception):
    """Root of every error salvo raises on purpose."""


class ConfigError(SalvoError, ValueError):
    """The call cannot be made as written; nothing was sent."""


class TransportError(SalvoError):
    """The request or response did not make it across the network intact."""

    provider: str | None = None
    model: str | None = None


class TimeoutError(TransportError, builtins.TimeoutError):
    """A deadline passed: the whole call's, the first byte's, or the idle gap in a stream."""


class ConnectionError(TransportError):
    """Could not connect, or the connection broke before the response was complete."""


class StreamError(TransportError):
    """A stream broke, carried an error event, or ended without its terminator."""


class ResponseDecodeError(TransportError):
    """A successful status came with a body that is not the JSON the provider promised."""


class ProviderError(SalvoError):
    """The provider answered with an error status.

    ``body`` is the decoded error body (the ``error`` object when there is one) or the raw
    text when it was not JSON; ``retry_after`` is the server's requested delay in seconds,
    when it gave one.
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        provider: str,
        model: str,
        body: Any = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.provider = provider
        self.model = model
        self.body = body
        self.retry_after = retry_after
        self.should_retry = should_retry

    def __reduce__(self) -> Any:
        return (_rebuild_provider_error, (type(self), self.message, self.__dict__))


def _rebuild_provider_error(cls: type[ProviderError], message: str, state: dict[str, Any]) -> Any:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class BadRequestError(ProviderError):
    """400 or 422: the provider rejected the request's content."""


class AuthenticationError(ProviderError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(ProviderError):
    """403: the key may not use this model or resource."""


class NotFoundError(ProviderError):
    """404: unknown model, deployment or resource."""


class ConflictError(ProviderError):
    """409: a conflicting request; retried."""


class RateLimitError(ProviderError):
    """429: throttled (retried), or out of quota."""


class ServerError(ProviderError):
    """5xx or 529 (overloaded): the provider failed; retried."""


_BY_STATUS: dict[int, type[ProviderError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_for_status(status: int) -> type[ProviderError]:
    """The ProviderError subclass for an HTTP status."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    if status >= 500:
        return ServerError
    return ProviderError


class AllModelsFailedError(SalvoError, ExceptionGroup[Exception]):
    """Every contender of a race failed; ``exceptions`` holds each one's error, in models order."""

    models: tuple[str, ...]

    def __new__(
        cls, message: str, exceptions: Sequence[Exception], models: Sequence[str] = ()
    ) -> AllModelsFailedError:
        self = super().__new__(cls, message, list(exceptions))
        self.models = tuple(models)
        return self

    def __init__(
        self, message: str, exceptions: Sequence[Exception], models: Sequence[str] = ()
    ) -> None:
        super().__init__(message, list(exceptions))

    def derive(self, excs: Sequence[Exception]) -> AllModelsFailedError:  # type: ignore[override]
        return AllModelsFailedError(self.message, excs, self.models)


class BudgetExceededError(SalvoError):
    """A call's worst-case cost (its prompt estimate plus its output cap, at the deployment's
    price) could not be reserved from a budget (``Client(budget_usd=...)`` or an operation's
    ``max_cost_usd``), so it was never sent. ``needed_usd`` is what it asked to reserve."""

    needed_usd: float = 0.0
    model: str | None = None
