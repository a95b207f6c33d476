"""The state one fake server shares across its routes, and the per-request `Exchange`.

Every route handler (format modules, control endpoints, and later files/batches modules) follows
the same pattern::

    @route
    async def handler(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        body, problem = await read_json(request)
        ex = state.begin(request, provider="openai", model=..., stream=..., body=body)
        ...                                   # validate, then answer through _faults.send_json /
        return await send_json(ex, 200, ...)  # _faults.send_stream, which time the Record

`route` turns a cancelled handler (the client closed the connection; the runner uses
``handler_cancellation=True``) or a failed write into ``Record.disconnected``.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import msgspec
from aiohttp import web

from ._behavior import Behavior, Script, ScriptSpec, decode_behavior
from ._records import Record

__all__ = [
    "BEHAVIOR_HEADER",
    "STATE_KEY",
    "Exchange",
    "FakeState",
    "Handler",
    "read_json",
    "route",
]

BEHAVIOR_HEADER = "x-fake-behavior"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DECODE_JSON = msgspec.json.Decoder()


class _Clearable(Protocol):
    def clear(self) -> None: ...


S = TypeVar("S", bound=_Clearable)
_LINGER_RESET = struct.pack("ii", 1, 0)


class Exchange:
    """One request/response in flight: its Record, the Behavior it follows, and its response."""

    __slots__ = ("behavior", "problem", "record", "request", "response", "state", "task")

    def __init__(
        self, state: FakeState, request: web.Request, record: Record, behavior: Behavior
    ) -> None:
        self.state = state
        self.request = request
        self.record = record
        self.behavior = behavior
        #: (status, message) when the fake cannot follow a script: an x-fake-behavior header
        #: that does not decode (400) or a script callable that raised (500).
        self.problem: tuple[int, str] | None = None
        self.response: web.StreamResponse | None = None
        self.task = asyncio.current_task()

    @property
    def request_id(self) -> str:
        return f"req_fake{self.record.id:016d}"

    async def prepare(self, response: web.StreamResponse) -> None:
        """Send the status line and headers (a StreamResponse sends them at once)."""
        self.response = response
        self.record.status = response.status
        await response.prepare(self.request)
        self.record.first_byte = time.monotonic()

    def complete(self) -> None:
        if self.record.closed is None:
            self.record.completed = time.monotonic()
            self.state.closed(self)

    def disconnect(self) -> None:
        if self.record.closed is None:
            self.record.disconnected = time.monotonic()
            self.state.closed(self)

    async def abort(self) -> None:
        """Reset the TCP connection (RST, not FIN) once what was written has left the buffer."""
        transport = self.request.transport
        if transport is not None and not transport.is_closing():
            for _ in range(1000):
                if transport.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.001)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
        if self.record.closed is None:
            self.record.aborted = time.monotonic()
            self.state.closed(self)


class FakeState:
    """Scripts, records and waiters of one fake server; stored on the app under STATE_KEY.

    ``ext`` is free room for route modules added later (e.g. a files/batches store), and
    ``reset_hooks`` are called by `reset` so those modules can clear their own data.
    """

    def __init__(self, *, keep_records: bool = True, max_records: int | None = None) -> None:
        if max_records is not None and max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.default = Behavior()
        self.records: list[Record] = []
        self.keep_records = keep_records
        self.max_records = max_records
        self.ext: dict[str, Any] = {}
        self.reset_hooks: list[Callable[[], None]] = []
        self._scripts: dict[str, Script] = {}
        self._counts: dict[str, int] = {}
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._live: dict[int, Exchange] = {}  # by id() of the aiohttp request
        self._next_id = 0

    # -- scripting -------------------------------------------------------------------------

    def script(self, model: str, spec: ScriptSpec) -> None:
        """Script every later request for ``model``; its request count restarts at 0."""
        self._scripts[model] = Script(spec)
        self._counts.pop(model, None)

    def behavior_for(self, model: str) -> Behavior:
        """The scripted Behavior for the next request to ``model`` (counts the request)."""
        n = self._counts.get(model, 0)
        self._counts[model] = n + 1
        script = self._scripts.get(model)
        return self.default if script is None else script.pick(n)

    @property
    def scripted_models(self) -> list[str]:
        return list(self._scripts)

    def reset(self) -> None:
        """Forget records, scripts and request counts, and restore the default Behavior."""
        self.records.clear()
        self._scripts.clear()
        self._counts.clear()
        self.default = Behavior()
        for hook in self.reset_hooks:
            hook()

    def ext_store(self, key: str, kind: type[S], make: Callable[[FakeState], S]) -> S:
        """The ``kind`` kept at ``ext[key]``, made by ``make(self)`` on first use and cleared
        (its ``clear``) by :meth:`reset`."""
        store = self.ext.get(key)
        if not isinstance(store, kind):
            store = self.ext[key] = make(self)
            self.reset_hooks.append(store.clear)
        return store

    # -- exchanges and records ------------------------------------------------------------------

    def begin(
        self, request: web.Request, *, provider: str, model: str, stream: bool, body: Any
    ) -> Exchange:
        """Record a request that has arrived and pick its Behavior (header override first)."""
        arrived = time.monotonic()
        self._next_id += 1
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = Record(
            id=self._next_id,
            provider=provider,
            path=request.path,
            model=model,
            stream=stream,
            headers=headers,
            body=body,
            arrived=arrived,
        )
        problem: tuple[int, str] | None = None
        try:
            behavior = self.behavior_for(model)
        except Exception as exc:  # a user's script callable failed: answer 500, saying so
            behavior = self.default
            problem = (500, f"The fake's script for model {model!r} raised {exc!r}.")
        override = headers.get(BEHAVIOR_HEADER)
        if override is not None:
            try:
                behavior = decode_behavior(override)
            except ValueError as exc:
                problem = (400, f"Invalid {BEHAVIOR_HEADER} header: {exc}.")
        ex = Exchange(self, request, record, behavior)
        ex.problem = problem
        self._live[id(request)] = ex
        if self.keep_records:
            self.records.append(record)
            limit = self.max_records
            if limit is not None and len(self.records) >= 2 * limit:
                del self.records[:-limit]
        return ex

    def records_for(self, model: str) -> list[Record]:
        return [r for r in self.records if r.model == model]

    def closed(self, ex: Exchange) -> None:
        """Called once per exchange when its record gets its closing time; wakes waiters."""
        self._live.pop(id(ex.request), None)
        waiters = self._waiters.pop(ex.record.id, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def wait_until_closed(self, record: Record, timeout: float = 1.0) -> Record:  # noqa: ASYNC109
        if record.closed is not None:
            return record
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(record.id, [])
        waiters.append(fut)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            raise TimeoutError(
                f"request {record.id} ({record.path}, model {record.model!r}) was still open "
                f"after {timeout} s: the client has not closed it and the fake has not finished"
            ) from None
        finally:
            if fut in waiters:
                waiters.remove(fut)
        return record

    def exchange_for(self, request: web.Request) -> Exchange | None:
        """The exchange `begin` made for ``request``, while it is still open."""
        return self._live.get(id(request))

    def release(self, request: web.Request) -> None:
        """Forget ``request`` once its handler has returned or raised; an exchange still open
        then (a handler that did not answer through `_faults`) counts as completed."""
        ex = self._live.get(id(request))
        if ex is not None:
            ex.complete()

    def cancel_live(self) -> list[asyncio.Task[Any]]:
        """Cancel every handler still answering (used when the server stops)."""
        live = self._live.values()
        tasks = [ex.task for ex in live if ex.task is not None and not ex.task.done()]
        for task in tasks:
            task.cancel()
        return tasks


STATE_KEY = web.AppKey("salvo_fake_state", FakeState)


async def read_json(request: web.Request) -> tuple[Any, str | None]:
    """The parsed JSON body and, when it is not a JSON object, a sentence saying what is wrong."""
    raw = await request.read()
    if not raw:
        return None, "The request body is empty; send a JSON object."
    try:
        body = _DECODE_JSON.decode(raw)
    except msgspec.DecodeError as exc:
        return None, f"The request body is not valid JSON ({exc})."
    if not isinstance(body, dict):
        return body, "The request body must be a JSON object."
    return body, None


def route(handler: Handler) -> Handler:
    """Wrap a route handler so a client that goes away is recorded as ``disconnected``."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        try:
            return await handler(request)
        except asyncio.CancelledError:
            ex = state.exchange_for(request)
            if ex is not None:
                ex.disconnect()
            raise
        except ConnectionError:
            ex = state.exchange_for(request)
            if ex is not None:
                ex.disconnect()
                if ex.response is not None:
                    return ex.response
            return web.Response(status=499)
        finally:
            state.release(request)

    return guarded
