"""OpenAI-format batch lines <-> Google's (Gemini Batch Mode and Vertex batch prediction).

In: each line of an OpenAI-format input file is checked and translated with the Gemini
adapter's own mapping (:func:`~salvo.providers.gemini.to_gemini_body`) into a
``GenerateContentRequest`` (chat) or an ``EmbedContentRequest`` (embeddings: one string per
line; ``dimensions`` -> ``outputDimensionality``, ``task_type`` -> ``taskType``). Every check
raises a ConfigError naming the line before anything is uploaded: not a batch line, a
custom_id that is missing or repeated, a url the provider has no batch for (or not the
batch's endpoint), a model of another provider or a second model (one batch runs one model).

Out: a Google answer for one request becomes one OpenAI batch output line (the response
parsed by the Gemini adapter, priced at the batch discount) or error line (the
``google.rpc.Status`` with its gRPC code mapped back to an HTTP status). A request the
provider's results never answer (a result line that could not be read, say) gets an error line
``missing_result`` from :func:`missing_line`, so every custom_id appears exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, NamedTuple

from .._errors import ConfigError, SalvoError
from .._messages import CALL_KEYS, check_messages
from .._pricing import response_cost
from ..providers import PROVIDERS, Endpoint
from ..providers.gemini import GeminiAdapter, to_gemini_body
from ._lines import (
    CHAT,
    EMBEDDINGS,
    ENDPOINTS,
    OutputLine,
    ResponsePart,
    decode_input,
    encode_line,
    iter_lines,
    numbered_lines,
)
from ._store import LocalStore
from ._types import BatchError

__all__ = [
    "GRPC_STATUS",
    "Translated",
    "ended_line",
    "error_result",
    "input_ids",
    "joined",
    "missing_line",
    "ok_result",
    "rfc3339",
    "translate_file",
]

log = logging.getLogger("salvo")
_ADAPTER = GeminiAdapter("gemini", key_env=None)
#: gRPC code -> (HTTP status, canonical name).
GRPC_STATUS = {
    1: (499, "CANCELLED"),
    2: (500, "UNKNOWN"),
    3: (400, "INVALID_ARGUMENT"),
    4: (504, "DEADLINE_EXCEEDED"),
    5: (404, "NOT_FOUND"),
    6: (409, "ALREADY_EXISTS"),
    7: (403, "PERMISSION_DENIED"),
    8: (429, "RESOURCE_EXHAUSTED"),
    9: (400, "FAILED_PRECONDITION"),
    10: (409, "ABORTED"),
    13: (500, "INTERNAL"),
    14: (503, "UNAVAILABLE"),
    16: (401, "UNAUTHENTICATED"),
}
_DROP = frozenset({"model", "messages", "stream", "stream_options", "input"}) | CALL_KEYS


class Translated(NamedTuple):
    custom_id: str
    model: str
    request: dict[str, Any]
    line: int = 0


def _model_name(model: Any, provider: str, line: int) -> str:
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"Line {line}: the body needs a 'model' (e.g. 'gemini-2.5-flash').")
    head, sep, rest = model.strip().partition("/")
    if sep and head in PROVIDERS:
        if head != provider and not (provider == "vertex_ai" and head == "gemini"):
            raise ConfigError(
                f"Line {line}: model {model!r} is a {head} model; a {provider} batch runs "
                f"{provider} models only."
            )
        return rest.removeprefix("models/")
    return model.strip().removeprefix("models/")


def _embed_request(body: Mapping[str, Any], line: int) -> dict[str, Any]:
    text = body.get("input")
    if isinstance(text, list) and len(text) == 1:
        text = text[0]
    if not isinstance(text, str) or not text:
        raise ConfigError(
            f"Line {line}: a Gemini batch embeds one non-empty string per line; split a list "
            "input into one line per string (token arrays are not accepted)."
        )
    out: dict[str, Any] = {"content": {"parts": [{"text": text}]}}
    if body.get("dimensions") is not None:
        out["outputDimensionality"] = body["dimensions"]
    task = body.get("task_type") or body.get("taskType")
    if task:
        out["taskType"] = task
    return out


def translate_line(
    raw: bytes, line: int, seen: dict[str, int], *, provider: str, kind: str
) -> Translated:
    """One OpenAI-format input line as (custom_id, model, Google request), or ConfigError."""
    try:
        req = decode_input(raw)
    except ConfigError as exc:
        raise ConfigError(f"Line {line}: {exc}.") from None
    custom_id = req.custom_id
    if not isinstance(custom_id, str) or not custom_id:
        raise ConfigError(f"Line {line}: custom_id must be a non-empty string.")
    if custom_id in seen:
        raise ConfigError(
            f"Line {line}: custom_id {custom_id!r} repeats line {seen[custom_id]}; custom_ids "
            "must be unique within a batch."
        )
    seen[custom_id] = line
    url_kind = ENDPOINTS.get(req.url) if isinstance(req.url, str) else None
    if url_kind not in (CHAT, EMBEDDINGS) or (provider == "vertex_ai" and url_kind != CHAT):
        what = "chat completions" if provider == "vertex_ai" else "chat completions and embeddings"
        raise ConfigError(
            f"Line {line}: {provider} has no batch for url {req.url!r}; its batches run {what} "
            "(/v1/chat/completions" + ("" if provider == "vertex_ai" else ", /v1/embeddings") + ")."
        )
    if url_kind != kind:
        raise ConfigError(
            f"Line {line}: url {req.url!r} differs from the batch's endpoint; one batch runs "
            "one endpoint."
        )
    if not isinstance(req.body, dict):
        raise ConfigError(f"Line {line}: body must be a JSON object.")
    model = _model_name(req.body.get("model"), provider, line)
    params = {k: v for k, v in req.body.items() if k not in _DROP}
    try:
        if kind == EMBEDDINGS:
            return Translated(custom_id, model, _embed_request(req.body, line))
        messages: Any = req.body.get("messages")
        check_messages(messages)
        return Translated(custom_id, model, to_gemini_body(messages, params))
    except ConfigError as exc:
        if str(exc).startswith("Line "):
            raise
        raise ConfigError(f"Line {line}: {exc}") from None


async def translate_file(
    store: LocalStore, file_id: str, *, provider: str, kind: str
) -> AsyncIterator[Translated]:
    """The translated lines of a local input file, checked; every line must name one model."""
    seen: dict[str, int] = {}
    model: str | None = None

    def one(raw: bytes, n: int) -> Translated:
        nonlocal model
        t = translate_line(raw, n, seen, provider=provider, kind=kind)._replace(line=n)
        if model is None:
            model = t.model
        elif t.model != model:
            raise ConfigError(
                f"Line {n}: model {t.model!r} differs from {model!r} on line "
                f"{next(iter(seen.values()))}; a {provider} batch runs one model."
            )
        return t

    async for n, raw in numbered_lines(store.iter_file(file_id, provider)):
        yield one(raw, n)


async def input_ids(store: LocalStore, file_id: str, provider: str) -> AsyncIterator[str]:
    """The custom_ids of a local input file, in order (lines already checked at create)."""
    async for raw in iter_lines(store.iter_file(file_id, provider)):
        custom_id = decode_input(raw).custom_id
        if isinstance(custom_id, str):
            yield custom_id


def ok_result(
    custom_id: str, body: bytes, *, provider: str, model: str, kind: str
) -> tuple[bool, bytes, float | None]:
    """A Google response for ``custom_id`` as an OpenAI output line (and its cost)."""
    ep = Endpoint(provider=provider, model=model, api_base="")
    line_id = f"batch_req_{custom_id}"
    try:
        if kind == EMBEDDINGS:
            emb = _ADAPTER.parse_embedding(ep, body)
            part = ResponsePart(200, None, emb)
            return True, encode_line(OutputLine(line_id, custom_id, part, None)), None
        resp = _ADAPTER.parse_chat(ep, body)
    except SalvoError as exc:
        return error_result(custom_id, f"The provider's answer could not be read: {exc}")
    resp.provider = provider
    resp.cost_usd = response_cost(provider, resp.usage, resp.model, model, batch=True)
    part = ResponsePart(200, resp.id or None, resp)
    return True, encode_line(OutputLine(line_id, custom_id, part, None)), resp.cost_usd


def error_result(custom_id: str | None, status: Any) -> tuple[bool, bytes, float | None]:
    """A ``google.rpc.Status`` (or an error text) as an OpenAI error line."""
    line_id = f"batch_req_{custom_id}"
    if isinstance(status, dict):
        code = status.get("code")
        http, name = GRPC_STATUS.get(code, (500, "UNKNOWN")) if isinstance(code, int) else (
            500, "UNKNOWN")  # fmt: skip
        message = str(status.get("message") or name)
        body = {"error": {"message": message, "type": name, "param": None, "code": code}}
        part = ResponsePart(http, None, body)
        return False, encode_line(OutputLine(line_id, custom_id, part, None)), None
    error = BatchError(code="request_failed", message=str(status))
    return False, encode_line(OutputLine(line_id, custom_id, None, error)), None


def missing_line(custom_id: str, provider: str) -> bytes:
    error = BatchError(
        code="missing_result",
        message=f"{provider}'s results hold no readable answer for this request (its result "
        "line was missing or could not be read); send it again.",
    )
    return encode_line(OutputLine(f"batch_req_{custom_id}", custom_id, None, error))


async def joined(
    results: AsyncIterator[tuple[Any, bool, Any]],
    ids: list[str],
    *,
    provider: str,
    model: str,
    kind: str,
    missing: Callable[[str], bytes] | None = None,
) -> AsyncIterator[tuple[bool, bytes]]:
    """(ok, OpenAI line) for each result ``(custom_id, ok, response bytes | Status)``, each
    input custom_id exactly once: a result for an unknown or already answered custom_id is
    dropped (logged), and every custom_id without a result gets a ``missing_result`` line."""
    expected, seen = set(ids), set()
    async for key, good, value in results:
        if not isinstance(key, str) or key not in expected or key in seen:
            log.warning("%s: dropped a batch result for an unknown or repeated key", provider)
            continue
        seen.add(key)
        if good:
            ok, line, _ = ok_result(key, value, provider=provider, model=model, kind=kind)
        else:
            ok, line, _ = error_result(key, value)
        yield ok, line
    for custom_id in ids:
        if custom_id not in seen:
            yield False, (missing(custom_id) if missing else missing_line(custom_id, provider))


def ended_line(custom_id: str, code: str, message: str) -> bytes:
    """The error line of a request that never ran (the batch was cancelled, expired, failed)."""
    error = BatchError(code=code, message=message)
    return encode_line(OutputLine(f"batch_req_{custom_id}", custom_id, None, error))


def rfc3339(value: str | None) -> int | None:
    """Unix seconds of an RFC 3339 time (any number of fraction digits), None if absent."""
    if not value:
        return None
    head, dot, frac = value.replace("Z", "+00:00").partition(".")
    if dot:
        digits = frac[: len(frac) - len(frac.lstrip("0123456789"))]
        head += frac[len(digits) :]
    try:
        return int(dt.datetime.fromisoformat(head).timestamp())
    except ValueError:
        return None
