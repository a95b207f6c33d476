"""Model strings -> deployments: which provider, which base URL, which key, which limits.

``provider/name`` picks a row of the provider table; a bare name is matched by prefix
(``gpt-``, ``claude-``, ...) or by an alias from the config's ``model_list``. Everything is
checked here, before any request is sent: an unknown provider or a missing key is a
:class:`~salvo.ConfigError` that says what to write or which variable to set.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._config import Config, ModelEntry
from ._errors import ConfigError
from .providers import PROVIDERS, Adapter, Endpoint, ProviderInfo

__all__ = ["Deployment", "parse_models", "resolve_deployment", "split_model"]


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything a call needs to reach one model, resolved once and reused."""

    name: str
    info: ProviderInfo
    endpoint: Endpoint
    headers: Mapping[str, str] = field(repr=False)  # they carry the key
    rpm: int | None = None
    tpm: int | None = None
    max_parallel_requests: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    batch: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    #: Per-attempt auth: an async callable returning headers that ``Client.send`` merges into
    #: every attempt's request (short-lived tokens, e.g. Google's). None: the static headers.
    auth: Callable[[], Awaitable[Mapping[str, str]]] | None = field(default=None, repr=False)

    @property
    def adapter(self) -> Adapter:
        return self.info.adapter

    @property
    def provider(self) -> str:
        return self.info.name

    @property
    def limit_key(self) -> tuple[str, str, str]:
        """Calls that share this key share rate limits: (provider, api_base, api key)."""
        ep = self.endpoint
        return (ep.provider, ep.api_base, ep.api_key or "")


def parse_models(models: str | Sequence[str]) -> list[str]:
    """A list of model strings, or one comma-separated string, as a clean list."""
    items = models.split(",") if isinstance(models, str) else list(models)
    out = []
    for m in items:
        if not isinstance(m, str):
            raise ConfigError(f"Model names must be strings, got {type(m).__name__}: {m!r}.")
        m = m.strip()
        if m:
            out.append(m)
    if not out:
        raise ConfigError("No model given: pass a model string or a list of them.")
    return out


def _known() -> str:
    return ", ".join(sorted(PROVIDERS))


def split_model(model: str) -> tuple[ProviderInfo, str]:
    """``provider/name`` or a bare name with a known prefix -> (provider row, name)."""
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(
            f"A model must be a non-empty string like 'openai/gpt-4o-mini', not {model!r}."
        )
    model = model.strip()
    head, sep, rest = model.partition("/")
    if sep:
        info = PROVIDERS.get(head)
        if info is None:
            raise ConfigError(
                f"Unknown provider {head!r} in model {model!r}. Known providers: {_known()}. "
                "Write the model as provider/name."
            )
        if not rest:
            raise ConfigError(f"Model {model!r} names a provider but no model after the '/'.")
        return info, rest
    for info in PROVIDERS.values():
        if any(model.startswith(p) for p in info.prefixes):
            return info, model
    raise ConfigError(
        f"Cannot tell which provider serves {model!r}. Write it as provider/name "
        f"(e.g. openai/{model}); known providers: {_known()}."
    )


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _env_base(info: ProviderInfo) -> str | None:
    if info.base_env:
        value = os.environ.get(info.base_env)
        if value:
            return value
    if info.name == "openai":
        return os.environ.get("OPENAI_API_BASE") or None
    return None


def resolve_deployment(
    model: str,
    *,
    config: Config | None = None,
    overrides: Mapping[str, Any] | None = None,
    entry_index: int = 0,
) -> Deployment:
    """Resolve a model string (or a config alias) to a Deployment; raise ConfigError if it
    cannot be called as written."""
    overrides = overrides or {}
    entry: ModelEntry | None = None
    if config is not None and isinstance(model, str):
        entries = config.entries(model.strip())
        if entries:
            entry = entries[entry_index % len(entries)]
    if entry is not None:
        target = entry.params["model"]
        provider_hint = entry.params.get("custom_llm_provider")
        if provider_hint and "/" not in target:
            target = f"{provider_hint}/{target}"
        info, name = split_model(target)

        def from_entry(key: str) -> Any:
            return entry.param(key)

        extra_params = entry.extra_params()
    else:
        info, name = split_model(model)

        def from_entry(key: str) -> Any:
            return None

        extra_params = {}

    api_key = _first(overrides.get("api_key"), from_entry("api_key"))
    if api_key is None and info.key_env:
        api_key = os.environ.get(info.key_env) or None
    if api_key is None and info.key_required:
        raise ConfigError(
            f"No API key for {info.name} (model {model!r}): set the environment variable "
            f"{info.key_env}, or pass api_key=... for this call or in the config entry."
        )
    api_base = _first(
        overrides.get("api_base"),
        overrides.get("base_url"),
        from_entry("api_base"),
        from_entry("base_url"),
        _env_base(info),
        info.base_url or None,
    )
    if not api_base:
        raise ConfigError(
            f"Provider {info.name} has no default base URL: pass api_base=... for model "
            f"{model!r} (or set {info.base_env})."
        )
    api_version = _first(overrides.get("api_version"), from_entry("api_version"))
    if api_version is None and info.version_env:
        api_version = os.environ.get(info.version_env) or info.default_version
    extra_headers = _first(overrides.get("extra_headers"), from_entry("extra_headers")) or {}
    ep = Endpoint(
        provider=info.name,
        model=name,
        api_base=str(api_base).rstrip("/"),
        api_key=api_key,
        api_version=api_version,
        extra_headers=dict(extra_headers),
    )

    def num(key: str) -> Any:
        return _first(overrides.get(key), from_entry(key))

    return Deployment(
        name=model,
        info=info,
        endpoint=ep,
        headers=info.adapter.headers(ep),
        rpm=num("rpm"),
        tpm=num("tpm"),
        max_parallel_requests=num("max_parallel_requests"),
        timeout=num("timeout"),
        max_retries=num("max_retries"),
        batch=from_entry("batch"),
        params=extra_params,
    )
