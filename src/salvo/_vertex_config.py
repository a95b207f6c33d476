"""Vertex AI settings, with LiteLLM's names, resolved before any request is sent.

- project: ``vertex_project`` (per call or config entry), ``VERTEXAI_PROJECT``, else the
  service account's ``project_id``;
- location: ``vertex_location``, ``VERTEXAI_LOCATION``, else ``us-central1``;
- credentials: ``vertex_credentials`` (a service-account JSON file path, the JSON text, or a
  mapping), else the file ``GOOGLE_APPLICATION_CREDENTIALS`` names;
- endpoint: ``api_base`` (per call, config, or ``VERTEXAI_API_BASE``), else
  ``https://{location}-aiplatform.googleapis.com`` (``global``: ``aiplatform.googleapis.com``).

The deployment's ``api_base`` becomes ``{base}/v1/projects/{project}/locations/{location}``
(an ``api_base`` that already has a ``/projects/`` path is kept as it is)
(what the Vertex adapter and the batch backend append to), and its ``auth`` the account's
shared :class:`~salvo._google_auth.ServiceAccountAuth`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from typing import Any

from ._errors import ConfigError
from ._google_auth import ServiceAccountAuth, credentials_auth, load_credentials
from .providers import Endpoint

__all__ = ["VERTEX_KEYS", "is_default_base", "vertex_deployment"]

#: The per-call / config keys that configure Vertex AI (not sent in a request body).
VERTEX_KEYS = frozenset({"vertex_project", "vertex_location", "vertex_credentials"})
_LOCATION = re.compile(r"^[a-z0-9-]+$")
_DEFAULT = re.compile(r"^https://([a-z0-9-]+-)?aiplatform\.googleapis\.com/")


def is_default_base(api_base: str) -> bool:
    """True when a resolved Vertex api_base is Google's own endpoint (not a custom one)."""
    return _DEFAULT.match(api_base) is not None


def _base_for(location: str) -> str:
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def vertex_deployment(
    ep: Endpoint, setting: Callable[[str], Any], *, custom_base: str | None
) -> tuple[Endpoint, ServiceAccountAuth]:
    """The Vertex endpoint (project and location in its api_base) and its token source."""
    source = setting("vertex_credentials") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not source:
        raise ConfigError(
            f"No credentials for vertex_ai (model {ep.model!r}): set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service-account JSON file, or pass "
            "vertex_credentials=... (a path, the JSON text or a dict)."
        )
    info = load_credentials(source)
    project = (
        setting("vertex_project") or os.environ.get("VERTEXAI_PROJECT") or info.get("project_id")
    )
    if not project:
        raise ConfigError(
            "No project for vertex_ai: set VERTEXAI_PROJECT or pass vertex_project=... (the "
            "service-account JSON names none)."
        )
    location = setting("vertex_location") or os.environ.get("VERTEXAI_LOCATION") or "us-central1"
    if not _LOCATION.match(str(location)):
        raise ConfigError(f"vertex_location {location!r} is not a Google Cloud location name.")
    base = (custom_base or _base_for(str(location))).rstrip("/")
    if "/projects/" in base:  # already a resolved Vertex base (batches pass it on)
        api_base = base
    else:
        api_base = f"{base}/v1/projects/{project}/locations/{location}"
    auth = credentials_auth(info)
    return dataclasses.replace(ep, api_base=api_base), auth
