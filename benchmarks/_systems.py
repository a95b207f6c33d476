"""The systems under test, each behind the same small interface.

Every method takes plain model names (the fake answers any name). ``complete`` returns the
decoded answer and ``batch`` keeps every answer, as a caller would, so each system holds the
same 10,000 answers at the end of the big batch.
A system's heavy imports happen in ``setup()``, inside the worker process that measures it.

- ``salvo``: the module-level functions (``salvo.acompletion``, ``arace``, ...), configured
  from the environment as a script would be.
- ``salvo-client``: an explicit ``salvo.Client`` with the models as config aliases.
- ``raw``: the physical limit: one ``aiohttp.ClientSession``, ``session.post(url, data=bytes)``,
  ``await resp.read()``, ``msgspec.json.decode``; streams read line by line.
- ``openai``: ``openai.AsyncOpenAI``; race, gather and batch written the way a user would
  (tasks, ``asyncio.wait``, cancel the rest).
- ``litellm``: ``litellm.acompletion`` for single calls and streams; its own
  ``batch_completion_models`` (race), ``batch_completion_models_all_responses`` (gather) and
  ``batch_completion`` (batch).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["SYSTEMS", "System", "make_system"]

KEY = "sk-bench"
Msgs = list[dict[str, Any]]


class System:
    """Base: async race/gather/batch built from ``complete`` the way a user would write them."""

    name = ""
    module = ""  # what ``import`` measures
    sync_fanout = False  # race/gather/batch are blocking calls (run outside the loop)

    def __init__(self, base: str) -> None:
        self.base = base  # the fake's OpenAI base URL, ending in /v1
        self.kept: Any = None

    async def setup(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def complete(self, model: str, messages: Msgs) -> Any:
        raise NotImplementedError

    async def stream(self, model: str, messages: Msgs) -> int:
        raise NotImplementedError

    async def race(self, models: Sequence[str], messages: Msgs) -> str:
        tasks = {asyncio.create_task(self.complete(m, messages)): m for m in models}
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t.exception() is None:
                        return tasks[t]
            raise RuntimeError("every model failed")
        finally:
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)

    async def gather(self, models: Sequence[str], messages: Msgs) -> int:
        out = await asyncio.gather(*(self.complete(m, messages) for m in models))
        return len(out)

    async def batch(self, model: str, prompts: Sequence[Msgs], concurrency: int) -> int:
        out: list[Any] = [None] * len(prompts)
        it = iter(range(len(prompts)))

        async def worker() -> None:
            for i in it:
                out[i] = await self.complete(model, prompts[i])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        self.kept = out  # held until the next batch, like a caller's results
        return sum(r is not None for r in out)


class Raw(System):
    name = "raw aiohttp"
    module = "aiohttp, msgspec"

    async def setup(self) -> None:
        import aiohttp
        import msgspec

        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.url = self.base + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        self.encode = msgspec.json.Encoder().encode
        self.decode = msgspec.json.decode

    async def aclose(self) -> None:
        await self.session.close()

    async def complete(self, model: str, messages: Msgs) -> Any:
        body = self.encode({"model": model, "messages": messages})
        async with self.session.post(self.url, data=body, headers=self.headers) as resp:
            data = await resp.read()
        return self.decode(data)

    async def stream(self, model: str, messages: Msgs) -> int:
        body = self.encode({"model": model, "messages": messages, "stream": True})
        n = 0
        decode = self.decode
        async with self.session.post(self.url, data=body, headers=self.headers) as resp:
            async for line in resp.content:
                if line.startswith(b"data: "):
                    data = line[6:].rstrip()
                    if data == b"[DONE]":
                        break
                    decode(data)
                    n += 1
        return n


class Salvo(System):
    """The module-level functions; the key and base come from the environment."""

    name = "salvo"
    module = "salvo"

    async def setup(self) -> None:
        os.environ["OPENAI_API_KEY"] = KEY
        os.environ["OPENAI_BASE_URL"] = self.base
        import salvo

        self.salvo = salvo

    async def complete(self, model: str, messages: Msgs) -> Any:
        return await self.salvo.acompletion("openai/" + model, messages)

    async def stream(self, model: str, messages: Msgs) -> int:
        n = 0
        async with await self.salvo.acompletion("openai/" + model, messages, stream=True) as s:
            async for _ in s:
                n += 1
        return n

    async def race(self, models: Sequence[str], messages: Msgs) -> str:
        resp = await self.salvo.arace(["openai/" + m for m in models], messages)
        return str(resp.model)

    async def gather(self, models: Sequence[str], messages: Msgs) -> int:
        out = await self.salvo.agather_all(["openai/" + m for m in models], messages)
        return len(out)

    async def batch(self, model: str, prompts: Sequence[Msgs], concurrency: int) -> int:
        out = await self.salvo.abatch_completion(
            "openai/" + model, prompts, max_concurrency=concurrency
        )
        self.kept = out
        return sum(isinstance(r, self.salvo.ModelResponse) for r in out)


class SalvoClient(Salvo):
    """An explicit Client: ``async with salvo.Client(config=...)``, models as aliases."""

    name = "salvo Client"

    async def setup(self) -> None:
        import salvo

        self.salvo = salvo
        self.client = salvo.Client()
        await self.client.__aenter__()
        self.params = {"api_base": self.base, "api_key": KEY}

    async def aclose(self) -> None:
        await self.client.aclose()

    async def complete(self, model: str, messages: Msgs) -> Any:
        return await self.client.acompletion("openai/" + model, messages, **self.params)

    async def stream(self, model: str, messages: Msgs) -> int:
        n = 0
        s = await self.client.acompletion("openai/" + model, messages, stream=True, **self.params)
        async with s:
            async for _ in s:
                n += 1
        return n

    async def race(self, models: Sequence[str], messages: Msgs) -> str:
        resp = await self.client.arace(["openai/" + m for m in models], messages, **self.params)
        return str(resp.model)

    async def gather(self, models: Sequence[str], messages: Msgs) -> int:
        out = await self.client.agather_all(
            ["openai/" + m for m in models], messages, **self.params
        )
        return len(out)

    async def batch(self, model: str, prompts: Sequence[Msgs], concurrency: int) -> int:
        out = await self.client.abatch_completion(
            "openai/" + model, prompts, max_concurrency=concurrency, **self.params
        )
        self.kept = out
        return sum(isinstance(r, self.salvo.ModelResponse) for r in out)


class OpenAISDK(System):
    name = "openai SDK"
    module = "openai"

    async def setup(self) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(base_url=self.base, api_key=KEY, max_retries=0)

    async def aclose(self) -> None:
        await self.client.close()

    async def complete(self, model: str, messages: Msgs) -> Any:
        return await self.client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]

    async def stream(self, model: str, messages: Msgs) -> int:
        n = 0
        s = await self.client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        async for _ in s:
            n += 1
        return n


class LiteLLM(System):
    name = "litellm"
    module = "litellm"
    sync_fanout = True

    async def setup(self) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.litellm = litellm
        self.kw = {"api_base": self.base, "api_key": KEY}

    async def complete(self, model: str, messages: Msgs) -> Any:
        return await self.litellm.acompletion(model="openai/" + model, messages=messages, **self.kw)

    async def stream(self, model: str, messages: Msgs) -> int:
        n = 0
        s = await self.litellm.acompletion(
            model="openai/" + model, messages=messages, stream=True, **self.kw
        )
        async for _ in s:
            n += 1
        return n

    def race_sync(self, models: Sequence[str], messages: Msgs) -> str:
        resp = self.litellm.batch_completion_models(
            models=["openai/" + m for m in models], messages=messages, **self.kw
        )
        return str(resp.model)

    def gather_sync(self, models: Sequence[str], messages: Msgs) -> int:
        out = self.litellm.batch_completion_models_all_responses(
            models=["openai/" + m for m in models], messages=messages, **self.kw
        )
        return len(out)

    def batch_sync(self, model: str, prompts: Sequence[Msgs], concurrency: int) -> int:
        out = self.litellm.batch_completion(
            model="openai/" + model, messages=list(prompts), max_workers=concurrency, **self.kw
        )
        self.kept = out
        # batch_completion returns exceptions in place of failed answers.
        return sum(not isinstance(r, BaseException) for r in out)


SYSTEMS: dict[str, type[System]] = {
    "raw": Raw,
    "salvo": Salvo,
    "salvo-client": SalvoClient,
    "openai": OpenAISDK,
    "litellm": LiteLLM,
}


def make_system(key: str, base: str) -> System:
    return SYSTEMS[key](base)
