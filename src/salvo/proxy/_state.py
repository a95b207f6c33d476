"""One proxy's state: config, settings, Client, the secrets it must never relay, and the
answers it precomputes. Its own module, below the route modules and ``_app``, so that a route
module never imports the application back."""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec
from aiohttp import web

from .._client import Client
from .._config import Config
from .._models import resolve_deployment
from ..providers import PROVIDERS
from ._errors import Redactor
from ._scrub import Scrubber
from ._settings import ProxySettings

__all__ = ["STATE", "ProxyState"]

_ENCODE = msgspec.json.Encoder().encode


class ProxyState:
    """One proxy's config, settings, Client and precomputed answers.

    ``redact`` scrubs text (error messages) of every secret the proxy knows; ``scrub`` does the
    same to bytes relayed from an upstream (bodies, stream events), so an upstream that echoes
    its key never hands it to a proxy client."""

    def __init__(self, config: Config, settings: ProxySettings, client: Client) -> None:
        self.config = config
        self.settings = settings
        self.client = client
        self.aliases = frozenset(config.model_names)
        self.started = int(time.time())
        self.ready = False
        self.deployments = {
            name: [resolve_deployment(name, config=config, entry_index=i) for i in range(len(es))]
            for name, es in config.models.items()
        }
        secrets: list[str | None] = [settings.master_key]
        secrets += [d.endpoint.api_key for ds in self.deployments.values() for d in ds]
        secrets += [os.environ.get(p.key_env) for p in PROVIDERS.values() if p.key_env]
        self.redact = Redactor(secrets)
        self.scrub = Scrubber(secrets)
        self.models_body = _ENCODE(
            {"object": "list", "data": [self.model_object(n) for n in config.model_names]}
        )

    def model_object(self, name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": self.started,
            "owned_by": self.deployments[name][0].provider,
        }


STATE = web.AppKey("salvo_proxy_state", ProxyState)
