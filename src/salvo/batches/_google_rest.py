"""REST for the Google batch backends: :class:`~salvo.batches._rest.Rest` plus per-attempt auth
and response headers.

Vertex AI and Cloud Storage calls carry the deployment's ``auth`` headers (a service account's
access token), fetched again for every attempt, so a retry after the token expired sends a
fresh one; a 401 drops the token and the call is tried once more. Gemini's resumable upload
needs a response header (``X-Goog-Upload-URL``), so :meth:`GoogleRest.request` returns the
headers with the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import AuthenticationError
from .._http import is_transport_error
from ._rest import _ENCODE, Body, Rest

if TYPE_CHECKING:
    import aiohttp
    from multidict import CIMultiDictProxy

__all__ = ["GoogleRest"]


class GoogleRest(Rest):
    """Rest with the deployment's per-attempt ``auth`` and access to response headers."""

    async def _auth(self, headers: dict[str, str]) -> dict[str, str] | None:
        auth = self.dep.auth
        if auth is None:
            return None
        extra = dict(await auth(self.client._session or self.client._open()))
        headers.update(extra)
        return extra

    def _refused(self, extra: dict[str, str] | None) -> bool:
        invalidate = getattr(self.dep.auth, "invalidate", None)
        if extra is None or invalidate is None:
            return False
        invalidate(extra)
        return True

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        body: Body | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, CIMultiDictProxy[str]]:
        """Send (with retries) and return the whole body and the response headers."""

        async def attempt() -> tuple[bytes, CIMultiDictProxy[str]]:
            for last in (False, True):
                hdrs = dict(self.headers if json is None else self.json_headers)
                if headers:
                    hdrs.update(headers)
                extra = await self._auth(hdrs)
                data = _ENCODE(json) if json is not None else (body() if body else None)
                try:
                    resp = await self._send(method, url, data, hdrs, params)
                except AuthenticationError:
                    if last or not self._refused(extra):
                        raise
                    continue
                return await self._read(resp, url), resp.headers
            raise AssertionError("unreachable")

        result: tuple[bytes, CIMultiDictProxy[str]] = await self.client._with_retries(
            self.opts, attempt, 0
        )
        return result

    async def call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        body: Body | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        raw, _ = await self.request(
            method, url, json=json, body=body, params=params, headers=headers
        )
        return raw

    async def stream(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[bytes]:
        """GET ``url`` in pieces (see Rest.stream), with the auth headers."""

        async def attempt() -> aiohttp.ClientResponse:
            for last in (False, True):
                hdrs = {**self.headers, **(headers or {})}
                extra = await self._auth(hdrs)
                try:
                    return await self._send("GET", url, None, hdrs, params)
                except AuthenticationError:
                    if last or not self._refused(extra):
                        raise
            raise AssertionError("unreachable")

        resp: aiohttp.ClientResponse = await self.client._with_retries(self.opts, attempt, 0)
        try:
            while True:
                try:
                    piece = await resp.content.read(1 << 20)
                except Exception as exc:
                    if not is_transport_error(exc):
                        raise
                    raise self._transport(exc, url) from None
                if not piece:
                    break
                yield piece
        finally:
            resp.close()
