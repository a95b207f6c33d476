"""Blocking twins with LiteLLM's names, for scripts, Jupyter and sync code.

They run on salvo's background event loop (:mod:`salvo._portal`): one loop, one default
Client, so rate limits, 429 pauses, the connection pool and statistics persist from call to
call. ``completion(..., stream=True)`` returns a :class:`SyncStream`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

from . import _api
from ._fanout import Result
from ._portal import portal, run_blocking, running_portal
from ._types import ChatCompletionChunk, EmbeddingResponse, ModelResponse

if TYPE_CHECKING:
    from ._stream import CompletionStream

__all__ = [
    "SyncStream",
    "batch_completion",
    "batch_completion_models",
    "batch_completion_models_all_responses",
    "completion",
    "embedding",
]

T = TypeVar("T")


def _run(
    name: str, twin: str, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any
) -> T:
    return run_blocking(name, twin, fn, *args, **kwargs)


class SyncStream:
    """A streamed completion for blocking code: iterate it for the chunks. Leaving a ``with``
    block, ``close()``, or breaking out of the ``for`` loop closes the HTTP stream."""

    def __init__(self, stream: CompletionStream) -> None:
        self._stream = stream
        self.model = stream.model
        self.provider = stream.provider

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        # A generator: when a ``for`` loop is left early, dropping it runs ``finally``.
        call = portal().call
        anext_ = self._stream.__anext__
        try:
            while True:
                try:
                    chunk = call(anext_)
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        """Close the HTTP stream now (idempotent)."""
        p = running_portal()  # None: the loop stopped (at exit), and its connections with it
        if p is not None and not self._stream.closed:
            p.call(self._stream.aclose)

    @property
    def closed(self) -> bool:
        return self._stream.closed

    def __del__(self) -> None:
        # Dropped without being read to its end or closed: close it on the loop, without
        # waiting (this may run in any thread, even the loop's own).
        stream = getattr(self, "_stream", None)
        if stream is None or stream.closed:
            return
        p = running_portal()
        if p is None:  # the loop is gone already, and its connections with it
            return
        try:
            p.start_task_soon(stream.aclose)
        except RuntimeError:  # on the loop's own thread: schedule it there
            try:
                asyncio.get_running_loop().create_task(stream.aclose())
            except RuntimeError:
                pass

    def collect(self) -> ModelResponse:
        """The rest of the stream assembled into one ModelResponse."""
        result: ModelResponse = portal().call(self._stream.collect)
        return result

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@overload
def completion(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: Literal[False] = False,
    **params: Any,
) -> ModelResponse: ...


@overload
def completion(
    model: str, messages: Sequence[Mapping[str, Any]], *, stream: Literal[True], **params: Any
) -> SyncStream: ...


@overload
def completion(
    model: str, messages: Sequence[Mapping[str, Any]], *, stream: bool, **params: Any
) -> ModelResponse | SyncStream: ...


def completion(
    model: str, messages: Sequence[Mapping[str, Any]], *, stream: bool = False, **params: Any
) -> ModelResponse | SyncStream:
    """Blocking :func:`salvo.acompletion`; with ``stream=True`` a :class:`SyncStream`."""
    if stream:
        opened = cast(
            "CompletionStream",
            _run(
                "completion",
                "acompletion",
                _api.acompletion,
                model,
                messages,
                stream=True,
                **params,
            ),
        )
        return SyncStream(opened)
    result: ModelResponse = _run(
        "completion", "acompletion", _api.acompletion, model, messages, **params
    )
    return result


def embedding(model: str, input: Any, **params: Any) -> EmbeddingResponse:
    """Blocking :func:`salvo.aembedding`."""
    return _run("embedding", "aembedding", _api.aembedding, model, input, **params)


def batch_completion(
    model: str, messages: Sequence[Sequence[Mapping[str, Any]]], **params: Any
) -> list[Result]:
    """Blocking :func:`salvo.abatch_completion`: many prompts to one model, in order."""
    return _run(
        "batch_completion", "abatch_completion", _api.abatch_completion, model, messages, **params
    )


def batch_completion_models(
    models: str | Sequence[str], messages: Sequence[Mapping[str, Any]], **params: Any
) -> ModelResponse:
    """Blocking :func:`salvo.arace`: the fastest model's answer (unlike LiteLLM's, really the
    fastest, with the others cancelled)."""
    result: ModelResponse = _run(
        "batch_completion_models", "arace", _api.arace, models, messages, **params
    )
    return result


def batch_completion_models_all_responses(
    models: str | Sequence[str], messages: Sequence[Mapping[str, Any]], **params: Any
) -> list[Result]:
    """Blocking :func:`salvo.agather_all`: every model's answer, in models order."""
    return _run(
        "batch_completion_models_all_responses",
        "agather_all",
        _api.agather_all,
        models,
        messages,
        **params,
    )
