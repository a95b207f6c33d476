"""The public batch-job functions: files and batches on any provider, one OpenAI shape.

``provider`` picks the backend: ``"openai"`` and ``"azure"`` use their Files and Batch APIs,
``"anthropic"`` uses Message Batches (files kept locally), ``"local"`` and every provider
without a batch API use the local engine (files and state in the local store). Every function
takes ``client=`` (default: the module-level client of the running loop), ``api_key=`` and
``api_base=``; the local ones also ``store_dir=``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from .._compat import LITELLM_KEYS, litellm_args
from .._errors import ConfigError
from .._messages import CALL_KEYS, check_messages
from ._backends import Backend as Backend
from ._backends import backend_for as backend_for
from ._backends import is_local as is_local
from ._backends import local_store as local_store
from ._backends import pick_provider as pick_provider
from ._cost import with_cost
from ._store import FileSource
from ._types import AsyncStream as AsyncStream
from ._types import Batch, FileContent, FileDeleted, FileObject, Page

if TYPE_CHECKING:
    from .._client import Client

__all__ = [
    "AsyncStream",
    "Backend",
    "acancel_batch",
    "acreate_batch",
    "acreate_file",
    "adelete_file",
    "afile_content",
    "aiter_file_content",
    "alist_batches",
    "alist_files",
    "aretrieve_batch",
    "aretrieve_file",
    "asubmit_batch",
    "backend_for",
    "is_local",
]

_ENCODE = msgspec.json.Encoder().encode


# -- files ---------------------------------------------------------------------------------------


async def acreate_file(
    file: FileSource, *, purpose: str = "batch", provider: str = "openai",
    filename: str | None = None, **kw: Any,
) -> FileObject:  # fmt: skip
    """Upload a file (a path, bytes, or a binary file object, streamed, never read whole)."""
    backend = await backend_for(provider, **kw)
    return await backend.create_file(file, purpose=purpose, filename=filename)


async def aretrieve_file(file_id: str, *, provider: str = "openai", **kw: Any) -> FileObject:
    return await (await backend_for(provider, **kw)).retrieve_file(file_id)


async def alist_files(
    *, provider: str = "openai", purpose: str | None = None, limit: int = 100,
    after: str | None = None, order: str = "desc", **kw: Any,
) -> Page[FileObject]:  # fmt: skip
    backend = await backend_for(provider, **kw)
    return await backend.list_files(purpose=purpose, limit=limit, after=after, order=order)


async def adelete_file(file_id: str, *, provider: str = "openai", **kw: Any) -> FileDeleted:
    return await (await backend_for(provider, **kw)).delete_file(file_id)


def aiter_file_content(file_id: str, *, provider: str = "openai", **kw: Any) -> AsyncStream[bytes]:
    """A file's bytes, piece by piece: ``async with aiter_file_content(id) as pieces:``."""

    async def pieces() -> AsyncGenerator[bytes, None]:
        backend = await backend_for(provider, **kw)
        stream = backend.content(file_id)
        try:
            async for piece in stream:
                yield piece
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    return AsyncStream(pieces())


async def afile_content(file_id: str, *, provider: str = "openai", **kw: Any) -> FileContent:
    """A file's whole content (batch output files: JSONL), as bytes that also have the
    openai SDK's ``.content``, ``.text``, ``.read()`` and ``.iter_lines()``."""
    async with aiter_file_content(file_id, provider=provider, **kw) as pieces:
        return FileContent(b"".join([piece async for piece in pieces]))


# -- batches -------------------------------------------------------------------------------------


async def acreate_batch(
    *, input_file_id: str, endpoint: str = "/v1/chat/completions",
    completion_window: str = "24h", metadata: Mapping[str, str] | None = None,
    provider: str = "openai", **kw: Any,
) -> Batch:  # fmt: skip
    """Create a batch from an uploaded JSONL file. On the local engine the job starts at
    once, in a task on this loop (``model=`` and ``concurrency=`` apply to it)."""
    backend = await backend_for(provider, **kw)
    return await backend.create_batch(
        input_file_id=input_file_id,
        endpoint=endpoint,
        completion_window=completion_window,
        metadata=metadata,
    )


async def aretrieve_batch(batch_id: str, *, provider: str = "openai", **kw: Any) -> Batch:
    backend = await backend_for(provider, **kw)
    return with_cost(backend, await backend.retrieve_batch(batch_id))


async def alist_batches(
    *, provider: str = "openai", limit: int = 20, after: str | None = None, **kw: Any
) -> Page[Batch]:
    """One page of batches, newest first; the next page is ``after=page.last_id``."""
    return await (await backend_for(provider, **kw)).list_batches(limit=limit, after=after)


async def acancel_batch(batch_id: str, *, provider: str = "openai", **kw: Any) -> Batch:
    """Ask the batch to stop; it passes through ``cancelling`` to ``cancelled``."""
    return await (await backend_for(provider, **kw)).cancel_batch(batch_id)


def _target(client: Client, model: str, over: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(provider, the model to write in each line, backend overrides) for a submitted batch:
    the provider's own batch API unless the deployment says ``batch: local``, has a custom
    api_base, or the provider has none; the local engine otherwise."""
    dep = client.options(model, dict(over)).dep
    info = dep.info
    custom_base = dep.endpoint.api_base != (info.base_url or "").rstrip("/")
    if info.name == "vertex_ai":  # its api_base holds the project and location
        from .._vertex_config import is_default_base

        custom_base = not is_default_base(dep.endpoint.api_base)
    native = info.capabilities.batch_api and (
        dep.batch == "native" or (dep.batch is None and not custom_base)
    )
    if not native:
        return "local", model, over
    return (
        info.name,
        dep.endpoint.model,
        {"api_key": dep.endpoint.api_key, "api_base": dep.endpoint.api_base},
    )


async def asubmit_batch(
    model: str, list_of_messages: Sequence[Sequence[Mapping[str, Any]]], *,
    provider: str | None = None, custom_ids: Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None, client: Client | None = None,
    api_key: str | None = None, api_base: str | None = None,
    store_dir: str | os.PathLike[str] | None = None, **params: Any,
) -> Batch:  # fmt: skip
    """Many prompts to one model as a batch job: messages -> JSONL -> file -> batch. The
    custom_ids are ``request-0``, ``request-1``, ... unless given. ``provider`` defaults to
    the model's provider when it has a batch API (and no custom api_base), else ``local``."""
    if client is None:
        from .._api import default_client

        client = await default_client()
    custom = params.pop("custom_llm_provider", None)
    if custom is not None:
        provider = pick_provider(provider or custom, custom)
    if params and not LITELLM_KEYS.isdisjoint(params):  # LiteLLM's own: never in a line
        litellm_args(client.config, model, params)
        for key in CALL_KEYS.intersection(params):
            del params[key]
    if custom_ids is not None and len(custom_ids) != len(list_of_messages):
        raise ConfigError("custom_ids must have one id per item of list_of_messages.")
    over = {k: v for k, v in (("api_key", api_key), ("api_base", api_base)) if v is not None}
    line_model = model
    if provider is None:
        provider, line_model, over = _target(client, model, over)
    lines = []
    for i, messages in enumerate(list_of_messages):
        try:
            check_messages(messages)
        except ConfigError as exc:
            raise ConfigError(f"list_of_messages[{i}]: {exc}") from None
        body = {"model": line_model, "messages": messages, **params}
        custom_id = custom_ids[i] if custom_ids is not None else f"request-{i}"
        line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
        lines.append(_ENCODE({**line, "body": body}))
    backend = await backend_for(
        provider,
        client=client,
        store_dir=store_dir,
        api_key=over.get("api_key"),
        api_base=over.get("api_base"),
    )
    data = b"\n".join(lines) + b"\n"
    fo = await backend.create_file(data, purpose="batch", filename="salvo-submit.jsonl")
    return await backend.create_batch(
        input_file_id=fo.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata=metadata,
    )
