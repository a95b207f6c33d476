"""Cancel a web request's work when its client goes away (Starlette, FastAPI, any ASGI app).

Starlette and FastAPI never cancel a handler when the browser disconnects: a handler awaiting
``salvo.arace(...)`` runs every upstream call to its end. Wrap the app::

    from salvo.asgi import CancelOnDisconnect

    app = FastAPI()
    app.add_middleware(CancelOnDisconnect)       # or: app = CancelOnDisconnect(app)

Each HTTP request's app call then runs in its own task, and one reader watches the ASGI
``receive`` channel: when ``http.disconnect`` arrives before the app has finished, the task is
cancelled, and salvo's cancellation closes every upstream HTTP response it opened. The app still
gets every ``http.request`` message it asks for (a body is handed over piece by piece, the next
piece read only once the app took the previous one, so nothing is buffered beyond one piece).

aiohttp.web does this itself when asked: ``web.run_app(app, handler_cancellation=True)`` (or
``web.AppRunner(app, handler_cancellation=True)``); see the README.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["CancelOnDisconnect"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DISCONNECT: Message = {"type": "http.disconnect"}


class CancelOnDisconnect:
    """ASGI middleware: cancel the app's work for a request whose client disconnected."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        gone = asyncio.Event()

        async def app_receive() -> Message:
            if gone.is_set() and inbox.empty():
                return dict(_DISCONNECT)
            msg = await inbox.get()
            inbox.task_done()
            return msg

        work = asyncio.ensure_future(self.app(scope, app_receive, send))

        async def watch() -> None:
            while True:
                msg = await receive()
                inbox.put_nowait(msg)
                if msg.get("type") == "http.disconnect":
                    gone.set()
                    work.cancel()  # salvo closes every upstream response it opened
                    return
                if msg.get("more_body"):
                    await inbox.join()  # the next piece only once the app took this one

        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.shield(work)  # our own cancellation is passed on below, once
        except asyncio.CancelledError:
            if not work.done():  # the server cancelled us: cancel the work, wait for it
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                raise
            if not gone.is_set():
                raise
            # cancelled because the client left: nobody is waiting for an answer
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
