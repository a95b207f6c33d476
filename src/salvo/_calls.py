"""The client's own calls, built on the public seam: an adapter builds the request,
``Client.send`` sends it (limiter, retries, deadline, caps), and an ``accept`` function parses
the answer inside the attempt, so that a body that fails to parse is handled by the retry
policy like any other failed attempt.

These take the client as an argument and use only its public face (``send``,
``max_event_bytes``): a wrapper or a new kind of call is written the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _observe
from ._errors import ConfigError
from ._limits import estimate_input_tokens
from ._pricing import response_cost
from ._routes import estimate_chat_tokens, merged_params
from ._stream import CompletionStream

if TYPE_CHECKING:
    from ._call import Route
    from ._client import Client
    from ._response import Response, ResponseStream
    from ._types import EmbeddingResponse, ModelResponse

__all__ = ["complete", "embed", "open_completion_stream"]


async def complete(
    client: Client,
    route: Route,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
) -> ModelResponse:
    """One non-streaming chat completion on a resolved route."""
    dep = route.dep
    ep = dep.endpoint
    adapter = dep.info.adapter
    req = adapter.build_chat(ep, dep.headers, messages, merged_params(dep, params), False)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def accept(resp: Response) -> ModelResponse:
        out = adapter.parse_chat(ep, resp.content)
        out.latency_s = loop.time() - started
        out.cost_usd = response_cost(ep.provider, out.usage, out.model, ep.model)
        return out

    tokens = estimate_chat_tokens(route, messages, params)
    trace = _observe.start(route, "chat", params, messages, capture_content=client.capture_content)
    return await client.send(req, route, accept=accept, tokens=tokens, trace=trace)


async def open_completion_stream(
    client: Client,
    route: Route,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
) -> CompletionStream:
    """A streamed chat completion, returned once its first chunk arrived (a failure until
    then is retried). The call's deadline also bounds reading the stream to its end."""
    dep = route.dep
    req = dep.adapter.build_chat(
        dep.endpoint, dep.headers, messages, merged_params(dep, params), True
    )
    started = asyncio.get_running_loop().time()
    deadline = None if route.timeout is None else started + route.timeout
    max_event = client.max_event_bytes

    async def accept(raw: ResponseStream) -> CompletionStream:
        stream = CompletionStream(
            raw,
            dep.adapter.stream_parser(dep.endpoint),
            endpoint=dep.endpoint,
            model=dep.name,
            started=started,
            ends_at_eof=dep.adapter.stream_ends_at_eof,
            max_event_bytes=max_event,
        )
        await stream.prime()
        return stream

    tokens = estimate_chat_tokens(route, messages, params)
    trace = _observe.start(
        route, "chat", params, messages, stream=True, capture_content=client.capture_content
    )
    return await client.send(
        req, route, stream=True, accept=accept, tokens=tokens, deadline=deadline, trace=trace
    )


async def embed(
    client: Client, route: Route, input: Any, params: Mapping[str, Any]
) -> EmbeddingResponse:
    """Embeddings on a resolved route; the input is checked before anything is sent."""
    if (isinstance(input, str | list) and len(input) == 0) or input is None:
        raise ConfigError("aembedding needs a non-empty input (a string or a list).")
    dep = route.dep
    if not dep.info.capabilities.embeddings:
        raise ConfigError(f"Provider {dep.provider} has no embeddings API in salvo.")
    ep = dep.endpoint
    adapter = dep.info.adapter
    req = adapter.build_embedding(ep, dep.headers, input, merged_params(dep, params))
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def accept(resp: Response) -> EmbeddingResponse:
        out = adapter.parse_embedding(ep, resp.content)
        out.latency_s = loop.time() - started
        out.cost_usd = response_cost(ep.provider, out.usage, out.model, ep.model)
        return out

    tokens = estimate_input_tokens(input) if route.limiter.counts_tokens else 0
    trace = _observe.start(route, "embeddings", params)
    return await client.send(req, route, accept=accept, tokens=tokens, trace=trace)
