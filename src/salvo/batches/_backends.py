"""Which backend serves a provider's files and batches: the factory every batch module
imports (a leaf: it imports the backends lazily and nothing that imports it back).

``"openai"``, ``"azure"`` (and other OpenAI-shaped batch APIs) use their Files and Batch
APIs, ``"anthropic"`` uses Message Batches (files kept locally), ``"local"`` and every provider
without a batch API use the local engine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .._compat import LITELLM_KEYS
from .._errors import ConfigError
from ..providers import PROVIDERS
from ._store import FileSource, LocalStore
from ._types import Batch, FileDeleted, FileObject, Page

if TYPE_CHECKING:
    from types import TracebackType

    from .._client import Client

__all__ = ["AsyncStream", "Backend", "backend_for", "is_local", "local_store", "pick_provider"]

T = TypeVar("T")
log = logging.getLogger("salvo")
_STORES: dict[str, LocalStore] = {}


class Backend(Protocol):
    provider: str
    store: LocalStore

    async def create_file(
        self, source: FileSource, *, purpose: str, filename: str | None
    ) -> FileObject: ...
    async def retrieve_file(self, file_id: str) -> FileObject: ...
    async def list_files(
        self, *, purpose: str | None, limit: int, after: str | None, order: str
    ) -> Page[FileObject]: ...
    async def delete_file(self, file_id: str) -> FileDeleted: ...
    def content(self, file_id: str) -> AsyncIterator[bytes]: ...
    async def create_batch(
        self,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Mapping[str, str] | None,
    ) -> Batch: ...
    async def retrieve_batch(self, batch_id: str) -> Batch: ...
    async def list_batches(self, *, limit: int, after: str | None) -> Page[Batch]: ...
    async def cancel_batch(self, batch_id: str) -> Batch: ...


class AsyncStream(Generic[T]):
    """An async iterator that is also an async context manager: leaving the ``async with``
    (or ``aclose()``) ends it early and closes what it holds (an HTTP response, a file)."""

    def __init__(self, agen: AsyncGenerator[T, None]) -> None:
        self._agen = agen

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        await self._agen.aclose()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def is_local(provider: str) -> bool:
    """True when ``provider``'s batches run on the local engine."""
    if provider == "local":
        return True
    info = PROVIDERS.get(provider)
    if info is None:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"Unknown provider {provider!r}; use 'local' or one of: {known}.")
    return not info.capabilities.batch_api


def _consume(extra: Mapping[str, Any]) -> None:
    """LiteLLM's client-side arguments on a files/batches call are consumed (a debug line
    says so); anything else is a ConfigError that names it, not a bare TypeError."""
    unknown = sorted(k for k in extra if k not in LITELLM_KEYS)
    if unknown:
        raise ConfigError(
            f"Unexpected argument(s) {', '.join(map(repr, unknown))} for a files/batches "
            "function; it takes provider= (or custom_llm_provider=), client=, api_key=, "
            "api_base= and store_dir=, besides its own."
        )
    log.debug("salvo ignored LiteLLM-only arguments (not sent): %s", ", ".join(sorted(extra)))


def pick_provider(provider: str, custom_llm_provider: str | None) -> str:
    """``provider``, or LiteLLM's ``custom_llm_provider`` when given (one of them, or both
    the same)."""
    if custom_llm_provider is None:
        return provider
    if not isinstance(custom_llm_provider, str) or not custom_llm_provider:
        raise ConfigError(
            f"custom_llm_provider must be a provider name, not {custom_llm_provider!r}."
        )
    from ..providers import PROVIDER_ALIASES

    custom = PROVIDER_ALIASES.get(custom_llm_provider, custom_llm_provider)
    if provider not in ("openai", custom):
        raise ConfigError(
            f"provider={provider!r} and custom_llm_provider={custom_llm_provider!r} disagree; "
            "pass one of them."
        )
    return custom


def local_store(client: Client, store_dir: str | os.PathLike[str] | None) -> LocalStore:
    root = store_dir if store_dir is not None else client.config.setting("batch_dir")
    store = LocalStore(root)
    return _STORES.setdefault(str(store.root.resolve()), store)


async def backend_for(
    provider: str,
    *,
    client: Client | None = None,
    api_key: str | None = None,
    api_base: str | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    model: str | None = None,
    concurrency: int | None = None,
    on_progress: Callable[[Batch], None] | None = None,
    custom_llm_provider: str | None = None,
    **extra: Any,
) -> Backend:
    """The backend that serves ``provider``'s files and batches (LiteLLM's
    ``custom_llm_provider`` names it too; its other client-side arguments are consumed)."""
    provider = pick_provider(provider, custom_llm_provider)
    if extra:
        _consume(extra)
    if client is None:
        from .._api import default_client

        client = await default_client()
    if is_local(provider):
        from ._local import LocalBatches

        return LocalBatches(
            client,
            local_store(client, store_dir),
            provider,
            api_key=api_key,
            api_base=api_base,
            model=model,
            concurrency=concurrency,
            on_progress=on_progress,
        )
    if provider == "anthropic":
        from ._anthropic import AnthropicBatches

        store = local_store(client, store_dir)
        return AnthropicBatches(client, store, api_key=api_key, api_base=api_base)
    if provider in ("gemini", "vertex_ai"):
        from ._google import google_backend

        store = local_store(client, store_dir)
        return google_backend(provider, client, store, api_key=api_key, api_base=api_base)
    from ._openai import OpenAIBatches

    store = local_store(client, store_dir)
    return OpenAIBatches(client, provider, store, api_key=api_key, api_base=api_base)
