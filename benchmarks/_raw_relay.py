"""The physical limit for an aiohttp proxy: ``python benchmarks/_raw_relay.py UPSTREAM_URL``.

The least a relay built on aiohttp can do for one chat completion: aiohttp.web reads the
body, one pooled aiohttp ClientSession posts it upstream, and the upstream's bytes go back with
its status (an SSE body chunk by chunk, as it arrives). No auth, no parsing, no model routing,
no limits or retries, no error mapping: what the salvo proxy adds on top of it is what
``bench_proxy.py`` shows as the difference between the two. Prints ``listening on URL`` once
it serves (port chosen by the kernel).
"""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
from aiohttp import web

SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def main(upstream: str) -> None:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), cookie_jar=aiohttp.DummyCookieJar()
    )
    headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with session.post(upstream, data=body, headers=headers) as resp:
            if resp.content_type != "text/event-stream":
                data = await resp.read()
                return web.Response(body=data, status=resp.status, content_type=resp.content_type)
            out = web.StreamResponse(status=resp.status, headers=SSE)
            await out.prepare(request)
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    app = web.Application()
    app.router.add_post("/v1/chat/completions", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"raw aiohttp relay listening on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await session.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
