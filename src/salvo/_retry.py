"""When to retry, how long to wait, and the loop that retries a call within its deadline.

Retried: HTTP 408, 409, 429, 5xx (529 included) and transport failures (connection errors,
timeouts, a stream broken before its first chunk was handed out). Not retried: other 4xx, a
429 for an exhausted quota (``insufficient_quota``), and :class:`~salvo.ResponseDecodeError`
(a 2xx whose body is not the JSON promised: the provider did the work and most likely bills
it, and the same request tends to fail the same way). ``x-should-retry`` from the server
overrides the status rule either way.

Delay: ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date) when the server sent
one, capped at ``max_retry_after`` (60 s): a server that asks for longer gets its error raised at
once, with ``.retry_after`` set, rather than a retry that would meet another 429. Otherwise
``min(0.5 * 2**n, 8)`` seconds times a jitter of 75-100 %. A 429 with a delay pauses the whole
key (every call that shares provider, base URL and API key), not only the call that got it.

The whole call (waits for the limiters, every attempt, every sleep) runs under its deadline
(``timeout``); a retry whose sleep would end after the deadline is not attempted: the last
error is raised instead. Logging goes to the ``salvo`` logger: each retry at INFO, each give-up
after a retryable error at WARNING, other failures at DEBUG, with ``provider``, ``model``,
``status_code`` and ``attempt`` as record attributes; never an API key. Errors never echo the
call's API key either: :func:`redact_secret` masks it in their messages and bodies.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._deadline import deadline_at
from ._errors import (
    ProviderError,
    RateLimitError,
    ResponseDecodeError,
    SalvoError,
    TimeoutError,
    TransportError,
)
from ._limits import Limiter

if TYPE_CHECKING:
    from ._call import Slot

__all__ = [
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "CallStats",
    "RetryCall",
    "RetryPolicy",
    "call_with_retries",
    "mask_secret",
    "redact_secret",
]

log = logging.getLogger("salvo")
log.addHandler(logging.NullHandler())  # a library: the application decides what is shown

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 429})
MAX_RETRY_AFTER = 60.0
INITIAL_DELAY = 0.5
MAX_DELAY = 8.0


class RetryPolicy:
    """Decides whether an error is retried and after how long.

    ``wait=False`` keeps every decision but sleeps zero seconds and pauses no key (for tests).
    """

    __slots__ = ("_rng", "initial_delay", "max_delay", "max_retry_after", "wait")

    def __init__(
        self,
        *,
        wait: bool = True,
        initial_delay: float = INITIAL_DELAY,
        max_delay: float = MAX_DELAY,
        max_retry_after: float = MAX_RETRY_AFTER,
        seed: int | None = None,
    ) -> None:
        self.wait = wait
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self._rng = random.Random(seed)

    def is_retryable(self, exc: SalvoError) -> bool:
        if isinstance(exc, TransportError):
            return not isinstance(exc, ResponseDecodeError)
        if isinstance(exc, ProviderError):
            if exc.should_retry is not None:
                return exc.should_retry
            if exc.status_code == 429 and _is_quota(exc):
                return False
            return exc.status_code in RETRY_STATUSES or exc.status_code >= 500
        return False

    def delay(self, exc: SalvoError, retries_taken: int) -> float | None:
        """Seconds to wait before the next attempt, or None when not to retry at all."""
        if not self.is_retryable(exc):
            return None
        server = exc.retry_after if isinstance(exc, ProviderError) else None
        if server is not None and server > 0:
            if server > self.max_retry_after:
                return None
            return server if self.wait else 0.0
        if not self.wait:
            return 0.0
        base = min(self.initial_delay * 2.0**retries_taken, self.max_delay)
        return base * (1.0 - 0.25 * self._rng.random())

    def key_pause(self, exc: SalvoError) -> float:
        """How long a 429 pauses its whole key: the server's delay, capped; 0 for none."""
        if not self.wait or not isinstance(exc, RateLimitError):
            return 0.0
        server = exc.retry_after
        if server is None or server <= 0:
            return 0.0
        return min(server, self.max_retry_after)

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(wait={self.wait}, initial_delay={self.initial_delay}, "
            f"max_delay={self.max_delay}, max_retry_after={self.max_retry_after})"
        )


def _is_quota(exc: ProviderError) -> bool:
    body = exc.body
    if isinstance(body, dict):
        return "insufficient_quota" in (body.get("code"), body.get("type"))
    return False


class CallStats:
    """A Client's counters across calls (read through ``Client.statistics()``)."""

    __slots__ = ("errors", "requests", "retries")

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.errors: Counter[str] = Counter()


class RetryCall(Protocol):
    """What the loop needs to know about a call (a Client's ``Route``)."""

    @property
    def limiter(self) -> Limiter: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def secret(self) -> str | None: ...


async def call_with_retries(
    call: RetryCall,
    attempt: Callable[[], Coroutine[Any, Any, T]],
    tokens: int,
    deadline: float | None,
    *,
    policy: RetryPolicy,
    stats: CallStats,
    slot: Slot | None = None,
) -> T:
    """Run ``attempt`` (one request) under the key's limiter until it succeeds, fails for good,
    or ``deadline`` (loop time) passes; the deadline raises :class:`~salvo.TimeoutError`.

    Without ``slot`` the limiter is released when the attempt ends (charged the result's
    ``usage.total_tokens`` when it has one). With ``slot`` (a stream), the slot is armed
    before each attempt and a successful attempt keeps it: the stream gives it back when it
    closes; a failed one gives it back here (at most once: ``Slot.release`` is idempotent).
    One coroutine frame for the whole loop: every await of the request below resumes through
    each frame above it."""
    sending = False  # what the call was doing, for the timeout's message (built only then)
    delay = 0.0
    limiter = call.limiter
    retries = 0
    try:
        with deadline_at(deadline):
            while True:
                try:
                    await limiter.acquire(tokens, deadline=deadline)
                except RateLimitError as exc:  # the key is paused past our deadline
                    exc.provider, exc.model = call.provider, call.model
                    stats.errors["RateLimitError"] += 1
                    raise
                stats.requests += 1
                sending = True
                if slot is None:
                    try:
                        result = await attempt()
                    except SalvoError as exc:
                        limiter.release()
                        err = exc
                    except BaseException:
                        limiter.release()
                        raise
                    else:
                        used = _used_tokens(result) if limiter.counts_tokens else None
                        limiter.release(tokens, used)
                        return result
                else:
                    slot.held = True
                    try:
                        return await attempt()
                    except SalvoError as exc:
                        slot.release()
                        err = exc
                    except BaseException:
                        slot.release()
                        raise
                delay = _after_failure(call, err, retries, deadline, policy, stats)
                retries += 1
                sending = False
                await asyncio.sleep(delay)
    except builtins.TimeoutError as exc:
        if isinstance(exc, SalvoError) or deadline is None:
            raise
        if sending:
            phase = f"in attempt {retries + 1} of {call.max_retries + 1}"
        elif retries:
            phase = f"waiting {delay:.2f} s to start retry {retries}"
        else:
            phase = "waiting for the key's rate limits"
        t = call.timeout
        limit = "its deadline" if t is None else f"its {t:g} s deadline"
        err = TimeoutError(
            f"The call to {call.provider} model {call.model!r} did not finish within {limit} "
            f"(timeout={'None' if t is None else f'{t:g}'}, retries included); it was {phase}. "
            "Pass timeout=... to allow more time."
        )
        err.provider, err.model = call.provider, call.model
        stats.errors["TimeoutError"] += 1
        _log(logging.WARNING, call, err, 0, "giving up on %s model %r: %s", err)
        raise err from None


def _after_failure(
    call: RetryCall,
    err: SalvoError,
    retries: int,
    deadline: float | None,
    policy: RetryPolicy,
    stats: CallStats,
) -> float:
    """Account for a failed attempt; the seconds to wait before the next, or raise ``err``."""
    if call.secret:
        redact_secret(err, call.secret)
    stats.errors[type(err).__name__] += 1
    pause = policy.key_pause(err)
    if pause:
        call.limiter.pause(pause)
    n = retries + 1
    if not policy.is_retryable(err):
        _log(logging.DEBUG, call, err, n, "%s model %r failed: %s", err)
        raise err
    delay = policy.delay(err, retries)
    why = None
    if delay is None:
        asked = err.retry_after if isinstance(err, ProviderError) else None
        why = (
            f"the server asked to wait {asked:g} s, more than "
            f"max_retry_after={policy.max_retry_after:g} s"
        )
    elif retries >= call.max_retries:
        why = f"{n} attempt(s) (max_retries={call.max_retries})"
    elif deadline is not None and asyncio.get_running_loop().time() + delay >= deadline:
        why = f"{n} attempt(s): the next retry would start after the call's deadline"
    if why is not None or delay is None:
        err.add_note(f"salvo gave up after {why}.")
        _log(logging.WARNING, call, err, n, "giving up on %s model %r after %s: %s", why, err)
        raise err
    stats.retries += 1
    _log(
        logging.INFO,
        call,
        err,
        n,
        "retrying %s model %r in %.2f s after %s (retry %d of %d)",
        delay,
        _describe(err),
        n,
        call.max_retries,
    )
    return delay


def _used_tokens(result: Any) -> int | None:
    usage = getattr(result, "usage", None)
    total = getattr(usage, "total_tokens", None)
    return total if isinstance(total, int) and total > 0 else None


def _describe(err: SalvoError) -> str:
    if isinstance(err, ProviderError):
        return f"HTTP {err.status_code} ({type(err).__name__})"
    return type(err).__name__


def _log(level: int, call: RetryCall, err: SalvoError, attempt: int, msg: str, *args: Any) -> None:
    if not log.isEnabledFor(level):
        return
    shown = [_brief(a) if isinstance(a, BaseException) else a for a in args]
    log.log(
        level,
        msg,
        call.provider,
        call.model,
        *shown,
        extra={
            "provider": call.provider,
            "model": call.model,
            "status_code": getattr(err, "status_code", None),
            "attempt": attempt,
        },
    )


def _brief(err: BaseException) -> str:
    text = f"{_describe(err) if isinstance(err, SalvoError) else type(err).__name__}: {err}"
    return text if len(text) <= 400 else text[:399] + "…"


# -- keeping keys out of errors ---------------------------------------------------------------


def mask_secret(secret: str) -> str:
    """``sk-...abcd``: the first three and last four characters, as providers show keys."""
    return f"{secret[:3]}...{secret[-4:]}"


def redact_secret(err: BaseException, secret: str) -> None:
    """Replace ``secret`` wherever ``err``'s message, ``message`` and ``body`` echo it (a proxy
    or provider that repeats the request's key). Keys shorter than 8 characters are left
    alone: they would match ordinary text. A provider's own masked form (OpenAI's
    ``sk-...abcd``) is not the key and stays, so the user can tell which key was refused."""
    if len(secret) < 8:
        return
    mask = mask_secret(secret)
    if any(isinstance(a, str) and secret in a for a in err.args):
        err.args = tuple(_scrub(a, secret, mask) for a in err.args)
    for name in ("message", "body"):
        value = getattr(err, name, None)
        if value is not None:
            clean = _scrub(value, secret, mask)
            if clean is not value:
                setattr(err, name, clean)


def _scrub(value: Any, secret: str, mask: str) -> Any:
    if isinstance(value, str):
        return value.replace(secret, mask) if secret in value else value
    if isinstance(value, dict):
        items = {k: _scrub(v, secret, mask) for k, v in value.items()}
        changed = any(items[k] is not value[k] for k in value)
        return items if changed else value
    if isinstance(value, list):
        seq = [_scrub(v, secret, mask) for v in value]
        return seq if any(a is not b for a, b in zip(seq, value, strict=True)) else value
    return value
