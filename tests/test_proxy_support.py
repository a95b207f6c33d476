"""Shared set-up for the proxy tests (no tests here): a fake provider, the proxy in front of it
on a free port, and an official OpenAI SDK client pointed at the proxy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai

from salvo import RetryPolicy
from salvo.proxy import ProxyServer
from salvo.testing import Behavior, FakeProvider

MASTER_KEY = "sk-proxy-master-key-0001"
UPSTREAM_KEY = "sk-upstream-secret-0123456789abcdef"
USER = [{"role": "user", "content": "Say hi"}]


def _jsonl(model: str, n: int, **body: Any) -> bytes:
    """``n`` batch input lines ``req-0`` .. asking ``model`` to say hi (``USER``)."""
    lines = [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": USER, **body},
        }
        for i in range(n)
    ]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def model_list(base: str, **extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Aliases on the fake: fast, smart (OpenAI format), embed, tog (a translated provider)."""
    entries = {
        "fast": {"model": "openai/gpt-4o-mini"},
        "smart": {"model": "openai/gpt-4o"},
        "embed": {"model": "openai/text-embedding-3-small"},
        "tog": {"model": "together/meta-llama/Llama-3-8b"},
        **extra,
    }
    return [
        {"model_name": name, "params": {"api_base": base, "api_key": UPSTREAM_KEY, **params}}
        for name, params in entries.items()
    ]


@dataclass
class Stack:
    fake: FakeProvider
    proxy: ProxyServer
    oai: openai.AsyncOpenAI
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.proxy.url

    def auth(self, key: str = MASTER_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@asynccontextmanager
async def stack(
    *,
    settings: dict[str, Any] | None = None,
    extra_models: dict[str, dict[str, Any]] | None = None,
    configure: Callable[[FakeProvider, dict[str, Any]], None] | None = None,
    fake_batches: bool = False,
) -> AsyncIterator[Stack]:
    installers = []
    if fake_batches:  # the fake's OpenAI Files and Batch APIs, unless it installs them already
        from salvo.testing import _batches, _files
        from salvo.testing._server import INSTALLERS

        installers = [i for i in (_files.install, _batches.install) if i not in INSTALLERS]
    async with FakeProvider(installers=installers) as fake:
        config: dict[str, Any] = {
            "model_list": model_list(fake.openai_base, **(extra_models or {})),
            "general_settings": {"master_key": MASTER_KEY, **(settings or {})},
        }
        if configure is not None:
            configure(fake, config)
        async with (
            ProxyServer(config, retry_policy=RetryPolicy(wait=False)) as proxy,
            openai.AsyncOpenAI(
                base_url=proxy.url + "/v1", api_key=MASTER_KEY, max_retries=0
            ) as oai,
            aiohttp.ClientSession() as http,
        ):
            yield Stack(fake, proxy, oai, http)


def arrival(fake: FakeProvider, model: str, behavior: Behavior) -> asyncio.Event:
    """Script ``model`` and return an Event set when its first request reaches the fake."""
    arrived = asyncio.Event()

    def script(n: int) -> Behavior:
        arrived.set()
        return behavior

    fake.script(model, script)
    return arrived
