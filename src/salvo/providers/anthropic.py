"""Anthropic Messages API (``POST {base}/v1/messages``), sans I/O.

OpenAI-shaped calls are translated both ways:

- ``system`` / ``developer`` messages, wherever they appear, become the top-level ``system``
  (a string for one plain text, else a list of text blocks; ``cache_control`` on a text part
  is kept). ``tool`` messages become ``tool_result`` blocks in a user turn; consecutive turns
  of the same role are merged, as the API itself would. Assistant ``tool_calls`` become
  ``tool_use`` blocks; ``image_url`` parts become base64 (``data:`` URLs) or URL image sources.
- ``max_tokens`` (or ``max_completion_tokens``) is required by Anthropic; when the caller sets
  neither, salvo sends :data:`DEFAULT_MAX_TOKENS` (4096).
- ``stop`` -> ``stop_sequences``; ``temperature`` and ``top_p`` are passed unchanged
  (Anthropic accepts temperatures 0-1 and answers 400 above that: no silent clamping);
  ``tools`` -> ``input_schema`` tools; ``tool_choice`` ``auto``/``required``/``none``/named ->
  ``auto``/``any``/``none``/``tool``; ``parallel_tool_calls=False`` ->
  ``disable_parallel_tool_use``; ``user`` -> ``metadata.user_id``.
- ``response_format`` is **dropped**: the Messages API has no JSON mode, so ask for JSON in the
  prompt. Also dropped (no Anthropic equivalent): ``n``, ``logprobs``, ``top_logprobs``,
  ``seed``, ``presence_penalty``, ``frequency_penalty``, ``logit_bias``, ``stream_options``,
  ``reasoning_effort`` and OpenAI's storage/audio options. Every other parameter is passed
  through, so Anthropic's own (``top_k``, ``thinking``, ``service_tier``, ...) work.
- Responses: ``stop_reason`` -> ``finish_reason`` (:data:`FINISH_REASONS`; unknown values pass
  through), text blocks -> ``content``, ``tool_use`` -> ``tool_calls`` (arguments are the
  JSON text of ``input``), ``thinking`` -> ``reasoning_content``; ``prompt_tokens`` counts
  input + cache reads + cache writes, and ``prompt_tokens_details`` carries ``cached_tokens``
  (reads) and ``cache_creation_tokens`` (writes).

Streams are parsed by :mod:`._anthropic_stream`. :func:`to_anthropic_body` and
:func:`from_anthropic_message` are the same mappings as plain functions, for Message Batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from .._errors import ConfigError, ProviderError
from .._types import (
    Choice,
    EmbeddingResponse,
    Function,
    Message,
    ModelResponse,
    ToolCall,
)
from ._anthropic_stream import (
    FINISH_REASONS,
    AnthropicBlock,
    AnthropicStreamParser,
    AnthropicUsage,
    map_usage,
)
from ._base import DECODE_ERRORS, Endpoint, HTTPRequest, make_provider_error, no_answer
from ._convert import (
    decode_arguments,
    decode_failed,
    image_url_of,
    merge_turn,
    now,
    parse_data_url,
    stop_list,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_MAX_TOKENS",
    "FINISH_REASONS",
    "AnthropicAdapter",
    "from_anthropic_message",
    "map_usage",
    "to_anthropic_body",
]

API_VERSION = "2023-06-01"
#: Sent as ``max_tokens`` when the caller gives neither ``max_tokens`` nor
#: ``max_completion_tokens`` (Anthropic requires one).
DEFAULT_MAX_TOKENS = 4096


_DROP = frozenset(
    {
        "n",
        "logprobs",
        "top_logprobs",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "stream_options",
        "response_format",
        "reasoning_effort",
        "store",
        "modalities",
        "audio",
        "prediction",
        "verbosity",
        "web_search_options",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "functions",
        "function_call",
        "stream",
    }
)
_MAPPED = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "metadata",
        "service_tier",
    }
)
_OPENAI_ONLY_PARTS = frozenset({"input_audio", "file", "refusal"})

_ENCODE = msgspec.json.Encoder().encode


class _Message(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[AnthropicBlock] = msgspec.field(default_factory=list)
    stop_reason: str | None = None
    usage: AnthropicUsage | None = None


_DECODE_MESSAGE = msgspec.json.Decoder(_Message).decode


# -- request ----------------------------------------------------------------------------------


def _text_block(part: Mapping[str, Any]) -> dict[str, Any] | None:
    text = part.get("text")
    if not isinstance(text, str) or not text:
        return None
    block: dict[str, Any] = {"type": "text", "text": text}
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out = []
    for part in content or ():
        block = _text_block(part) if isinstance(part, Mapping) else None
        if block is not None:
            out.append(block)
    return out


def _image_block(url: str) -> dict[str, Any]:
    data = parse_data_url(url)
    if data is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, b64 = data
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": b64}}


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return _text_blocks(content)
    out: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            out.extend(_text_blocks(part))
            continue
        kind = part.get("type")
        if kind == "text":
            block = _text_block(part)
            if block is not None:
                out.append(block)
        elif kind == "image_url":
            block = _image_block(image_url_of(part))
            if part.get("cache_control") is not None:
                block["cache_control"] = part["cache_control"]
            out.append(block)
        elif kind in _OPENAI_ONLY_PARTS:
            raise ConfigError(
                f"Anthropic's Messages API cannot take a {kind!r} content part; send text, "
                "images (image_url) or Anthropic blocks (document, image) instead."
            )
        else:
            out.append(dict(part))  # an Anthropic block (document, image, ...) as written
    return out


def _assistant_blocks(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks = _text_blocks(m.get("content"))
    for call in m.get("tool_calls") or ():
        fn = call.get("function") or {}
        name = fn.get("name") or ""
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": name,
                "input": decode_arguments(fn.get("arguments"), name),
            }
        )
    return blocks


def _tool_result(m: Mapping[str, Any]) -> dict[str, Any]:
    content = m.get("content")
    value: Any = _text_blocks(content) if isinstance(content, list) else (content or "")
    return {"type": "tool_result", "tool_use_id": m.get("tool_call_id") or "", "content": value}


def _convert_messages(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "system" or role == "developer":
            system.extend(_text_blocks(m.get("content")))
        elif role == "assistant":
            merge_turn(turns, "assistant", _assistant_blocks(m), "content")
        elif role == "tool":
            merge_turn(turns, "user", [_tool_result(m)], "content")
        elif role == "function":
            raise ConfigError(
                "The deprecated 'function' role has no Anthropic equivalent; send tool "
                "results as role 'tool' messages with a tool_call_id."
            )
        else:
            merge_turn(turns, "user", _user_blocks(m.get("content")), "content")
    return system, turns


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool.get("function")
    if tool.get("type") == "function" and isinstance(fn, Mapping):
        out: dict[str, Any] = {
            "name": fn.get("name") or "",
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            out["description"] = fn["description"]
        return out
    return dict(tool)  # already an Anthropic tool (or a server tool)


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    tc: dict[str, Any] | None
    if choice is None:
        tc = None
    elif choice == "auto":
        tc = {"type": "auto"}
    elif choice in ("required", "any"):
        tc = {"type": "any"}
    elif choice == "none":
        tc = {"type": "none"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        tc = {"type": "tool", "name": (choice.get("function") or {}).get("name") or ""}
    elif isinstance(choice, Mapping) and choice.get("type") in ("auto", "any", "tool", "none"):
        tc = dict(choice)
    else:
        raise ConfigError(
            f"tool_choice {choice!r} has no Anthropic equivalent; use 'auto', 'required', "
            "'none' or {'type': 'function', 'function': {'name': ...}}."
        )
    if parallel is False:
        tc = tc or {"type": "auto"}
        if tc["type"] != "none":
            tc["disable_parallel_tool_use"] = True
    return tc


def to_anthropic_body(
    model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> dict[str, Any]:
    """The Messages API request body for an OpenAI-shaped call (no ``stream`` key)."""
    system, turns = _convert_messages(messages)
    body: dict[str, Any] = {"model": model, "messages": turns}
    if system:
        plain = len(system) == 1 and "cache_control" not in system[0]
        body["system"] = system[0]["text"] if plain else system
    max_tokens = params.get("max_tokens")
    if max_tokens is None:
        max_tokens = params.get("max_completion_tokens")
    body["max_tokens"] = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    body.update(
        (k, v) for k, v in params.items() if k not in _DROP and k not in _MAPPED and v is not None
    )
    stops = stop_list(params.get("stop"))
    if stops:
        body["stop_sequences"] = stops
    tools = params.get("tools")
    if tools:
        body["tools"] = [_tool(t) for t in tools]
        tc = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
        if tc is not None:
            body["tool_choice"] = tc
    metadata = params.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, Mapping) else None
    user_id = user_id or params.get("user")
    if user_id:
        body["metadata"] = {"user_id": user_id}
    tier = params.get("service_tier")
    if tier in ("auto", "standard_only"):
        body["service_tier"] = tier
    return body


# -- response ---------------------------------------------------------------------------------


def _to_response(msg: _Message, provider: str, model: str) -> ModelResponse:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[ToolCall] = []
    for block in msg.content:
        kind = block.type
        if kind == "text":
            texts.append(block.text or "")
        elif kind == "tool_use":
            calls.append(
                ToolCall(
                    id=block.id or "",
                    function=Function(name=block.name or "", arguments=bytes(block.input).decode()),
                )
            )
        elif kind == "thinking" and block.thinking:
            thinking.append(block.thinking)
    stop = msg.stop_reason
    message = Message(
        content="".join(texts) if texts else None,
        tool_calls=calls or None,
        reasoning_content="".join(thinking) if thinking else None,
    )
    return ModelResponse(
        id=msg.id,
        created=now(),
        model=msg.model or model,
        choices=[
            Choice(message=message, finish_reason=FINISH_REASONS.get(stop, stop) if stop else None)
        ],
        usage=map_usage(msg.usage) if msg.usage is not None else None,
        provider=provider,
    )


def from_anthropic_message(
    obj: Mapping[str, Any] | bytes, *, provider: str = "anthropic", model: str = ""
) -> ModelResponse:
    """A Messages API ``message`` object (decoded, or its JSON bytes) as a ModelResponse.

    Raises ``msgspec.DecodeError`` when the object is not a message.
    """
    raw = obj if isinstance(obj, bytes) else _ENCODE(obj)
    return _to_response(_DECODE_MESSAGE(raw), provider, model)


# -- the adapter ------------------------------------------------------------------------------


class AnthropicAdapter:
    """The Anthropic Messages wire format."""

    stream_ends_at_eof = False

    def __init__(self, name: str = "anthropic", *, key_env: str | None = "ANTHROPIC_API_KEY"):
        self.name = name
        self.key_env = key_env

    def headers(self, ep: Endpoint) -> dict[str, str]:
        h = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if ep.api_key:
            h["x-api-key"] = ep.api_key
        h.update(ep.extra_headers)
        return h

    def build_chat(
        self,
        ep: Endpoint,
        headers: Mapping[str, str],
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        stream: bool,
    ) -> HTTPRequest:
        body = to_anthropic_body(ep.model, messages, params)
        if stream:
            body["stream"] = True
        return HTTPRequest("POST", f"{ep.api_base}/v1/messages", headers, _ENCODE(body))

    def parse_chat(self, ep: Endpoint, body: bytes) -> ModelResponse:
        try:
            msg = _DECODE_MESSAGE(body)
        except DECODE_ERRORS as exc:
            raise decode_failed(ep, "response", body, exc) from None
        if not msg.id and not msg.content:
            raise no_answer(ep, body)
        return _to_response(msg, ep.provider, ep.model)

    def stream_parser(self, ep: Endpoint) -> AnthropicStreamParser:
        return AnthropicStreamParser(ep)

    def build_embedding(
        self, ep: Endpoint, headers: Mapping[str, str], input: Any, params: Mapping[str, Any]
    ) -> HTTPRequest:
        raise ConfigError("Anthropic has no embeddings API; use another provider's model.")

    def parse_embedding(self, ep: Endpoint, body: bytes) -> EmbeddingResponse:
        raise ConfigError("Anthropic has no embeddings API; use another provider's model.")

    def parse_error(
        self, ep: Endpoint, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        return make_provider_error(ep, status, headers, body, key_env=self.key_env)
