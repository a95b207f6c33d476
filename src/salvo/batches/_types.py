"""The batch-job types, in OpenAI's shape whatever the provider.

Every struct tolerates unknown fields (the Batch object keeps growing: ``model``, ``usage``,
...) and gives every non-essential field a default, so a response from any provider (or an
older or newer API version) decodes. ``to_dict()`` gives the OpenAI JSON shape plus salvo's
``provider`` and ``cost_usd`` keys.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from .._types import DictAccess, EmbeddingResponse, ModelResponse

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "TERMINAL_STATUSES",
    "AsyncStream",
    "Batch",
    "BatchError",
    "BatchErrors",
    "BatchResult",
    "FileContent",
    "FileDeleted",
    "FileObject",
    "Page",
    "RequestCounts",
]

T = TypeVar("T")

#: Statuses after which a batch never changes again.
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})


class _Base(DictAccess, msgspec.Struct, kw_only=True):  # dict access, model_dump(), json()
    pass


class FileObject(_Base):
    """An uploaded file (``object: "file"``)."""

    id: str
    object: str = "file"
    bytes: int = 0
    created_at: int = 0
    filename: str = ""
    purpose: str = "batch"
    status: str | None = "processed"
    status_details: str | None = None
    expires_at: int | None = None
    provider: str = "openai"


class FileDeleted(_Base):
    id: str
    object: str = "file"
    deleted: bool = True


class RequestCounts(_Base):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(_Base):
    """One problem: a validation error of the batch (with the input ``line``), or the
    reason one request failed (``code`` and ``message``)."""

    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(_Base):
    object: str = "list"
    data: list[BatchError] = msgspec.field(default_factory=list)


class Batch(_Base):
    """A batch job (``object: "batch"``), OpenAI's lifecycle and counts for every provider:
    ``validating -> in_progress -> finalizing -> completed``; ``failed``, ``expired``,
    ``cancelling -> cancelled``."""

    id: str
    object: str = "batch"
    endpoint: str = "/v1/chat/completions"
    errors: BatchErrors | None = None
    input_file_id: str = ""
    completion_window: str = "24h"
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int = 0
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = msgspec.field(default_factory=RequestCounts)
    metadata: dict[str, str] | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    provider: str = "openai"
    cost_usd: float | None = None

    @property
    def done(self) -> bool:
        """True once the batch reached a terminal status (it will not change again)."""
        return self.status in TERMINAL_STATUSES


class Page(_Base, Generic[T]):
    """One page of a list: ``data`` plus the cursor for the next page (``after=last_id``)."""

    data: list[T] = msgspec.field(default_factory=list)
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None
    object: str = "list"


class BatchResult(_Base):
    """One request's outcome, joined to its input by ``custom_id``.

    ``response`` is the parsed body of a successful request (a ModelResponse for chat, an
    EmbeddingResponse for embeddings); ``error`` says why a request failed (for an HTTP
    error, ``status_code`` is its status and ``error`` comes from its error body).
    """

    custom_id: str | None
    status_code: int | None = None
    response: ModelResponse | EmbeddingResponse | None = None
    error: BatchError | None = None
    request_id: str | None = None
    id: str | None = None

    @property
    def ok(self) -> bool:
        return self.response is not None and self.error is None


class FileContent(bytes):
    """A downloaded file: ``bytes`` (so ``b"".startswith`` and friends work) with the openai
    SDK's binary-response interface: ``.content``, ``.text``, ``.read()``, ``.iter_lines()``,
    ``.iter_bytes()``, ``.write_to_file(path)``."""

    __slots__ = ()

    @property
    def content(self) -> bytes:
        return bytes(self)

    @property
    def text(self) -> str:
        return self.decode("utf-8")

    def read(self) -> bytes:
        return bytes(self)

    def iter_lines(self) -> Iterator[str]:
        """The text's lines without their line endings (JSONL: one result per line)."""
        return iter(self.text.splitlines())

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        size = chunk_size or len(self) or 1
        return (bytes(self[i : i + size]) for i in range(0, len(self), size))

    def write_to_file(self, file: str | os.PathLike[str]) -> None:
        with open(file, "wb") as f:
            f.write(self)


class AsyncStream(Generic[T]):
    """An async iterator that is also an async context manager: leaving the ``async with``
    (or ``aclose()``) ends it early and closes what it holds (an HTTP response, a file)."""

    def __init__(self, agen: AsyncGenerator[T, None]) -> None:
        self._agen = agen

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        await self._agen.aclose()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
