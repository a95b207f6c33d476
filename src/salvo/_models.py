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
from .providers import (
    BASE_ENV_FALLBACKS,
    KEY_ENV_FALLBACKS,
    PROVIDER_ALIASES,
    PROVIDERS,
    UNSUPPORTED,
    Adapter,
    Endpoint,
    ProviderInfo,
)

__all__ = [
    "Auth",
    "Deployment",
    "parse_models",
    "resolve_deployment",
    "split_model",
    "with_provider",
]

#: Async callable of the client's aiohttp session -> headers to add to one attempt.
Auth = Callable[[Any], Awaitable[Mapping[str, str]]]


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
    #: Per-attempt auth: ``await auth(session)`` returns headers that ``Client.send`` merges into
    #: every attempt's request (short-lived tokens: Vertex AI's). An ``invalidate(headers)``
    #: method, when it has one, is called on a 401, and the attempt is made once more with
    #: fresh headers. None: the static headers only.
    auth: Auth | None = field(default=None, repr=False)

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


def _unknown(head: str, model: str) -> ConfigError:
    instead = UNSUPPORTED.get(head)
    if instead is not None:
        return ConfigError(
            f"salvo has no {head!r} provider yet (model {model!r}). {instead} "
            f"Known providers: {_known()}."
        )
    return ConfigError(
        f"Unknown provider {head!r} in model {model!r}. Known providers: {_known()}. "
        "Write the model as provider/name."
    )


def split_model(model: str) -> tuple[ProviderInfo, str]:
    """``provider/name`` or a bare name with a known prefix -> (provider row, name)."""
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(
            f"A model must be a non-empty string like 'openai/gpt-4o-mini', not {model!r}."
        )
    model = model.strip()
    head, sep, rest = model.partition("/")
    if sep:
        info = PROVIDERS.get(head) or PROVIDERS.get(PROVIDER_ALIASES.get(head, ""))
        if info is None:
            raise _unknown(head, model)
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


def with_provider(model: str, provider: str | None) -> str:
    """LiteLLM's ``custom_llm_provider``: ``model`` as ``provider/model`` unless it says so."""
    if not provider:
        return model
    if not isinstance(provider, str):
        raise ConfigError(f"custom_llm_provider must be a provider name, not {provider!r}.")
    if model.startswith(f"{provider}/"):
        return model
    return f"{provider}/{model}"


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _env(names: Sequence[str]) -> tuple[str | None, str | None]:
    """(the first non-empty value among the variables, the first one set but empty)."""
    empty = None
    for name in names:
        value = os.environ.get(name)
        if value:
            return value, None
        if value is not None and empty is None:
            empty = name
    return None, empty


def _env_base(info: ProviderInfo) -> str | None:
    names = ([info.base_env] if info.base_env else []) + list(BASE_ENV_FALLBACKS.get(info.name, ()))
    return _env(names)[0]


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
        target = with_provider(entry.params["model"], entry.params.get("custom_llm_provider"))
        info, name = split_model(target)

        def from_entry(key: str) -> Any:
            return entry.param(key)

        extra_params = entry.extra_params()
    else:
        info, name = split_model(with_provider(model, overrides.get("custom_llm_provider")))

        def from_entry(key: str) -> Any:
            return None

        extra_params = {}

    api_key = _first(overrides.get("api_key"), from_entry("api_key"))
    empty = None
    if api_key is None and info.key_env:
        api_key, empty = _env([info.key_env, *KEY_ENV_FALLBACKS.get(info.name, ())])
    if api_key is None and info.key_required:
        if empty is not None:
            raise ConfigError(
                f"No API key for {info.name} (model {model!r}): the environment variable "
                f"{empty} is set but empty. Put the key in it, or pass api_key=... for this "
                "call or in the config entry."
            )
        also = "".join(f" (or {n})" for n in KEY_ENV_FALLBACKS.get(info.name, ()))
        raise ConfigError(
            f"No API key for {info.name} (model {model!r}): set the environment variable "
            f"{info.key_env}{also}, or pass api_key=... for this call or in the config entry."
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

    def num(key: str, litellm: str, setting: str) -> Any:
        # the call, then the entry (salvo's name, then LiteLLM's), then salvo.<setting>
        return _first(
            overrides.get(key), from_entry(key), from_entry(litellm), overrides.get(setting)
        )

    _entry_prices(info.name, name, overrides, from_entry)

    auth = None
    if info.name == "vertex_ai":
        from ._vertex_config import vertex_deployment

        custom = _first(
            overrides.get("api_base"),
            overrides.get("base_url"),
            from_entry("api_base"),
            from_entry("base_url"),
            _env_base(info),
        )
        ep, auth = vertex_deployment(
            ep, lambda key: _first(overrides.get(key), from_entry(key)), custom_base=custom
        )
    return Deployment(
        name=model,
        info=info,
        endpoint=ep,
        headers=info.adapter.headers(ep),
        rpm=_first(overrides.get("rpm"), from_entry("rpm")),
        tpm=_first(overrides.get("tpm"), from_entry("tpm")),
        max_parallel_requests=_first(
            overrides.get("max_parallel_requests"), from_entry("max_parallel_requests")
        ),
        timeout=num("timeout", "request_timeout", "salvo.request_timeout"),
        max_retries=num("max_retries", "num_retries", "salvo.num_retries"),
        batch=from_entry("batch"),
        params=extra_params,
        auth=auth,
    )


def _entry_prices(provider: str, name: str, overrides: Mapping[str, Any], from_entry: Any) -> None:
    """LiteLLM's ``input_cost_per_token`` / ``output_cost_per_token`` (a call's or a config
    entry's) become this model's price, as :func:`salvo.set_price` would set it."""
    inp = _first(overrides.get("input_cost_per_token"), from_entry("input_cost_per_token"))
    out = _first(overrides.get("output_cost_per_token"), from_entry("output_cost_per_token"))
    if inp is None and out is None:
        return
    for label, value in (("input_cost_per_token", inp), ("output_cost_per_token", out)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise ConfigError(
                f"{label} for {provider}/{name} must be a number >= 0, not {value!r}."
            )
    from ._pricing import get_price, set_price

    old = get_price(provider, name)
    set_price(
        provider,
        name,
        inp * 1e6 if inp is not None else (old.input_per_m if old else 0.0),
        out * 1e6 if out is not None else (old.output_per_m if old else 0.0),
    )
