"""OpenAI Chat Completions and Embeddings, sans I/O; also every OpenAI-compatible host.

Responses decode straight into salvo's types (they are the OpenAI shape); request bodies are
encoded straight to bytes by one module-level encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from .._errors import ProviderError, ResponseDecodeError, StreamError
from .._types import ChatCompletionChunk, EmbeddingResponse, ModelResponse
from ._base import (
    DECODE_ERRORS,
    Endpoint,
    HTTPRequest,
    decode_problem,
    error_message_from_body,
    make_provider_error,
    no_answer,
)

__all__ = ["OpenAIAdapter", "OpenAIStreamParser"]

_ENCODE = msgspec.json.Encoder().encode
_DECODE_RESPONSE = msgspec.json.Decoder(ModelResponse).decode
_DECODE_CHUNK = msgspec.json.Decoder(ChatCompletionChunk).decode
_DECODE_EMBEDDING = msgspec.json.Decoder(EmbeddingResponse).decode
_DECODE_ANY = msgspec.json.Decoder().decode
_DONE = b"[DONE]"


def _decode_failed(ep: Endpoint, what: str, body: bytes, exc: Exception) -> ResponseDecodeError:
    preview = body[:200].decode("utf-8", "replace")
    why = "It was probably cut short." if not isinstance(exc, RecursionError) else ""
    err = ResponseDecodeError(
        f"{ep.provider} sent a {what} for model {ep.model!r} that is not valid JSON "
        f"({decode_problem(exc)}); it began with {preview!r}. {why} salvo does not retry "
        "this (the provider has likely done and billed the work): retry the call yourself if "
        "it was a one-off, and report it if it keeps happening."
    )
    err.provider, err.model = ep.provider, ep.model
    return err


class OpenAIStreamParser:
    """One stream's state: ``data: {chunk}`` events until ``data: [DONE]``."""

    __slots__ = ("_ep", "_finish_map", "done")

    def __init__(self, ep: Endpoint, finish_map: Mapping[str, str]) -> None:
        self._ep = ep
        self._finish_map = finish_map
        self.done = False

    def feed(self, event: str | None, data: bytes) -> ChatCompletionChunk | None:
        if data == _DONE:
            self.done = True
            return None
        if b'"error"' in data:
            self._raise_if_error(data)
        try:
            chunk = _DECODE_CHUNK(data)
        except DECODE_ERRORS as exc:
            raise _stream_error(
                self._ep, f"an unreadable stream event ({decode_problem(exc)})"
            ) from None
        chunk.provider = self._ep.provider
        if self._finish_map:
            for choice in chunk.choices:
                fr = choice.finish_reason
                if fr is not None:
                    choice.finish_reason = self._finish_map.get(fr, fr)
        return chunk

    def _raise_if_error(self, data: bytes) -> None:
        try:
            obj = _DECODE_ANY(data)
        except DECODE_ERRORS:
            return
        if isinstance(obj, dict) and obj.get("error"):
            _, msg = error_message_from_body(data)
            raise _stream_error(self._ep, f"an error event: {msg or obj['error']}")


def _stream_error(ep: Endpoint, what: str) -> StreamError:
    err = StreamError(
        f"The {ep.provider} stream for model {ep.model!r} carried {what.rstrip('.')}, so the "
        "answer is incomplete. Retry the call (salvo retries by itself until the first chunk "
        "is delivered)."
    )
    err.provider, err.model = ep.provider, ep.model
    return err


class OpenAIAdapter:
    """The OpenAI wire format. One instance per provider row (name, finish-reason quirks)."""

    stream_ends_at_eof = False

    def __init__(
        self,
        name: str = "openai",
        *,
        key_env: str | None = "OPENAI_API_KEY",
        finish_reasons: Mapping[str, str] | None = None,
        auth_header: str = "authorization",
    ) -> None:
        self.name = name
        self.key_env = key_env
        self.finish_reasons: Mapping[str, str] = finish_reasons or {}
        self._auth_header = auth_header

    def headers(self, ep: Endpoint) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": "application/json"}
        if ep.api_key:
            if self._auth_header == "authorization":
                h["authorization"] = f"Bearer {ep.api_key}"
            else:
                h[self._auth_header] = ep.api_key
        h.update(ep.extra_headers)
        return h

    def chat_url(self, ep: Endpoint) -> str:
        return f"{ep.api_base}/chat/completions"

    def embedding_url(self, ep: Endpoint) -> str:
        return f"{ep.api_base}/embeddings"

    def build_chat(
        self,
        ep: Endpoint,
        headers: Mapping[str, str],
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        stream: bool,
    ) -> HTTPRequest:
        body: dict[str, Any] = {"model": ep.model, "messages": messages}
        if params:
            body.update(params)
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
        return HTTPRequest("POST", self.chat_url(ep), headers, _ENCODE(body))

    def parse_chat(self, ep: Endpoint, body: bytes) -> ModelResponse:
        try:
            resp = _DECODE_RESPONSE(body)
        except DECODE_ERRORS as exc:
            raise _decode_failed(ep, "response", body, exc) from None
        if not resp.choices:
            raise no_answer(ep, body)
        resp.provider = ep.provider
        if self.finish_reasons:
            for choice in resp.choices:
                fr = choice.finish_reason
                if fr is not None:
                    choice.finish_reason = self.finish_reasons.get(fr, fr)
        return resp

    def stream_parser(self, ep: Endpoint) -> OpenAIStreamParser:
        return OpenAIStreamParser(ep, self.finish_reasons)

    def build_embedding(
        self, ep: Endpoint, headers: Mapping[str, str], input: Any, params: Mapping[str, Any]
    ) -> HTTPRequest:
        body: dict[str, Any] = {"model": ep.model, "input": input}
        if params:
            body.update(params)
        return HTTPRequest("POST", self.embedding_url(ep), headers, _ENCODE(body))

    def parse_embedding(self, ep: Endpoint, body: bytes) -> EmbeddingResponse:
        try:
            resp = _DECODE_EMBEDDING(body)
        except DECODE_ERRORS as exc:
            raise _decode_failed(ep, "response", body, exc) from None
        if not resp.data:
            raise no_answer(ep, body, "embedding")
        resp.provider = ep.provider
        return resp

    def parse_error(
        self, ep: Endpoint, status: int, headers: Mapping[str, str], body: bytes
    ) -> ProviderError:
        return make_provider_error(ep, status, headers, body, key_env=self.key_env)
