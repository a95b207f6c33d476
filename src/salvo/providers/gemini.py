"""Google Gemini API (``generateContent`` / ``streamGenerateContent?alt=sse``), sans I/O.

- URL ``{base}/v1beta/models/{model}:generateContent`` (streams: ``:streamGenerateContent
  ?alt=sse``, which end when the connection closes), key in ``x-goog-api-key``.
- ``system`` / ``developer`` messages -> ``systemInstruction``; ``assistant`` -> role
  ``model``; assistant ``tool_calls`` -> ``functionCall`` parts; ``tool`` messages ->
  ``functionResponse`` parts in a user turn (the function name is looked up from the earlier
  tool call with the same id; a JSON-object result is sent as it is, anything else as
  ``{"content": <text>}``); consecutive same-role turns are merged; ``image_url`` parts ->
  ``inlineData`` (``data:`` URLs) or ``fileData``; ``input_audio`` -> ``inlineData``.
- ``generationConfig`` from ``temperature``, ``top_p``, ``top_k``, ``max_tokens`` /
  ``max_completion_tokens``, ``stop``, ``n``, ``seed``, ``presence_penalty``,
  ``frequency_penalty``, ``logprobs`` / ``top_logprobs``; ``response_format`` ``json_object``
  -> ``responseMimeType: application/json``, ``json_schema`` -> that plus ``responseSchema``.
  Schemas (response and tool parameters) lose the keywords Gemini's schema subset rejects
  (``additionalProperties``, ``$schema``, ``strict``). ``tools`` -> ``functionDeclarations``;
  ``tool_choice`` -> ``toolConfig.functionCallingConfig`` (``AUTO`` / ``ANY`` / ``NONE``,
  a named function -> ``ANY`` + ``allowedFunctionNames``). Gemini's own ``safetySettings``,
  ``cachedContent``, ``toolConfig``, ``generationConfig`` (merged over salvo's) and
  ``thinkingConfig`` pass through; other OpenAI parameters (``user``,
  ``parallel_tool_calls``, ``stream_options``, ...) are dropped, since Gemini rejects
  unknown fields.
- ``finishReason`` -> ``finish_reason`` (:data:`FINISH_REASONS`; unknown values lowercased);
  a candidate with a ``functionCall`` part that stopped normally ends with ``tool_calls``; a
  prompt blocked by ``promptFeedback`` gives one empty choice ending in ``content_filter``.
  Gemini sends no tool-call ids, so salvo makes ``call_...`` ids. ``thought`` parts ->
  ``reasoning_content``. Usage: ``prompt_tokens`` = prompt (+ tool-use prompt) tokens,
  ``completion_tokens`` = candidates + thoughts tokens (Gemini bills thoughts as output).
- Embeddings: ``:embedContent`` for a string, ``:batchEmbedContents`` for a list;
  ``dimensions`` -> ``outputDimensionality``, ``task_type`` -> ``taskType``.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from .._errors import ConfigError, ProviderError
from .._types import (
    Choice,
    Embedding,
    EmbeddingResponse,
    Function,
    Message,
    ModelResponse,
    ToolCall,
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
    text_of,
    tool_call_id,
)
from ._gemini_stream import (
    FINISH_REASONS,
    GeminiResponse,
    GeminiStreamParser,
    choice_parts,
    finish_reason,
    map_usage,
)

__all__ = ["FINISH_REASONS", "GeminiAdapter", "to_gemini_body"]

_ENCODE = msgspec.json.Encoder().encode
_DECODE_ANY = msgspec.json.Decoder().decode
_DECODE_RESPONSE = msgspec.json.Decoder(GeminiResponse).decode

_PASS = frozenset({"safetySettings", "cachedContent", "toolConfig", "labels"})
_CONFIG = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "n": "candidateCount",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "logprobs": "responseLogprobs",
    "top_logprobs": "logprobs",
}
_SCHEMA_DROP = frozenset({"additionalProperties", "$schema", "strict"})
_MODES = {"auto": "AUTO", "required": "ANY", "any": "ANY", "none": "NONE"}


class _Values(msgspec.Struct):
    values: list[float] = msgspec.field(default_factory=list)


class _EmbedResponse(msgspec.Struct):
    embedding: _Values | None = None
    embeddings: list[_Values] | None = None


_DECODE_EMBED = msgspec.json.Decoder(_EmbedResponse).decode


# -- request ----------------------------------------------------------------------------------


def clean_schema(schema: Any) -> Any:
    """A JSON schema without the keywords Gemini's OpenAPI-subset schemas reject."""
    if isinstance(schema, Mapping):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _SCHEMA_DROP:
                continue
            if key in ("properties", "$defs", "definitions") and isinstance(value, Mapping):
                out[key] = {name: clean_schema(sub) for name, sub in value.items()}
            else:
                out[key] = clean_schema(value)
        return out
    if isinstance(schema, list):
        return [clean_schema(v) for v in schema]
    return schema


def _image_part(url: str) -> dict[str, Any]:
    data = parse_data_url(url)
    if data is not None:
        return {"inlineData": {"mimeType": data[0], "data": data[1]}}
    file: dict[str, Any] = {"fileUri": url}
    guessed = mimetypes.guess_type(url.split("?", 1)[0])[0]
    if guessed:
        file["mimeType"] = guessed
    return {"fileData": file}


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            out.append({"text": part})
            continue
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                out.append({"text": part["text"]})
        elif kind == "image_url":
            out.append(_image_part(image_url_of(part)))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            mime = f"audio/{audio.get('format') or 'wav'}"
            out.append({"inlineData": {"mimeType": mime, "data": audio.get("data") or ""}})
        elif kind is None:
            out.append(dict(part))  # a Gemini part (inlineData, fileData, ...) as written
        else:
            raise ConfigError(
                f"Gemini cannot take a {kind!r} content part; send text, image_url or "
                "input_audio parts (or Gemini parts such as fileData)."
            )
    return out


def _tool_response(m: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    call_id = m.get("tool_call_id") or ""
    name = names.get(call_id) or m.get("name")
    if not name:
        raise ConfigError(
            f"The tool message for tool_call_id {call_id!r} answers no earlier assistant tool "
            "call; Gemini needs the function's name (add 'name' to the tool message)."
        )
    text = text_of(m.get("content"))
    try:
        value = _DECODE_ANY(text) if text else None
    except DECODE_ERRORS:
        value = None
    response = value if isinstance(value, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def _contents(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for m in messages:
        role = m.get("role")
        if role == "system" or role == "developer":
            text = text_of(m.get("content"))
            if text:
                system.append({"text": text})
        elif role == "assistant":
            text = text_of(m.get("content"))
            parts: list[dict[str, Any]] = [{"text": text}] if text else []
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                name = fn.get("name") or ""
                names[call.get("id") or ""] = name
                args = decode_arguments(fn.get("arguments"), name)
                parts.append({"functionCall": {"name": name, "args": args}})
            merge_turn(contents, "model", parts, "parts")
        elif role == "tool":
            merge_turn(contents, "user", [_tool_response(m, names)], "parts")
        else:
            merge_turn(contents, "user", _user_parts(m.get("content")), "parts")
    return system, contents


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _MODES:
        return {"functionCallingConfig": {"mode": _MODES[choice]}}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name") or ""
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise ConfigError(
        f"tool_choice {choice!r} has no Gemini equivalent; use 'auto', 'required', 'none' or "
        "{'type': 'function', 'function': {'name': ...}}."
    )


def _declaration(tool: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool.get("function") if tool.get("type") == "function" else tool
    if not isinstance(fn, Mapping) or not fn.get("name"):
        raise ConfigError(f"Gemini takes function tools only; got {dict(tool)!r:.120}.")
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    if fn.get("parameters"):
        out["parameters"] = clean_schema(fn["parameters"])
    return out


def _generation_config(params: Mapping[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for key, wire in _CONFIG.items():
        value = params.get(key)
        if value is not None:
            cfg[wire] = value
    max_tokens = params.get("max_tokens")
    if max_tokens is None:
        max_tokens = params.get("max_completion_tokens")
    if max_tokens is not None:
        cfg["maxOutputTokens"] = max_tokens
    stops = stop_list(params.get("stop"))
    if stops:
        cfg["stopSequences"] = stops
    fmt = params.get("response_format")
    if isinstance(fmt, Mapping):
        kind = fmt.get("type")
        if kind in ("json_object", "json_schema"):
            cfg["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
        if schema:
            cfg["responseSchema"] = clean_schema(schema)
    if params.get("thinkingConfig") is not None:
        cfg["thinkingConfig"] = params["thinkingConfig"]
    extra = params.get("generationConfig")
    if isinstance(extra, Mapping):
        cfg.update(extra)
    return cfg


def to_gemini_body(
    messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``generateContent`` request body for an OpenAI-shaped call."""
    system, contents = _contents(messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    cfg = _generation_config(params)
    if cfg:
        body["generationConfig"] = cfg
    tools = params.get("tools")
    if tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in tools]}]
        tc = _tool_config(params.get("tool_choice"))
        if tc is not None:
            body["toolConfig"] = tc
    for key in _PASS:
        if params.get(key) is not None:
            body[key] = params[key]
    return body


# -- response ---------------------------------------------------------------------------------


def _to_response(resp: GeminiResponse, ep: Endpoint) -> ModelResponse:
    choices = []
    for cand in resp.candidates:
        text, thoughts, calls = choice_parts(cand)
        tool_calls = [
            ToolCall(
                id=fc.id or tool_call_id(),
                function=Function(name=fc.name, arguments=bytes(fc.args).decode()),
            )
            for fc in calls
        ]
        message = Message(
            content=text,
            tool_calls=tool_calls or None,
            reasoning_content=thoughts,
        )
        finish = finish_reason(cand.finish_reason, bool(calls))
        choices.append(Choice(index=cand.index, message=message, finish_reason=finish))
    if not choices and resp.prompt_feedback is not None and resp.prompt_feedback.block_reason:
        choices.append(Choice(message=Message(), finish_reason="content_filter"))
    return ModelResponse(
        id=resp.response_id,
        created=now(),
        model=resp.model_version or ep.model,
        choices=choices,
        usage=map_usage(resp.usage_metadata) if resp.usage_metadata is not None else None,
        provider=ep.provider,
    )


def _retry_delay(body: Any) -> float | None:
    """``RetryInfo.retryDelay`` (e.g. ``"13s"``) from a Google error's ``details``."""
    details = body.get("details") if isinstance(body, dict) else None
    for d in details if isinstance(details, list) else ():
        delay = d.get("retryDelay") if isinstance(d, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(float(delay[:-1]), 0.0)
            except ValueError:
                return None
    return None


# -- the adapter ------------------------------------------------------------------------------


class GeminiAdapter:
    """The Gemini API wire format (Google AI Studio keys)."""

    stream_ends_at_eof = True

    def __init__(self, name: str = "gemini", *, key_env: str | None = "GEMINI_API_KEY"):
        self.name = name
        self.key_env = key_env

    def headers(self, ep: Endpoint) -> dict[str, str]:
        h = {"content-type": "application/json"}
        if ep.api_key:
            h["x-goog-api-key"] = ep.api_key
        h.update(ep.extra_headers)
        return h

    def _model_url(self, ep: Endpoint) -> str:
        model = ep.model.removeprefix("models/")
        return f"{ep.api_base}/v1beta/models/{model}"

    def build_chat(
        self,
        ep: Endpoint,
        headers: Mapping[str, str],
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        stream: bool,
    ) -> HTTPRequest:
        body = _ENCODE(to_gemini_body(messages, params))
        if stream:
            url = f"{self._model_url(ep)}:streamGenerateContent?alt=sse"
        else:
            url = f"{self._model_url(ep)}:generateContent"
        return HTTPRequest("POST", url, headers, body)

    def parse_chat(self, ep: Endpoint, body: bytes) -> ModelResponse:
        try:
            resp = _DECODE_RESPONSE(body)
        except DECODE_ERRORS as exc:
            raise decode_failed(ep, "response", body, exc) from None
        answer = _to_response(resp, ep)
        if not answer.choices:
            raise no_answer(ep, body)
        return answer

    def stream_parser(self, ep: Endpoint) -> GeminiStreamParser:
        return GeminiStreamParser(ep)

    def build_embedding(
        self, ep: Endpoint, headers: Mapping[str, str], input: Any, params: Mapping[str, Any]
    ) -> HTTPRequest:
        extra: dict[str, Any] = {}
        if params.get("dimensions") is not None:
            extra["outputDimensionality"] = params["dimensions"]
        task = params.get("task_type") or params.get("taskType")
        if task:
            extra["taskType"] = task
        model = f"models/{ep.model.removeprefix('models/')}"
        if isinstance(input, str):
            body: dict[str, Any] = {"content": {"parts": [{"text": input}]}, **extra}
            return HTTPRequest(
                "POST", f"{self._model_url(ep)}:embedContent", headers, _ENCODE(body)
            )
        if not all(isinstance(t, str) for t in input):
            raise ConfigError("Gemini embeddings take a string or a list of strings, not tokens.")
        requests = [{"model": model, "content": {"parts": [{"text": t}]}, **extra} for t in input]
        url = f"{self._model_url(ep)}:batchEmbedContents"
        return HTTPRequest("POST", url, headers, _ENCODE({"requests": requests}))

    def parse_embedding(self, ep: Endpoint, body: bytes) -> EmbeddingResponse:
        try:
            resp = _DECODE_EMBED(body)
        except DECODE_ERRORS as exc:
            raise decode_failed(ep, "response", body, exc) from None
        vectors = resp.embeddings if resp.embeddings is not None else []
        if resp.embedding is not None:
            vectors = [resp.embedding]
        if not vectors:
            raise no_answer(ep, body, "embedding")
        data = [Embedding(index=i, embedding=v.values) for i, v in enumerate(vectors)]
        return EmbeddingResponse(data=data, model=ep.model, provider=ep.provider)

    def parse_error(
        self, ep: Endpoint, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        err = make_provider_error(ep, status, headers, body, key_env=self.key_env)
        if err.retry_after is None:
            err.retry_after = _retry_delay(err.body)
        return err
