"""Which backend serves a provider's files and batches, and what each provider's batches take.

A leaf: it imports only the batch types, the local store and the provider table; the backend
modules are imported by name on first use, so ``_api``, ``_results``, ``_sync``, the CLI and
the proxy all import the factory from here and nothing imports back.

A provider with a Batch API is one entry of :data:`BACKENDS`::

    "mistral": BackendEntry("salvo.batches._mistral:MistralBatches", Limits(...)),

The factory named by ``"module:attribute"`` is called with the keywords ``client``,
``provider``, ``store``, ``api_key`` and ``api_base``. :class:`Limits` are what the provider
accepts in one batch (request URLs, bytes, lines, custom_id length, one model per batch);
``salvo.batches._check`` refuses a file that breaks one before anything is uploaded, naming the
line and the limit. Every provider without an entry (or with ``batch_api`` off in the
provider table) runs on the local engine.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .._compat import LITELLM_KEYS
from .._errors import ConfigError
from ..providers import PROVIDERS
from ._store import FileSource, LocalStore
from ._types import Batch, FileDeleted, FileObject, Page

if TYPE_CHECKING:
    from .._client import Client

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendEntry",
    "Limits",
    "backend_for",
    "is_local",
    "limits_for",
    "local_store",
    "pick_provider",
    "register_backend",
]

log = logging.getLogger("salvo")
MB = 1024 * 1024
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


@dataclass(frozen=True, slots=True)
class Limits:
    """What one batch on a provider may hold. ``None``: no limit salvo knows of."""

    #: Request URLs a line may name (``url``); a line naming another is refused.
    urls: frozenset[str]
    #: Bytes of the input file.
    max_bytes: int | None = None
    #: Requests (non-blank lines) in one batch.
    max_lines: int | None = None
    #: Characters of a custom_id.
    max_custom_id: int | None = None
    #: Every line must name the same model (the provider takes the model per batch).
    one_model: bool = False
    #: Where the figures come from (said in the refusal, so a user can check them).
    source: str = ""


@dataclass(frozen=True, slots=True)
class BackendEntry:
    """``factory``: ``"module:attribute"``, called with client, provider, store, api_key,
    api_base (keywords); ``limits``: what one batch may hold."""

    factory: str
    limits: Limits


_CHAT = "/v1/chat/completions"
_EMBED = "/v1/embeddings"
_OPENAI_URLS = frozenset(
    {_CHAT, _EMBED, "/v1/completions", "/v1/responses", "/v1/moderations"}
)  # protocols.md 4.1 (the endpoints whose lines carry a JSON body)
_OPENAI = Limits(_OPENAI_URLS, 200 * MB, 50_000, source="OpenAI Batch API limits")

#: provider -> its batch backend and limits. Register more with :func:`register_backend`.
BACKENDS: dict[str, BackendEntry] = {
    "openai": BackendEntry("salvo.batches._openai:OpenAIBatches", _OPENAI),
    "azure": BackendEntry(
        "salvo.batches._openai:OpenAIBatches",
        Limits(
            _OPENAI_URLS | {u.removeprefix("/v1") for u in _OPENAI_URLS},
            200 * MB,
            100_000,
            source="Azure OpenAI global batch limits",
        ),
    ),
    "anthropic": BackendEntry(
        "salvo.batches._anthropic:AnthropicBatches",
        Limits(frozenset({_CHAT}), 256 * MB, 100_000, 64, source="Anthropic Message Batches"),
    ),
    "groq": BackendEntry(
        "salvo.batches._openai:OpenAIBatches",
        Limits(frozenset({_CHAT}), 100 * MB, 50_000, source="Groq batch docs; line cap unverified"),
    ),
    "mistral": BackendEntry(
        "salvo.batches._mistral:MistralBatches",
        Limits(
            frozenset({_CHAT, _EMBED, "/v1/fim/completions", "/v1/moderations"}),
            512 * MB,
            None,
            one_model=True,
            source="Mistral files API (512 MB) and batch jobs (one model per job)",
        ),
    ),
    "gemini": BackendEntry(
        "salvo.batches._google:google_backend",
        Limits(
            frozenset({_CHAT, _EMBED}),
            2048 * MB,
            None,
            one_model=True,
            source="Gemini Batch Mode (a 2 GB input file, one model per batch)",
        ),
    ),
    "vertex_ai": BackendEntry(
        "salvo.batches._google:google_backend",
        Limits(frozenset({_CHAT}), None, None, one_model=True, source="Vertex AI batch prediction"),
    ),
    "together": BackendEntry(
        "salvo.batches._together:TogetherBatches",
        Limits(
            frozenset({_CHAT}),
            100 * MB,
            50_000,
            64,
            one_model=True,
            source="Together Batch API limits",
        ),
    ),
}


def register_backend(provider: str, entry: BackendEntry) -> None:
    """Add or replace ``provider``'s batch backend (and its limits)."""
    BACKENDS[provider] = entry


def limits_for(provider: str) -> Limits | None:
    entry = BACKENDS.get(provider)
    return entry.limits if entry is not None else None


def is_local(provider: str) -> bool:
    """True when ``provider``'s batches run on the local engine."""
    if provider == "local":
        return True
    info = PROVIDERS.get(provider)
    if info is None:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"Unknown provider {provider!r}; use 'local' or one of: {known}.")
    return not info.capabilities.batch_api or provider not in BACKENDS


def local_store(client: Client, store_dir: str | os.PathLike[str] | None) -> LocalStore:
    root = store_dir if store_dir is not None else client.config.setting("batch_dir")
    store = LocalStore(root)
    return _STORES.setdefault(str(store.root.resolve()), store)


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


def _factory(entry: BackendEntry) -> Callable[..., Backend]:
    module, _, attr = entry.factory.partition(":")
    made: Callable[..., Backend] = getattr(importlib.import_module(module), attr)
    return made


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
    store = local_store(client, store_dir)
    if is_local(provider):
        from ._local import LocalBatches

        return LocalBatches(
            client,
            store,
            provider,
            api_key=api_key,
            api_base=api_base,
            model=model,
            concurrency=concurrency,
            on_progress=on_progress,
        )
    build: Any = _factory(BACKENDS[provider])
    backend: Backend = build(
        client=client, provider=provider, store=store, api_key=api_key, api_base=api_base
    )
    return backend
