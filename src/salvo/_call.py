"""One request on the wire: the resolved per-call options, sending, and reading the body.

Every await here closes its response when it fails or is cancelled (``close()``: the
connection is dropped, never returned to the pool half-read); aiohttp does the same while
waiting for the status line.
"""

from __future__ import annotations

import asyncio
import builtins
from typing import TYPE_CHECKING

from ._errors import TimeoutError
from ._http import is_transport_error, translate_transport_error

if TYPE_CHECKING:
    import aiohttp

    from ._limits import Limiter
    from ._models import Deployment
    from .providers import Endpoint, HTTPRequest

__all__ = ["CallOptions", "first_byte_error", "read", "read_body", "send"]


class CallOptions:
    """Resolved per-call knobs: the deployment plus deadlines and retry budget."""

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


async def send(
    session: aiohttp.ClientSession, opts: CallOptions, req: HTTPRequest
) -> aiohttp.ClientResponse:
    """Send and wait for the status line; an error status is read and raised here."""
    ep = opts.dep.endpoint
    first_byte = None
    try:
        if opts.first_byte_timeout is None:
            resp = await session.request(req.method, req.url, headers=req.headers, data=req.body)
        else:
            first_byte = asyncio.timeout(opts.first_byte_timeout)
            async with first_byte:
                resp = await session.request(
                    req.method, req.url, headers=req.headers, data=req.body
                )
    except Exception as exc:
        if not is_transport_error(exc):
            raise
        if first_byte is not None and first_byte.expired():
            raise first_byte_error(opts) from None
        raise translate_transport_error(
            exc, provider=ep.provider, model=ep.model, url=req.url
        ) from None
    status = resp.status
    if status >= 400:
        body = await read(resp, ep, req.url)
        raise opts.dep.adapter.parse_error(ep, status, resp.headers, body)
    return resp


async def read(resp: aiohttp.ClientResponse, ep: Endpoint, url: str) -> bytes:
    """The whole body; the response is closed (not pooled) if reading fails or is cancelled."""
    try:
        return await resp.read()
    except BaseException as exc:
        resp.close()
        if is_transport_error(exc):
            raise translate_transport_error(
                exc, provider=ep.provider, model=ep.model, url=url
            ) from None
        raise


async def read_body(session: aiohttp.ClientSession, opts: CallOptions, req: HTTPRequest) -> bytes:
    """Send and read the whole body. ``first_byte_timeout`` covers the status line and
    the first bytes of the body (a server can send headers and then stall)."""
    fbt = opts.first_byte_timeout
    ep = opts.dep.endpoint
    if fbt is None:
        resp = await send(session, opts, req)
        return await read(resp, ep, req.url)
    first_by = asyncio.get_running_loop().time() + fbt
    resp = await send(session, opts, req)
    first_byte = asyncio.timeout_at(first_by)
    try:
        async with first_byte:
            head = await resp.content.readany()
    except BaseException as exc:
        resp.close()
        if isinstance(exc, builtins.TimeoutError) and first_byte.expired():
            raise first_byte_error(opts) from None
        if is_transport_error(exc):
            raise translate_transport_error(
                exc, provider=ep.provider, model=ep.model, url=req.url
            ) from None
        raise
    return head + await read(resp, ep, req.url)


def first_byte_error(opts: CallOptions) -> TimeoutError:
    err = TimeoutError(
        f"{opts.provider} sent nothing for model {opts.model!r} within "
        f"first_byte_timeout={opts.first_byte_timeout:g} s; salvo retries this. Raise "
        "first_byte_timeout=... if the model is slow to start answering."
    )
    err.provider, err.model = opts.provider, opts.model
    return err
