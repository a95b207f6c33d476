"""One process of the Redis-store tests: calls the fake through a Client sharing ``--store``.

``python tests/redis_worker.py '<json>'`` with ``base``, ``store``, ``model``, ``limits``,
``tasks`` (concurrent callers), ``start_at`` and ``duration`` (``time.monotonic()`` values, the
system-wide clock), ``lease_ttl``. Prints ``ready`` once its calls are under way, then a JSON
line with its counts.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import salvo
from salvo._redis_store import RedisStore

MSGS = [{"role": "user", "content": "hi"}]


async def main(cfg: dict[str, Any]) -> None:
    store = RedisStore(cfg["store"], lease_ttl=cfg.get("lease_ttl", 30.0))
    ok = err = 0
    async with salvo.Client(limits_store=store, timeout=None, max_retries=0) as client:
        await asyncio.sleep(max(cfg["start_at"] - time.monotonic(), 0.0))
        end = cfg["start_at"] + cfg["duration"]

        async def caller() -> None:
            nonlocal ok, err
            while time.monotonic() < end:
                try:
                    await client.acompletion(
                        cfg["model"], MSGS, api_base=cfg["base"], api_key="k", **cfg["limits"]
                    )
                    ok += 1
                except salvo.SalvoError:
                    err += 1

        tasks = [asyncio.create_task(caller()) for _ in range(cfg["tasks"])]
        print("ready", flush=True)
        await asyncio.gather(*tasks)
        state = client.statistics().limits_store
    print(json.dumps({"ok": ok, "err": err, "store": state}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
