"""The module-level functions, served by one default Client per event loop.

The default client is closed when its loop shuts down: it registers a tiny async generator
with the loop, and ``asyncio.run`` (like every well-behaved runner) finalizes async generators
before closing the loop, which closes the client's session. At interpreter exit, any default
client whose loop was left open is closed too. No "Unclosed client session" warnings.
"""

from __future__ import annotations

import asyncio
import atexit
import weakref
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, Literal, cast, overload

from . import _compat
from ._aio import asyncio_loop
from ._caller import Result
from ._client import Client
from ._errors import ConfigError
from ._messages import check_messages
from ._stream import CompletionStream
from ._types import EmbeddingResponse, ModelResponse

__all__ = [
    "abatch_completion",
    "acompletion",
    "aembedding",
    "afirst_k",
    "agather_all",
    "arace",
    "default_client",
    "warmup",
]

_DEFAULTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = (
    weakref.WeakKeyDictionary()
)
_KEEPERS: dict[int, AsyncGenerator[None, None]] = {}


async def _keeper(client: Client) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        _KEEPERS.pop(id(client), None)
        await client.aclose()


#: The last (loop, client) pair handed out: the common case in one lookup, no coroutine.
_last_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
_last_client: Client | None = None


def _cached() -> Client | None:
    client = _last_client
    if (
        client is not None
        and _last_loop is not None
        and _last_loop() is asyncio._get_running_loop()
        and not client.closed
    ):
        return client
    return None


async def default_client() -> Client:
    """The Client the module-level functions use on the running loop."""
    global _last_loop, _last_client
    loop = asyncio_loop()  # a ConfigError under trio, not "no running event loop"
    client = _DEFAULTS.get(loop)
    if client is not None and not client.closed:
        _last_loop, _last_client = weakref.ref(loop), client
        return client
    client = Client()
    _last_loop, _last_client = weakref.ref(loop), client
    _DEFAULTS[loop] = client
    keeper = _keeper(client)
    await keeper.__anext__()  # the loop now tracks it and finalizes it at shutdown
    _KEEPERS[id(client)] = keeper
    return client


@overload
async def acompletion(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: Literal[False] = False,
    **params: Any,
) -> ModelResponse: ...


@overload
async def acompletion(
    model: str, messages: Sequence[Mapping[str, Any]], *, stream: Literal[True], **params: Any
) -> CompletionStream: ...


@overload
async def acompletion(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: bool,
    **params: Any,
) -> ModelResponse | CompletionStream: ...


async def acompletion(
    model: str, messages: Sequence[Mapping[str, Any]], *, stream: bool = False, **params: Any
) -> ModelResponse | CompletionStream:
    """One chat completion (a ModelResponse), or with ``stream=True`` a CompletionStream."""
    client = _cached() or await default_client()
    return await client.acompletion(model, messages, stream=stream, **params)


async def aembedding(model: str, input: Any, **params: Any) -> EmbeddingResponse:
    """Embeddings for a string or a list of strings."""
    client = _cached() or await default_client()
    return await client.aembedding(model, input, **params)


async def abatch_completion(
    model: str,
    list_of_messages: Sequence[Sequence[Mapping[str, Any]]],
    *,
    max_concurrency: int | None = None,
    on_result: Callable[[int, Result], None] | None = None,
    **params: Any,
) -> list[Result]:
    """Many prompts to one model; results (or errors) in input order. LiteLLM's
    ``max_workers`` is ``max_concurrency``."""
    client = _cached() or await default_client()
    workers = params.pop("max_workers", None)
    if max_concurrency is None and workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"max_workers must be a whole number >= 1, not {workers!r}.")
        max_concurrency = workers
    if params and not _compat.CALL_LEVEL.isdisjoint(params):  # mock_response, fallbacks
        from ._litellm_calls import abatch_call_level

        done = await abatch_call_level(client, model, list_of_messages, max_concurrency, params)
        if on_result is not None:
            for i, res in enumerate(done):
                on_result(i, res)
        return done
    return await client.abatch_completion(
        model, list_of_messages, max_concurrency=max_concurrency, on_result=on_result, **params
    )


@overload
async def arace(
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: Literal[False] = False,
    **params: Any,
) -> ModelResponse: ...


@overload
async def arace(
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: Literal[True],
    **params: Any,
) -> CompletionStream: ...


@overload
async def arace(
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: bool,
    **params: Any,
) -> ModelResponse | CompletionStream: ...


async def arace(
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: bool = False,
    **params: Any,
) -> ModelResponse | CompletionStream:
    """The fastest successful answer among ``models``; the losers are closed at once."""
    client = _cached() or await default_client()
    if params and not _compat.LITELLM_KEYS.isdisjoint(params):
        mocked = _litellm_fanout(client, models, messages, params)
        if mocked is not None:
            resp = mocked[0]
            if stream:
                from ._litellm_calls import MockStream

                return cast(CompletionStream, MockStream(resp))
            return resp
    return await client.arace(models, messages, stream=stream, **params)


async def afirst_k(
    models: str | Sequence[str], messages: Sequence[Mapping[str, Any]], k: int, **params: Any
) -> list[ModelResponse]:
    """The first ``k`` successful answers among ``models``, in arrival order."""
    client = _cached() or await default_client()
    return await client.afirst_k(models, messages, k, **params)


async def agather_all(
    models: str | Sequence[str], messages: Sequence[Mapping[str, Any]], **params: Any
) -> list[Result]:
    """Every model's answer (or error), in models order."""
    client = _cached() or await default_client()
    if params and not _compat.LITELLM_KEYS.isdisjoint(params):
        mocked = _litellm_fanout(client, models, messages, params)
        if mocked is not None:
            return list(mocked)
    return await client.agather_all(models, messages, **params)


def _litellm_fanout(
    client: Client,
    models: str | Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    params: dict[str, Any],
) -> list[ModelResponse] | None:
    """LiteLLM's arguments on a race or a gather: the mocked answers (one per model) when
    ``mock_response`` is given, else None once the others are consumed from ``params``."""
    from ._litellm_calls import mock_completion
    from ._models import parse_models

    names = parse_models(models)
    if "fallbacks" in params:
        raise ConfigError(
            "fallbacks applies to completion/acompletion and batch_completion; a race or a "
            "gather already tries every model you list: add the fallbacks to the models."
        )
    if "mock_response" in params:
        check_messages(messages)
        mock = params.pop("mock_response")
        return [mock_completion(n, messages, mock) for n in names]
    _compat.litellm_args(client.config, names[0], params)
    return None


async def warmup() -> None:
    """Do the first call's fixed costs now (import aiohttp, build the session and its
    connector) so that the first real request costs what the others do. Call it from a web
    app's startup hook; an opened ``async with salvo.Client()`` does the same."""
    import sys

    if "aiohttp" not in sys.modules:  # ~100 ms of imports, off the loop's thread
        import importlib

        await asyncio.to_thread(importlib.import_module, "aiohttp")
    client = _cached() or await default_client()
    await client.__aenter__()


@atexit.register
def _close_leftovers() -> None:
    for loop, client in list(_DEFAULTS.items()):
        if client.closed:
            continue
        if not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(client.aclose())
