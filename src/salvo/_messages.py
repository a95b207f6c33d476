"""Input checks that run before any request is sent, and the per-call keys that configure a
call rather than the request body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._compat import LITELLM_KEYS
from ._errors import ConfigError

__all__ = ["BODY_EXCLUDED", "CALL_KEYS", "check_messages", "check_prompts"]

#: Per-call keys that configure the call rather than the request body.
CALL_KEYS = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "extra_headers",
        "timeout",
        "max_retries",
        "first_byte_timeout",
        "stream_idle_timeout",
        "rpm",
        "tpm",
        "max_parallel_requests",
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        # LiteLLM's names, mapped or consumed by salvo._compat, never sent
        "custom_llm_provider",
        "input_cost_per_token",
        "output_cost_per_token",
        "salvo.num_retries",
        "salvo.request_timeout",
    }
)
#: What a fan-out filters out of the request body: the call keys and LiteLLM's own arguments
#: (``metadata`` stays: with ``store=True`` it is OpenAI's).
BODY_EXCLUDED = CALL_KEYS | (LITELLM_KEYS - {"metadata"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def check_prompts(list_of_messages: Any) -> None:
    """Raise ConfigError unless ``list_of_messages`` is a list of message lists, each passing
    :func:`check_messages` (the error names the first one that does not)."""
    if not isinstance(list_of_messages, list | tuple):
        raise ConfigError("list_of_messages must be a list of message lists.")
    for i, messages in enumerate(list_of_messages):
        try:
            check_messages(messages)
        except ConfigError as exc:
            raise ConfigError(f"list_of_messages[{i}]: {exc}") from None


def check_messages(messages: Any) -> None:
    """Raise ConfigError unless ``messages`` is a non-empty list of role/content mappings."""
    if not isinstance(messages, list | tuple) or not messages:
        raise ConfigError(
            "messages must be a non-empty list of mappings like "
            f"{{'role': 'user', 'content': 'Hi'}}, not {type(messages).__name__}: "
            f"{messages!r:.80}."
        )
    for i, m in enumerate(messages):
        if type(m) is dict and type(m.get("content")) is str and m.get("role") in _ROLES:
            continue  # the usual message, checked in one line
        if not isinstance(m, Mapping):
            raise ConfigError(
                f"messages[{i}] must be a mapping with 'role' and 'content', "
                f"not {type(m).__name__}: {m!r:.80}."
            )
        role = m.get("role")
        if role not in _ROLES:
            raise ConfigError(
                f"messages[{i}] has role {role!r}; use one of: {', '.join(sorted(_ROLES))}."
            )
        if "content" not in m:
            if role == "assistant" and (m.get("tool_calls") or m.get("function_call")):
                continue
            raise ConfigError(f"messages[{i}] (role {role!r}) has no 'content'.")
        content = m["content"]
        if not (content is None or isinstance(content, str | list)):
            raise ConfigError(
                f"messages[{i}]['content'] must be a string or a list of parts, "
                f"not {type(content).__name__}."
            )
