"""Vertex AI's Gemini endpoint, sans I/O: the Gemini adapter on Vertex's URLs.

``{api_base}/publishers/google/models/{model}:generateContent`` (streams:
``:streamGenerateContent?alt=sse``), where the deployment's api_base already holds
``/v1/projects/{project}/locations/{location}`` (``salvo._vertex_config``). Bodies, streams,
embeddings and errors are Gemini's (protocols.md 15.1). There is no key header: the
deployment's ``auth`` adds ``Authorization: Bearer <access token>`` to every attempt. A model
written ``publisher/name`` goes to ``publishers/{publisher}/models/{name}``.
"""

from __future__ import annotations

from ._base import Endpoint
from .gemini import GeminiAdapter

__all__ = ["VertexAdapter", "model_path"]


def model_path(model: str) -> str:
    """``publishers/google/models/{model}`` (``a/b`` -> ``publishers/a/models/b``; a path
    that already starts with ``publishers/`` or ``projects/`` is kept)."""
    if model.startswith(("publishers/", "projects/")):
        return model
    publisher, sep, name = model.partition("/")
    if sep:
        return f"publishers/{publisher}/models/{name}"
    return f"publishers/google/models/{model}"


class VertexAdapter(GeminiAdapter):
    """The Gemini wire format on Vertex AI (bearer-token auth)."""

    def __init__(self, name: str = "vertex_ai") -> None:
        super().__init__(name, key_env=None)

    def headers(self, ep: Endpoint) -> dict[str, str]:
        h = {"content-type": "application/json"}
        h.update(ep.extra_headers)
        return h

    def _model_url(self, ep: Endpoint) -> str:
        return f"{ep.api_base}/{model_path(ep.model)}"
