"""LiteLLM's call-level arguments: ``mock_response`` (an answer without a network call) and
``fallbacks`` (other models to try, in order, when the model fails after its retries)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from ._errors import AllModelsFailedError, ConfigError, SalvoError
from ._messages import check_messages, check_prompts
from ._types import (
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    Message,
    ModelResponse,
    Usage,
)

if TYPE_CHECKING:
    from ._client import Client
    from ._stream import CompletionStream

__all__ = ["MockStream", "acompletion_call_level", "mock_completion", "split_fallbacks"]

log = logging.getLogger("salvo")
_IDS = itertools.count(1)


def _words(text: str) -> int:
    return max(1, len(text.split())) if text else 0


def mock_completion(model: str, messages: Sequence[Mapping[str, Any]], mock: Any) -> ModelResponse:
    """LiteLLM's ``mock_response``: a string (or a ModelResponse) is the answer, an exception
    instance is raised; nothing goes on the wire."""
    if isinstance(mock, BaseException):
        raise mock
    if isinstance(mock, ModelResponse):
        return mock
    if not isinstance(mock, str):
        raise ConfigError(
            f"mock_response must be a string, a ModelResponse or an exception, not "
            f"{type(mock).__name__}."
        )
    prompt = sum(_words(str(m.get("content") or "")) for m in messages)
    out = _words(mock)
    return ModelResponse(
        id=f"chatcmpl-mock-{next(_IDS)}",
        created=int(time.time()),
        model=model,
        choices=[Choice(message=Message(content=mock), finish_reason="stop")],
        usage=Usage(prompt_tokens=prompt, completion_tokens=out, total_tokens=prompt + out),
        provider="mock",
        cost_usd=0.0,
    )


class MockStream:
    """The chunks of a mocked answer: the text split into words, then a ``stop`` chunk.
    Iterates, closes and collects like a :class:`~salvo.CompletionStream`."""

    def __init__(self, resp: ModelResponse) -> None:
        self.model = resp.model
        self.provider = "mock"
        self.chunks_received = 0
        self._resp = resp
        text = resp.choices[0].message.content or "" if resp.choices else ""
        pieces = [p for p in _split_keep(text)]
        self._chunks = [self._chunk(Delta(role="assistant", content=p)) for p in pieces]
        self._chunks.append(self._chunk(Delta(), finish="stop", usage=resp.usage))
        self._closed = False

    def _chunk(
        self, delta: Delta, finish: str | None = None, usage: Usage | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._resp.id,
            created=self._resp.created,
            model=self._resp.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            usage=usage,
            provider="mock",
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> MockStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._closed or self.chunks_received >= len(self._chunks):
            self._closed = True
            raise StopAsyncIteration
        chunk = self._chunks[self.chunks_received]
        self.chunks_received += 1
        return chunk

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> MockStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True

    async def collect(self) -> ModelResponse:
        async with self:
            async for _ in self:
                pass
        return self._resp


def _split_keep(text: str) -> list[str]:
    """Words with their following space, so that the pieces join back to ``text``."""
    out: list[str] = []
    start = 0
    for i, ch in enumerate(text):
        if ch == " " and i + 1 < len(text) and text[i + 1] != " ":
            out.append(text[start : i + 1])
            start = i + 1
    if start < len(text):
        out.append(text[start:])
    return out


def split_fallbacks(model: str, fallbacks: Any) -> list[tuple[str, dict[str, Any]]]:
    """``model`` then each fallback (a model string, or a mapping with ``model`` and
    per-model overrides such as ``api_key`` / ``api_base``), as (model, overrides)."""
    if isinstance(fallbacks, str) or not isinstance(fallbacks, Sequence):
        raise ConfigError(
            "fallbacks must be a list of model names (or of mappings with a 'model' key), "
            f"not {type(fallbacks).__name__}."
        )
    out: list[tuple[str, dict[str, Any]]] = [(model, {})]
    for i, fb in enumerate(fallbacks):
        if isinstance(fb, str):
            out.append((fb, {}))
        elif isinstance(fb, Mapping) and isinstance(fb.get("model"), str):
            extra = {k: v for k, v in fb.items() if k != "model"}
            out.append((fb["model"], extra))
        else:
            raise ConfigError(
                f"fallbacks[{i}] must be a model name or a mapping with a 'model' key, "
                f"not {fb!r:.80}."
            )
    return out


async def acompletion_call_level(
    client: Client,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: bool,
    params: dict[str, Any],
) -> ModelResponse | CompletionStream:
    """``Client.acompletion`` with ``mock_response`` and/or ``fallbacks``."""
    check_messages(messages)
    if "mock_response" in params:
        mock = params.pop("mock_response")
        params.pop("fallbacks", None)
        resp = mock_completion(model, messages, mock)
        if stream:
            return cast("CompletionStream", MockStream(resp))
        return resp
    chain = split_fallbacks(model, params.pop("fallbacks"))
    errors: list[Exception] = []
    for name, extra in chain:
        try:
            return await client.acompletion(name, messages, stream=stream, **params, **extra)
        except SalvoError as exc:  # a ConfigError of one fallback (no key, ...) counts too
            log.debug("salvo: %s failed (%s); trying the next fallback", name, type(exc).__name__)
            errors.append(exc)
    names = [n for n, _ in chain]
    summary = "; ".join(f"{n}: {type(e).__name__}" for n, e in zip(names, errors, strict=True))
    raise AllModelsFailedError(
        f"{model} and its {len(chain) - 1} fallback(s) all failed ({summary}).", errors, names
    )


async def abatch_call_level(
    client: Client,
    model: str,
    list_of_messages: Sequence[Sequence[Mapping[str, Any]]],
    max_concurrency: int | None,
    params: dict[str, Any],
) -> list[ModelResponse | SalvoError]:
    """batch_completion with ``mock_response`` or ``fallbacks``: each prompt through
    :func:`acompletion_call_level`, at most ``max_concurrency`` at once, in input order."""
    check_prompts(list_of_messages)
    results: list[ModelResponse | SalvoError | None] = [None] * len(list_of_messages)
    gate = asyncio.Semaphore(max(1, max_concurrency or client.max_concurrency))

    async def one(i: int) -> None:
        async with gate:
            try:
                res = await acompletion_call_level(
                    client, model, list_of_messages[i], False, dict(params)
                )
                results[i] = cast(ModelResponse, res)
            except SalvoError as exc:
                results[i] = exc

    async with asyncio.TaskGroup() as tg:
        for i in range(len(list_of_messages)):
            tg.create_task(one(i))
    return cast("list[ModelResponse | SalvoError]", results)
