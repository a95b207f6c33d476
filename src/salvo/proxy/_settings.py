"""What ``salvo serve`` reads from a config beyond the ``model_list``, checked at start-up.

Settings may sit under ``general_settings``, ``litellm_settings`` or ``salvo_settings`` (merged
in that order), so a LiteLLM proxy config loads as it is; keys the proxy does not use are
ignored. A bad value, an alias that cannot be resolved (unknown provider, unset
``os.environ/NAME``) or an impossible ``batch`` choice stops start-up with a message that
names the key and its line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._config import Config
from .._errors import ConfigError
from .._hedge import parse_hedge
from .._models import resolve_deployment

__all__ = ["MIB", "ProxySettings", "check_config", "check_fanout", "load_settings"]

MIB = 1024 * 1024
_SECTIONS = ("general_settings", "litellm_settings", "salvo_settings", "settings")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """The proxy's knobs. ``master_key=None`` turns auth off (the CLI allows that only on a
    loopback address)."""

    master_key: str | None = None
    allow_any_model: bool = False
    max_request_bytes: int = 32 * MIB
    max_file_bytes: int = 200 * MIB
    files_dir: str | None = None
    database_path: str | None = None
    shutdown_timeout: float = 30.0
    request_timeout: float | None = 600.0
    num_retries: int = 2
    hedge: float | str | None = None  # races' default hedge (``"p95"``, seconds); None: full
    hedge_budget: float = 0.1  # the Client's hedge budget (extra requests hedges may add)
    max_fanout_models: int = 16
    client_header_timeout: float = 60.0
    client_body_timeout: float = 60.0

    def __post_init__(self) -> None:
        key = self.master_key
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise ConfigError(
                "master_key must be a non-empty string (None turns auth off, which salvo serve "
                f"allows only on a loopback address), not {key!r}."
            )
        if key is not None and key != key.strip():
            object.__setattr__(self, "master_key", key.strip())


def _setting_lines(source: str) -> dict[str, int]:
    """1-based line of each key in the settings sections of a YAML file (last one wins)."""
    path = Path(source)
    if not path.is_file():
        return {}
    import yaml

    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return {}
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value in _SECTIONS and isinstance(value, yaml.MappingNode):
                for k, _ in value.value:
                    lines[str(k.value)] = k.start_mark.line + 1
    return lines


def _number(value: Any, *, minimum: float, integer: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if integer and not isinstance(value, int):
        return False
    return value >= minimum


def load_settings(config: Config) -> ProxySettings:
    """The proxy settings of ``config``, checked; the master key falls back to the
    ``SALVO_MASTER_KEY`` environment variable."""
    lines = _setting_lines(config.source)

    def where(key: str) -> str:
        line = lines.get(key)
        return f"{config.source}: setting {key!r}" + (f" (line {line})" if line else "")

    def get(key: str, check: Callable[[Any], bool], expected: str) -> Any:
        try:
            value = config.setting(key)
        except ConfigError as exc:  # an unset os.environ/NAME: say where it was written
            msg = str(exc).replace(f"{config.source}: setting {key!r}", where(key), 1)
            raise ConfigError(msg) from None
        if value is not None and not check(value):
            raise ConfigError(f"{where(key)} must be {expected}, not {value!r}.")
        return value

    master_key = get(
        "master_key", lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"
    )
    if master_key is None:
        master_key = os.environ.get("SALVO_MASTER_KEY")
        if master_key is not None and not master_key.strip():
            raise ConfigError(
                "SALVO_MASTER_KEY is set but blank: set it to the key clients must send, or "
                "unset it (without a key the proxy serves only on a loopback address)."
            )
    allow_any = get("allow_any_model", lambda v: isinstance(v, bool), "true or false")
    size_mb = get("max_request_size_mb", lambda v: _number(v, minimum=0.001), "a number > 0")
    file_mb = get("max_file_size_mb", lambda v: _number(v, minimum=0.001), "a number > 0")
    files_dir = get("files_dir", lambda v: isinstance(v, str) and bool(v), "a directory path")
    db_path = get("database_path", lambda v: isinstance(v, str) and bool(v), "a file path")
    shutdown = get("shutdown_timeout", lambda v: _number(v, minimum=0), "seconds >= 0")
    timeout = get("request_timeout", lambda v: _number(v, minimum=0.001), "seconds > 0")
    retries = get("num_retries", lambda v: _number(v, minimum=0, integer=True), "an integer >= 0")
    hedge = get("hedge", _is_hedge, "seconds (e.g. 0.5) or a percentile such as 'p95'")
    hedge_budget = get("hedge_budget", lambda v: _number(v, minimum=0), "a fraction >= 0")
    header_timeout = get(
        "client_header_timeout", lambda v: _number(v, minimum=0.001), "seconds > 0"
    )
    body_timeout = get("client_body_timeout", lambda v: _number(v, minimum=0.001), "seconds > 0")
    fanout = get(
        "max_fanout_models", lambda v: _number(v, minimum=1, integer=True), "an integer >= 1"
    )
    defaults = ProxySettings()
    return ProxySettings(
        master_key=master_key.strip() if master_key is not None else None,
        allow_any_model=bool(allow_any),
        max_request_bytes=int(size_mb * MIB) if size_mb else defaults.max_request_bytes,
        max_file_bytes=int(file_mb * MIB) if file_mb else defaults.max_file_bytes,
        files_dir=files_dir,
        database_path=db_path,
        shutdown_timeout=float(shutdown) if shutdown is not None else defaults.shutdown_timeout,
        request_timeout=float(timeout) if timeout is not None else defaults.request_timeout,
        num_retries=retries if retries is not None else defaults.num_retries,
        hedge=hedge,
        hedge_budget=float(hedge_budget) if hedge_budget is not None else defaults.hedge_budget,
        max_fanout_models=fanout if fanout is not None else defaults.max_fanout_models,
        client_header_timeout=float(header_timeout or defaults.client_header_timeout),
        client_body_timeout=float(body_timeout or defaults.client_body_timeout),
    )


def _is_hedge(value: Any) -> bool:
    try:
        parse_hedge(value)
    except ConfigError:
        return False
    return True


def check_config(config: Config) -> None:
    """Resolve every model entry now, so a bad one stops start-up rather than a request."""
    for name, entries in config.models.items():
        for i, entry in enumerate(entries):
            at = f"{config.source}, model_list entry {name!r}"
            if entry.line:
                at += f" (line {entry.line})"
            if "," in name:
                raise ConfigError(
                    f"{at}: model_name must not contain ',' (a comma separates the models of "
                    "a race or a gather)."
                )
            try:
                dep = resolve_deployment(name, config=config, entry_index=i)
            except ConfigError as exc:
                msg = str(exc)
                if f"(line {entry.line})" not in msg:
                    msg = f"{at}: {msg}"
                raise ConfigError(msg) from None
            if dep.batch == "native" and not dep.info.capabilities.batch_api:
                raise ConfigError(
                    f"{at}, key 'batch': provider {dep.provider} has no batch API in salvo; "
                    "write batch: local (or leave it out)."
                )


def check_fanout(model: str, settings: ProxySettings) -> list[str]:
    """The models of a comma-separated race/gather, at most ``max_fanout_models`` of them
    (checked before anything is resolved or any task starts); a 400 past that."""
    from ._errors import ProxyError

    names = [m.strip() for m in model.split(",") if m.strip()]
    if not names:
        raise ProxyError(400, "You must provide a model parameter.", param="model")
    limit = settings.max_fanout_models
    if len(names) > limit:
        raise ProxyError(
            400,
            f"A race or gather may name at most {limit} models on this proxy (setting "
            f"max_fanout_models); this request names {len(names)}.",
            param="model",
            code="too_many_models",
        )
    return names
