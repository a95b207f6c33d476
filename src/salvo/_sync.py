"""Blocking twins with LiteLLM's names, for scripts. Inside a running event loop they refuse,
naming the coroutine to await instead (blocking a loop would freeze every other task on it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from . import _api
from ._errors import SalvoError
from ._fanout import Result
from ._types import EmbeddingResponse, ModelResponse

__all__ = [
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
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(fn(*args, **kwargs))
    raise SalvoError(
        f"salvo.{name}() blocks, and it was called inside a running event loop; "
        f"use `await salvo.{twin}(...)` instead."
    )


def completion(model: str, messages: Sequence[Mapping[str, Any]], **params: Any) -> ModelResponse:
    """Blocking :func:`salvo.acompletion` (no streaming: use the async API to stream)."""
    if params.get("stream"):
        raise SalvoError("salvo.completion() cannot stream; use `await salvo.acompletion(...)`.")
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
