"""Cohere v2 Chat (``POST {base}/v2/chat``) and Embed (``POST {base}/v2/embed``), sans I/O.

- Messages are close to OpenAI's already: ``developer`` becomes ``system``; assistant
  ``tool_calls`` and ``tool`` messages keep their shape; text and ``image_url`` parts pass.
- Parameters: ``max_tokens`` (or ``max_completion_tokens``), ``stop`` -> ``stop_sequences``,
  ``top_p`` -> ``p``, ``top_k`` -> ``k``, ``temperature``, ``seed``, ``frequency_penalty``,
  ``presence_penalty``, ``logprobs``; ``tools`` keep OpenAI's shape; ``tool_choice``
  ``required`` / ``none`` -> ``REQUIRED`` / ``NONE`` (``auto`` is Cohere's default; a named
  function -> ``REQUIRED`` with only that tool sent); ``response_format`` ``json_object`` /
  ``json_schema`` -> ``{"type": "json_object", "json_schema"?: ...}``. Dropped (no Cohere
  equivalent): ``n``, ``user``, ``logit_bias``, ``top_logprobs``, ``stream_options``,
  ``parallel_tool_calls`` and OpenAI's storage/audio options; Cohere's own parameters
  (``documents``, ``citation_options``, ``safety_mode``, ``thinking``, ...) pass through.
- ``finish_reason``: ``COMPLETE`` / ``STOP_SEQUENCE`` -> ``stop``, ``MAX_TOKENS`` ->
  ``length``, ``TOOL_CALL`` -> ``tool_calls``, ``ERROR_TOXIC`` -> ``content_filter``,
  ``ERROR`` / ``TIMEOUT`` -> ``error`` (a failed generation is not reported as a normal
  stop); others lowercased. Usage: ``usage.tokens`` (actual tokens, falling back to
  ``billed_units``); the billed counts, which are what Cohere charges, go to
  ``prompt_tokens_details.billed_tokens`` / ``completion_tokens_details.billed_tokens``.
- Streams: typed events (``message-start`` ... ``message-end``, see
  :mod:`._cohere_stream`); a ``message-end`` with an ``error`` raises StreamError.
- Embeddings: ``texts``, ``input_type`` (default ``search_document``; pass ``input_type=...``
  to change it), ``embedding_types: ["float"]``; ``dimensions`` -> ``output_dimension``.
- Errors are ``{"message": ...}``; HTTP 498 (invalid token) is an AuthenticationError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from .._errors import AuthenticationError, ConfigError, ProviderError
from .._types import (
    Choice,
    Embedding,
    EmbeddingResponse,
    EmbeddingUsage,
    Function,
    Message,
    ModelResponse,
    ToolCall,
)
from ._base import DECODE_ERRORS, Endpoint, HTTPRequest, make_provider_error, no_answer
from ._cohere_stream import (
    FINISH_REASONS,
    CohereStreamParser,
    CohereToolCall,
    CohereUsage,
    finish_reason,
    map_usage,
)
from ._convert import decode_failed, now, stop_list

__all__ = ["DEFAULT_INPUT_TYPE", "FINISH_REASONS", "CohereAdapter", "to_cohere_body"]

DEFAULT_INPUT_TYPE = "search_document"

_ENCODE = msgspec.json.Encoder().encode
_DROP = frozenset(
    {
        "n",
        "user",
        "logit_bias",
        "top_logprobs",
        "stream_options",
        "parallel_tool_calls",
        "store",
        "metadata",
        "modalities",
        "audio",
        "prediction",
        "service_tier",
        "reasoning_effort",
        "verbosity",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "functions",
        "function_call",
        "stream",
    }
)
_RENAME = {"top_p": "p", "top_k": "k", "max_completion_tokens": "max_tokens"}
_MAPPED = frozenset({"stop", "tools", "tool_choice", "response_format"})


class _ContentItem(msgspec.Struct):
    type: str = "text"
    text: str | None = None
    thinking: str | None = None


class _Message(msgspec.Struct):
    content: list[_ContentItem] | None = None
    tool_calls: list[CohereToolCall] | None = None


class _Response(msgspec.Struct):
    id: str = ""
    finish_reason: str | None = None
    message: _Message = msgspec.field(default_factory=_Message)
    usage: CohereUsage | None = None


_DECODE_RESPONSE = msgspec.json.Decoder(_Response).decode


class _BilledUnits(msgspec.Struct):
    input_tokens: float | None = None


class _Meta(msgspec.Struct):
    billed_units: _BilledUnits | None = None


class _Embeddings(msgspec.Struct):
    floats: list[list[float]] | None = msgspec.field(default=None, name="float")


class _EmbedResponse(msgspec.Struct):
    id: str = ""
    embeddings: _Embeddings | list[list[float]] | None = None
    meta: _Meta | None = None


_DECODE_EMBED = msgspec.json.Decoder(_EmbedResponse).decode


# -- request ----------------------------------------------------------------------------------


def _message(m: Mapping[str, Any]) -> dict[str, Any]:
    role = m.get("role")
    if role == "developer":
        role = "system"
    if role == "function":
        raise ConfigError(
            "The deprecated 'function' role has no Cohere equivalent; send tool results as "
            "role 'tool' messages with a tool_call_id."
        )
    out: dict[str, Any] = {"role": role}
    content = m.get("content")
    if content is not None and content != "":
        out["content"] = content
    if role == "assistant":
        if m.get("tool_calls"):
            out["tool_calls"] = m["tool_calls"]
        if m.get("tool_plan"):
            out["tool_plan"] = m["tool_plan"]
    elif role == "tool":
        out["tool_call_id"] = m.get("tool_call_id") or ""
        out.setdefault("content", "")
    elif "content" not in out:
        out["content"] = ""
    return out


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool.get("function")
    if tool.get("type") != "function" or not isinstance(fn, Mapping):
        return dict(tool)
    clean = {k: fn[k] for k in ("name", "description", "parameters") if fn.get(k) is not None}
    return {"type": "function", "function": clean}


def to_cohere_body(
    model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> dict[str, Any]:
    """The v2 Chat request body for an OpenAI-shaped call (no ``stream`` key)."""
    body: dict[str, Any] = {"model": model, "messages": [_message(m) for m in messages]}
    for key, value in params.items():
        if key in _DROP or key in _MAPPED or value is None:
            continue
        body[_RENAME.get(key, key)] = value
    stops = stop_list(params.get("stop"))
    if stops:
        body["stop_sequences"] = stops
    tools = [_tool(t) for t in params.get("tools") or ()]
    choice = params.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        tools = [t for t in tools if (t.get("function") or {}).get("name") == name]
        if not tools:
            raise ConfigError(f"tool_choice names {name!r}, which is not among the tools.")
        choice = "required"
    if tools:
        body["tools"] = tools
        if choice in ("required", "none"):
            body["tool_choice"] = choice.upper()
        elif choice not in (None, "auto"):
            raise ConfigError(
                f"tool_choice {choice!r} has no Cohere equivalent; use 'auto', 'required', "
                "'none' or {'type': 'function', 'function': {'name': ...}}."
            )
    fmt = params.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema"):
        out: dict[str, Any] = {"type": "json_object"}
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            out["json_schema"] = schema
        body["response_format"] = out
    return body


# -- the adapter ------------------------------------------------------------------------------


class CohereAdapter:
    """The Cohere v2 wire format."""

    #: Cohere streams close after ``message-end``; a stream cut off before it is a StreamError
    #: (an answer that lost its end must not pass for a complete one).
    stream_ends_at_eof = False

    def __init__(self, name: str = "cohere", *, key_env: str | None = "CO_API_KEY"):
        self.name = name
        self.key_env = key_env

    def headers(self, ep: Endpoint) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": "application/json"}
        if ep.api_key:
            h["authorization"] = f"Bearer {ep.api_key}"
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
        body = to_cohere_body(ep.model, messages, params)
        if stream:
            body["stream"] = True
        return HTTPRequest("POST", f"{ep.api_base}/v2/chat", headers, _ENCODE(body))

    def parse_chat(self, ep: Endpoint, body: bytes) -> ModelResponse:
        try:
            resp = _DECODE_RESPONSE(body)
        except DECODE_ERRORS as exc:
            raise decode_failed(ep, "response", body, exc) from None
        msg = resp.message
        if resp.finish_reason is None and not msg.content and not msg.tool_calls:
            raise no_answer(ep, body)
        texts = [c.text for c in msg.content or () if c.type == "text" and c.text is not None]
        thoughts = [c.thinking for c in msg.content or () if c.type == "thinking" and c.thinking]
        calls = [
            ToolCall(
                id=c.id,
                function=Function(name=c.function.name or "", arguments=c.function.arguments or ""),
            )
            for c in msg.tool_calls or ()
        ]
        message = Message(
            content="".join(texts) if texts else None,
            tool_calls=calls or None,
            reasoning_content="".join(thoughts) if thoughts else None,
        )
        return ModelResponse(
            id=resp.id,
            created=now(),
            model=ep.model,
            choices=[Choice(message=message, finish_reason=finish_reason(resp.finish_reason))],
            usage=map_usage(resp.usage) if resp.usage is not None else None,
            provider=ep.provider,
        )

    def stream_parser(self, ep: Endpoint) -> CohereStreamParser:
        return CohereStreamParser(ep)

    def build_embedding(
        self, ep: Endpoint, headers: Mapping[str, str], input: Any, params: Mapping[str, Any]
    ) -> HTTPRequest:
        texts = [input] if isinstance(input, str) else list(input)
        if not all(isinstance(t, str) for t in texts):
            raise ConfigError("Cohere embeddings take a string or a list of strings, not tokens.")
        body: dict[str, Any] = {
            "model": ep.model,
            "texts": texts,
            "input_type": params.get("input_type") or DEFAULT_INPUT_TYPE,
            "embedding_types": ["float"],
        }
        if params.get("dimensions") is not None:
            body["output_dimension"] = params["dimensions"]
        if params.get("truncate") is not None:
            body["truncate"] = params["truncate"]
        return HTTPRequest("POST", f"{ep.api_base}/v2/embed", headers, _ENCODE(body))

    def parse_embedding(self, ep: Endpoint, body: bytes) -> EmbeddingResponse:
        try:
            resp = _DECODE_EMBED(body)
        except DECODE_ERRORS as exc:
            raise decode_failed(ep, "response", body, exc) from None
        emb = resp.embeddings
        vectors = emb if isinstance(emb, list) else (emb.floats if emb is not None else None)
        if not vectors:
            raise no_answer(ep, body, "embedding")
        data = [Embedding(index=i, embedding=v) for i, v in enumerate(vectors)]
        billed = resp.meta.billed_units if resp.meta is not None else None
        usage = None
        if billed is not None and billed.input_tokens is not None:
            n = int(billed.input_tokens)
            usage = EmbeddingUsage(prompt_tokens=n, total_tokens=n)
        return EmbeddingResponse(data=data, model=ep.model, usage=usage, provider=ep.provider)

    def parse_error(
        self, ep: Endpoint, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        err = make_provider_error(ep, status, headers, body, key_env=self.key_env)
        if status == 498:  # Cohere's "invalid token"
            return AuthenticationError(
                f"{err.message} Check the API key ({self.key_env}).",
                status_code=status,
                provider=ep.provider,
                model=ep.model,
                body=err.body,
                retry_after=err.retry_after,
                should_retry=err.should_retry,
            )
        return err
