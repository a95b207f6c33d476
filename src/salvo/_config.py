"""Configuration: a ``model_list`` of aliases (salvo's or LiteLLM's format), from YAML or a mapping.

::

    model_list:
      - model_name: fast
        params:                      # LiteLLM's ``litellm_params`` is accepted too
          model: openai/gpt-4o-mini
          api_key: os.environ/OPENAI_API_KEY
          rpm: 500
    general_settings:
      master_key: os.environ/SALVO_MASTER_KEY

``os.environ/NAME`` references are resolved when they are used, so that a missing variable is
reported by name at that moment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ._compat import ENTRY_KEYS, strict_entries_seen
from ._errors import ConfigError

__all__ = ["Config", "ModelEntry", "load_config", "resolve_env_ref"]

_ENV_PREFIX = "os.environ/"

#: Keys a model entry's params may hold besides provider parameters passed to the request.
DEPLOYMENT_KEYS = frozenset(
    {
        "model",
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "rpm",
        "tpm",
        "max_parallel_requests",
        "timeout",
        "stream_timeout",
        "max_retries",
        "batch",
        "extra_headers",
        "custom_llm_provider",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
    }
)
#: LiteLLM's keys (num_retries, drop_params, input_cost_per_token, ...) configure salvo too.
DEPLOYMENT_KEYS |= ENTRY_KEYS


_SECRET_PARAMS = frozenset({"api_key", "extra_headers", "vertex_credentials"})


def _is_env_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_ENV_PREFIX)


def resolve_env_ref(value: Any, *, where: str) -> Any:
    """``os.environ/NAME`` -> the variable's value; a missing variable is a ConfigError."""
    if isinstance(value, str) and value.startswith(_ENV_PREFIX):
        name = value[len(_ENV_PREFIX) :]
        found = os.environ.get(name)
        if found is None:
            raise ConfigError(
                f"{where} refers to the environment variable {name}, which is not set. "
                f"Set {name} or put the value in the config."
            )
        return found
    return value


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One ``model_list`` entry: an alias and the deployment parameters behind it."""

    model_name: str
    params: Mapping[str, Any]
    line: int | None = None

    def param(self, key: str) -> Any:
        return resolve_env_ref(self.params.get(key), where=self.where(key))

    def where(self, key: str) -> str:
        at = f" (line {self.line})" if self.line else ""
        return f"model_list entry {self.model_name!r}{at}, key {key!r},"

    def __repr__(self) -> str:  # a literal key in the config never shows
        shown = {
            k: v if k not in _SECRET_PARAMS or _is_env_ref(v) else "<hidden>"
            for k, v in self.params.items()
        }
        return f"ModelEntry(model_name={self.model_name!r}, params={shown!r}, line={self.line!r})"

    def extra_params(self) -> dict[str, Any]:
        """Provider parameters the entry sets for every call (temperature, max_tokens, ...)."""
        return {
            k: resolve_env_ref(v, where=self.where(k))
            for k, v in self.params.items()
            if k not in DEPLOYMENT_KEYS
        }


def _json_value(value: Any) -> bool:
    """True when ``value`` can go into a request body (what msgspec encodes as JSON)."""
    try:
        msgspec.json.encode(value)
    except (TypeError, msgspec.EncodeError, RecursionError):
        return False
    return True


@dataclass(slots=True)
class Config:
    models: dict[str, list[ModelEntry]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = "<mapping>"

    def entries(self, name: str) -> list[ModelEntry] | None:
        return self.models.get(name)

    def setting(self, key: str, default: Any = None) -> Any:
        value = self.settings.get(key, default)
        return resolve_env_ref(value, where=f"{self.source}: setting {key!r}")

    @property
    def model_names(self) -> list[str]:
        return list(self.models)

    def __repr__(self) -> str:  # settings may hold a master key
        return (
            f"Config(source={self.source!r}, models={self.model_names!r}, "
            f"settings=<{len(self.settings)} hidden>)"
        )


def _lines_of_entries(text: str) -> list[int]:
    """1-based line numbers of each ``model_list`` item, for error messages."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "model_list":
            if isinstance(value, yaml.SequenceNode):
                return [item.start_mark.line + 1 for item in value.value]
    return []


def load_config(source: str | os.PathLike[str] | Mapping[str, Any] | Config | None) -> Config:
    """Load and check a config from a YAML path, a mapping of the same shape, or pass through."""
    if source is None:
        return Config()
    if isinstance(source, Config):
        return source
    lines: list[int] = []
    where = "<mapping>"
    if isinstance(source, Mapping):
        data: Any = source
    else:
        path = Path(source)
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"Cannot read the config file {where}: {exc.strerror}.") from None
        import yaml  # only when a file is read: most programs never load one

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"The config file {where} is not valid YAML: {exc}") from None
        lines = _lines_of_entries(text)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: the config must be a mapping with a 'model_list' key.")
    cfg = Config(source=where)
    model_list = data.get("model_list", [])
    if not isinstance(model_list, list):
        raise ConfigError(f"{where}: 'model_list' must be a list of entries.")
    for i, item in enumerate(model_list):
        line = lines[i] if i < len(lines) else None
        at = f"{where}, model_list[{i}]" + (f" (line {line})" if line else "")
        if not isinstance(item, Mapping):
            raise ConfigError(f"{at}: each entry must be a mapping with model_name and params.")
        name = item.get("model_name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{at}: the entry needs a 'model_name' string.")
        params = item.get("params", item.get("litellm_params"))
        if not isinstance(params, Mapping) or not isinstance(params.get("model"), str):
            raise ConfigError(
                f"{at}: entry {name!r} needs 'params' (or 'litellm_params') with a 'model' string."
            )
        for key in ("rpm", "tpm", "max_parallel_requests", "max_retries"):
            value = params.get(key)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(f"{at}: {key!r} of {name!r} must be a whole number >= 0.")
        batch = params.get("batch")
        if batch is not None and batch not in ("native", "local"):
            raise ConfigError(f"{at}: 'batch' of {name!r} must be 'native' or 'local'.")
        if params.get("drop_params") is False:
            strict_entries_seen()
        for key, value in params.items():
            if key not in DEPLOYMENT_KEYS and not _json_value(value):
                raise ConfigError(
                    f"{at}: parameter {key!r} of {name!r} ({type(value).__name__}) can not go into"
                    " a JSON request body; use a string, number, boolean, list or mapping."
                )
        if "mock_response" in params:
            raise ConfigError(
                f"{at}: 'mock_response' in the entry of {name!r} is LiteLLM's; salvo takes it "
                "per call (completion(..., mock_response=...)), not from the config, and would "
                "otherwise call the real provider."
            )
        cfg.models.setdefault(name.strip(), []).append(
            ModelEntry(model_name=name.strip(), params=dict(params), line=line)
        )
    settings: dict[str, Any] = {}
    for section in ("general_settings", "litellm_settings", "salvo_settings", "settings"):
        part = data.get(section)
        if isinstance(part, Mapping):
            settings.update(part)
    cfg.settings = settings
    return cfg
