"""Azure OpenAI, sans I/O: OpenAI's bodies at Azure's URLs.

A model string is ``azure/<deployment>``; ``AZURE_API_BASE`` (no default) is the resource,
e.g. ``https://my-resource.openai.azure.com``. Two URL styles:

- **classic** (default): ``{base}/openai/deployments/{deployment}/chat/completions
  ?api-version={version}`` with an ``api-key`` header; the version comes from
  ``api_version=...``, ``AZURE_API_VERSION``, or :data:`DEFAULT_API_VERSION`.
- **v1**: when the base ends with ``/openai/v1``, or the version is ``v1``, ``latest`` or
  ``preview``: ``{base}/openai/v1/chat/completions`` (``?api-version=preview`` for the
  preview channel) with ``Authorization: Bearer <key>``; the deployment goes in ``model``.

Streams are OpenAI's, except that Azure may open with a chunk that has ``choices: []`` and only
``prompt_filter_results``: such chunks (no choices, no usage) are skipped, so a stream's
first chunk (the one a race waits for) is a real one.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from .._types import ChatCompletionChunk
from ._base import Endpoint
from .openai import OpenAIAdapter, OpenAIStreamParser

__all__ = ["DEFAULT_API_VERSION", "AzureAdapter", "AzureStreamParser"]

#: The GA ``api-version`` used when none is configured.
DEFAULT_API_VERSION = "2024-10-21"

_V1_VERSIONS = frozenset({"v1", "latest", "preview"})


def is_v1(ep: Endpoint) -> bool:
    """True when ``ep`` should use the v1 (unversioned) API."""
    return ep.api_base.endswith("/openai/v1") or (ep.api_version or "") in _V1_VERSIONS


class AzureStreamParser(OpenAIStreamParser):
    """OpenAI's parser, minus Azure's content-filter-only chunks."""

    __slots__ = ()

    def feed(self, event: str | None, data: bytes) -> ChatCompletionChunk | None:
        chunk = super().feed(event, data)
        if chunk is not None and not chunk.choices and chunk.usage is None:
            return None
        return chunk


class AzureAdapter(OpenAIAdapter):
    """Azure OpenAI deployments (classic versioned URLs or the v1 API)."""

    def __init__(
        self,
        name: str = "azure",
        *,
        key_env: str | None = "AZURE_API_KEY",
        finish_reasons: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name, key_env=key_env, finish_reasons=finish_reasons)

    def headers(self, ep: Endpoint) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": "application/json"}
        if ep.api_key:
            if is_v1(ep):
                h["authorization"] = f"Bearer {ep.api_key}"
            else:
                h["api-key"] = ep.api_key
        h.update(ep.extra_headers)
        return h

    def resource_url(self, ep: Endpoint, path: str, *, deployment: bool = False) -> str:
        """The URL of ``path`` (``chat/completions``, ``files``, ``batches``, ...) for ``ep``;
        ``deployment=True`` puts it under the deployment (classic API only)."""
        base = ep.api_base
        version = ep.api_version or DEFAULT_API_VERSION
        if is_v1(ep):
            root = (
                base if base.endswith("/openai/v1") else f"{base.removesuffix('/openai')}/openai/v1"
            )
            url = f"{root}/{path}"
            return f"{url}?api-version=preview" if version == "preview" else url
        root = base if base.endswith("/openai") else f"{base}/openai"
        if deployment:
            root = f"{root}/deployments/{quote(ep.model, safe='')}"
        return f"{root}/{path}?api-version={quote(version, safe='')}"

    def chat_url(self, ep: Endpoint) -> str:
        return self.resource_url(ep, "chat/completions", deployment=True)

    def embedding_url(self, ep: Endpoint) -> str:
        return self.resource_url(ep, "embeddings", deployment=True)

    def stream_parser(self, ep: Endpoint) -> AzureStreamParser:
        return AzureStreamParser(ep, self.finish_reasons)
