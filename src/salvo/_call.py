"""One attempt on the wire: the resolved :class:`Route`, sending, reading the body, opening
a stream. :meth:`salvo.Client.send` runs these under the limiter and the retry loop.

Every await here closes its response when it fails or is cancelled (``close()``: the
connection is dropped, never returned to the pool half-read); aiohttp does the same while
waiting for the status line. An error status is read (at most a few KB), turned into the
adapter's :class:`~salvo.ProviderError` and raised here.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._body import read_capped, read_error_body, trim_error
from ._errors import SalvoError, TimeoutError
from ._http import is_transport_error, translate_transport_error
from ._response import Response, ResponseStream

if TYPE_CHECKING:
    import aiohttp

    from ._limits import Limiter
    from ._models import Deployment
    from .providers import HTTPRequest

__all__ = ["CallOptions", "Route", "Slot", "fetch", "first_byte_error", "open_stream", "send"]


class Route:
    """Where and how one call goes: the resolved deployment (``dep``), its key's ``limiter``,
    and the call's ``timeout``, ``max_retries``, ``first_byte_timeout`` and
    ``stream_idle_timeout``. Made by :meth:`salvo.Client.route`; pass it to
    :meth:`salvo.Client.send`."""

    __slots__ = (
        "dep",
        "first_byte_timeout",
        "limiter",
        "max_retries",
        "stream_idle_timeout",
        "timeout",
    )

    def __init__(
        self,
        dep: Deployment,
        timeout: float | None,
        max_retries: int,
        first_byte_timeout: float | None,
        stream_idle_timeout: float | None,
        limiter: Limiter,
    ) -> None:
        self.dep = dep
        self.timeout = timeout
        self.max_retries = max_retries
        self.first_byte_timeout = first_byte_timeout
        self.stream_idle_timeout = stream_idle_timeout
        self.limiter = limiter

    @property
    def provider(self) -> str:
        return self.dep.info.name

    @property
    def model(self) -> str:
        """The provider's name of the model (what errors and logs show)."""
        return self.dep.endpoint.model

    @property
    def secret(self) -> str | None:
        """The API key, so that errors can be scrubbed of it."""
        return self.dep.endpoint.api_key

    def __repr__(self) -> str:
        return f"<salvo.Route {self.provider}/{self.model} timeout={self.timeout}>"


#: The name this class had before :meth:`salvo.Client.route` (kept for callers of ``options``).
CallOptions = Route


class Slot:
    """A limiter slot that an open stream holds; given back exactly once."""

    __slots__ = ("held", "limiter", "tokens")

    def __init__(self, limiter: Limiter, tokens: int) -> None:
        self.limiter = limiter
        self.tokens = tokens
        self.held = False

    def release(self, used: int | None = None) -> None:
        if self.held:
            self.held = False
            self.limiter.release(self.tokens, used)


async def send(
    session: aiohttp.ClientSession, route: Route, req: HTTPRequest, *, fresh_auth: bool = False
) -> aiohttp.ClientResponse:
    """Send and wait for the status line; an error status is read and raised here. A
    callable ``req.body`` is called for a fresh body; a deployment's ``auth`` hook adds its
    headers (both on every attempt). A 401 on a request with ``auth`` headers drops them
    (``auth.invalidate``) and sends once more with fresh ones."""
    dep = route.dep
    ep = dep.endpoint
    headers = req.headers
    auth = dep.auth
    if auth is not None:
        added = await auth(session)
        headers = {**headers, **added}
    body: Any = req.body
    if callable(body):
        body = body()
    first_byte = None
    try:
        if route.first_byte_timeout is None:
            resp = await session.request(req.method, req.url, headers=headers, data=body)
        else:
            first_byte = asyncio.timeout(route.first_byte_timeout)
            async with first_byte:
                resp = await session.request(req.method, req.url, headers=headers, data=body)
    except Exception as exc:
        if not is_transport_error(exc):
            raise
        if first_byte is not None and first_byte.expired():
            raise first_byte_error(route) from None
        raise translate_transport_error(
            exc, provider=ep.provider, model=ep.model, url=req.url
        ) from None
    status = resp.status
    if status >= 400:
        raw = await read_error_body(resp, provider=ep.provider, model=ep.model)
        invalidate = getattr(auth, "invalidate", None)
        if status == 401 and invalidate is not None and not fresh_auth:
            invalidate(added)  # the token was refused (revoked, or expired early)
            return await send(session, route, req, fresh_auth=True)
        err = dep.adapter.parse_error(ep, status, resp.headers, raw)
        trim_error(err)
        raise err
    return resp


async def fetch(
    session: aiohttp.ClientSession,
    route: Route,
    req: HTTPRequest,
    limit: int,
    accept: Callable[[Response], Awaitable[Any]] | None,
) -> Any:
    """One attempt: send, read the whole body (at most ``limit`` bytes), then ``accept`` it.
    ``first_byte_timeout`` covers the status line and the first bytes of the body (a server
    can send headers and then stall)."""
    fbt = route.first_byte_timeout
    ep = route.dep.endpoint
    if fbt is None:
        resp = await send(session, route, req)
        content = await read_capped(resp, limit, provider=ep.provider, model=ep.model, url=req.url)
    else:
        first_by = asyncio.get_running_loop().time() + fbt
        resp = await send(session, route, req)
        first_byte = asyncio.timeout_at(first_by)
        try:
            async with first_byte:
                head = await resp.content.readany()
        except BaseException as exc:
            resp.close()
            if isinstance(exc, builtins.TimeoutError) and first_byte.expired():
                raise first_byte_error(route) from None
            if is_transport_error(exc):
                raise translate_transport_error(
                    exc, provider=ep.provider, model=ep.model, url=req.url
                ) from None
            raise
        content = await read_capped(
            resp, limit, provider=ep.provider, model=ep.model, url=req.url, head=head
        )
    response = Response(resp.status, resp.headers, content, req.url)
    if accept is None:
        return response
    return await accept(response)


async def open_stream(
    session: aiohttp.ClientSession,
    route: Route,
    req: HTTPRequest,
    slot: Slot,
    deadline: float | None,
    accept: Callable[[ResponseStream], Awaitable[Any]] | None,
) -> Any:
    """One attempt: send, wrap the open response in a ResponseStream that gives ``slot`` back
    when it closes, then ``accept`` it (the stream is closed if ``accept`` fails).
    ``first_byte_timeout`` covers the status line and the first bytes of the body."""
    fbt = route.first_byte_timeout
    first_by = None if fbt is None else asyncio.get_running_loop().time() + fbt
    resp = await send(session, route, req)
    ep = route.dep.endpoint
    stream = ResponseStream(
        resp,
        provider=ep.provider,
        model=ep.model,
        url=req.url,
        idle_timeout=route.stream_idle_timeout,
        deadline=deadline,
        timeout=route.timeout,
        on_close=slot.release,
    )
    if first_by is not None:  # the first bytes of the body, as for a whole answer
        first_byte = asyncio.timeout_at(first_by)
        try:
            async with first_byte:
                stream.unread(await stream.read())
        except builtins.TimeoutError as exc:
            if isinstance(exc, SalvoError) or not first_byte.expired():
                raise
            raise first_byte_error(route) from None
    if accept is None:
        return stream
    try:
        return await accept(stream)
    except BaseException:
        stream.abort()
        raise


def first_byte_error(route: Route) -> TimeoutError:
    err = TimeoutError(
        f"{route.provider} sent nothing for model {route.model!r} within "
        f"first_byte_timeout={route.first_byte_timeout:g} s; salvo retries this. Raise "
        "first_byte_timeout=... if the model is slow to start answering."
    )
    err.provider, err.model = route.provider, route.model
    return err
