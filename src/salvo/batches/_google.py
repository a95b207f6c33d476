"""The Google batch backends' entry point for the factory in ``_api.backend_for``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._store import LocalStore

if TYPE_CHECKING:
    from ._api import Backend

__all__ = ["google_backend"]


def google_backend(
    provider: str, client: Any, store: LocalStore, *, api_key: str | None, api_base: str | None
) -> Backend:
    """Gemini Batch Mode (``gemini``) or Vertex AI batch prediction (``vertex_ai``)."""
    if provider == "gemini":
        from ._gemini import GeminiBatches

        return GeminiBatches(client, store, api_key=api_key, api_base=api_base)
    from ._vertex import VertexBatches

    return VertexBatches(client, store, api_base=api_base)
