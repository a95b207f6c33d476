"""LiteLLM's client-side arguments: honoured or consumed, never sent to a provider.

LiteLLM's ``completion()`` takes arguments that configure LiteLLM itself (``num_retries``,
``mock_response``, ``fallbacks``, callbacks, ...) next to the provider's parameters. A script
ported with ``import salvo as litellm`` passes them all; real providers answer 400 to unknown
parameters, so each one is mapped to salvo's own knob here, or consumed with a debug log line.

:func:`litellm_args` runs in ``Client.options`` only when a call carries one of
:data:`LITELLM_KEYS` (or a module-level setting such as ``salvo.drop_params`` is in force):
the common call pays one ``isdisjoint``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._config import Config

__all__ = [
    "ACTIVE",
    "CALL_LEVEL",
    "CONSUMED",
    "ENTRY_KEYS",
    "LITELLM_KEYS",
    "dropped_params",
    "litellm_args",
    "set_setting",
    "setting",
]

log = logging.getLogger("salvo")

#: LiteLLM-only arguments salvo cannot honour: consumed, never forwarded (a debug line says so).
CONSUMED = frozenset(
    {
        "callbacks",
        "success_callback",
        "failure_callback",
        "input_callback",
        "service_callback",
        "logger_fn",
        "litellm_logging_obj",
        "litellm_call_id",
        "litellm_trace_id",
        "litellm_metadata",
        "litellm_session_id",
        "proxy_server_request",
        "preset_cache_key",
        "caching",
        "cache",
        "no-log",
        "batch_enabled",
        "model_info",
        "verbose",
        "acompletion",
        "max_workers",  # honoured by batch_completion; elsewhere it configures nothing
        "use_in_pass_through",
        "merge_reasoning_content_in_choices",
        "mock_delay",
    }
)

#: LiteLLM name -> salvo name.
RENAMED = {"num_retries": "max_retries", "request_timeout": "timeout"}

#: Handled by the call itself (acompletion and the module-level functions), not by options.
CALL_LEVEL = frozenset({"mock_response", "fallbacks"})

#: Everything that sends a call through :func:`litellm_args`.
LITELLM_KEYS = CONSUMED | RENAMED.keys() | CALL_LEVEL | {"metadata", "drop_params"}

#: Keys a config entry (``litellm_params``) may hold that configure salvo, not the request.
ENTRY_KEYS = (
    CONSUMED
    | RENAMED.keys()
    | {"drop_params", "input_cost_per_token", "output_cost_per_token", "metadata"}
)

#: Module-level settings, as LiteLLM scripts set them (``litellm.num_retries = 3``).
_SETTINGS: dict[str, Any] = {"drop_params": True, "num_retries": None, "request_timeout": None}

#: True once a setting differs from its default (or a config entry says ``drop_params: false``):
#: then every call goes through :func:`litellm_args`.
ACTIVE = False


def setting(name: str) -> Any:
    return _SETTINGS[name]


def set_setting(name: str, value: Any) -> None:
    """``salvo.drop_params = False`` and friends land here."""
    global ACTIVE
    if name == "drop_params" and not isinstance(value, bool):
        raise ConfigError(f"salvo.drop_params must be True or False, not {value!r}.")
    if name == "num_retries" and value is not None and (not isinstance(value, int) or value < 0):
        raise ConfigError(f"salvo.num_retries must be a whole number >= 0, not {value!r}.")
    if (
        name == "request_timeout"
        and value is not None
        and (not isinstance(value, int | float) or value <= 0)
    ):
        raise ConfigError(f"salvo.request_timeout must be a number of seconds > 0, not {value!r}.")
    _SETTINGS[name] = value
    ACTIVE = ACTIVE or value != {"drop_params": True}.get(name)


def strict_entries_seen() -> None:
    """A loaded config has an entry with ``drop_params: false``: check every call."""
    global ACTIVE
    ACTIVE = True


def litellm_args(config: Config, model: str, params: MutableMapping[str, Any]) -> None:
    """Map or consume LiteLLM's arguments in ``params`` (in place), before resolution.

    Raises ConfigError, before anything is sent, when ``drop_params=False`` is in force and
    the target provider's adapter would drop one of the parameters.
    """
    ignored = set(CONSUMED.intersection(params))
    for key in ignored:
        del params[key]
    if "metadata" in params and not params.get("store"):
        # LiteLLM's metadata feeds its loggers; OpenAI takes it only along with store=True.
        del params["metadata"]
        ignored.add("metadata")
    if ignored:
        log.debug("salvo ignored LiteLLM-only arguments (not sent): %s", ", ".join(sorted(ignored)))
    for old, new in RENAMED.items():
        if old in params:
            value = params.pop(old)
            if params.get(new) is None:
                params[new] = value
    here = CALL_LEVEL.intersection(params)
    if here:
        raise ConfigError(
            f"{', '.join(sorted(here))} is honoured by completion/acompletion, batch_completion "
            "and the module-level race/gather functions, not on this call path; nothing was sent."
        )
    drop = params.pop("drop_params", None)
    if drop is not None and not isinstance(drop, bool):
        raise ConfigError(f"drop_params must be True or False, not {drop!r}.")
    if _SETTINGS["num_retries"] is not None:
        params["salvo.num_retries"] = _SETTINGS["num_retries"]
    if _SETTINGS["request_timeout"] is not None:
        params["salvo.request_timeout"] = _SETTINGS["request_timeout"]
    if drop is None:
        drop = _entry_drop(config, model)
    if drop is None:
        drop = _SETTINGS["drop_params"]
    if drop is False:
        _check_kept(config, model, params)


def _entry_drop(config: Config, model: str) -> bool | None:
    entries = config.entries(model.strip()) if config.models else None
    for entry in entries or ():
        value = entry.params.get("drop_params")
        if value is not None:
            return bool(value)
    return None


def _check_kept(config: Config, model: str, params: Mapping[str, Any]) -> None:
    from ._messages import CALL_KEYS
    from ._models import split_model

    entries = config.entries(model.strip()) if config.models else None
    if entries:
        entry = entries[0]
        target = entry.params["model"]
        hint = entry.params.get("custom_llm_provider")
        body = {**entry.extra_params(), **params}
    else:
        target, hint, body = model, params.get("custom_llm_provider"), dict(params)
    if hint and not str(target).startswith(f"{hint}/"):
        target = f"{hint}/{target}"
    info, _ = split_model(target)
    lost = dropped_params(info.name, (k for k in body if k not in CALL_KEYS))
    if lost:
        raise ConfigError(
            f"{info.name} does not support the parameter(s) {', '.join(lost)} (model "
            f"{model!r}), and drop_params is False, so salvo refuses to drop them; nothing was "
            "sent. Remove them, or allow dropping with drop_params=True."
        )


def dropped_params(provider: str, keys: Any) -> list[str]:
    """Which of ``keys`` the provider's adapter drops instead of sending (sorted)."""
    if provider == "anthropic":
        from .providers.anthropic import _DROP as anthropic_drop

        return sorted(k for k in keys if k in anthropic_drop)
    if provider == "cohere":
        from .providers.cohere import _DROP as cohere_drop

        return sorted(k for k in keys if k in cohere_drop)
    if provider == "gemini":
        from .providers.gemini import _CONFIG, _PASS

        kept = _CONFIG.keys() | _PASS | _GEMINI_MAPPED
        return sorted(k for k in keys if k not in kept)
    return []  # OpenAI-compatible hosts get every parameter


_GEMINI_MAPPED = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "response_format",
        "thinkingConfig",
        "generationConfig",
        "tools",
        "tool_choice",
    }
)
