"""What the fake saw: one `Record` per request, with the timeline of its connection.

All times are ``time.monotonic()`` values: the same clock as the tests in-process, and the same
system-wide clock (CLOCK_MONOTONIC) on Linux when the fake runs in another process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Record"]


@dataclass(slots=True, eq=False)
class Record:
    """One request the fake received, updated as its response goes out.

    ``first_byte`` is when the response headers were sent, ``completed`` when the response was
    fully written, ``disconnected`` when the client went away first (the handler was cancelled or
    a write failed), ``aborted`` when the fake itself cut the connection (a ``reset_*`` fault).
    ``headers`` has lower-cased names; ``body`` is the parsed request JSON (None if unparsable).
    """

    id: int
    provider: str
    path: str
    model: str
    stream: bool
    headers: dict[str, str]
    body: Any
    arrived: float
    first_byte: float | None = None
    completed: float | None = None
    disconnected: float | None = None
    aborted: float | None = None
    status: int | None = None

    @property
    def closed(self) -> float | None:
        """When the exchange ended, however it ended; None while it is still going."""
        if self.completed is not None:
            return self.completed
        if self.disconnected is not None:
            return self.disconnected
        return self.aborted

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (what ``GET /_fake/records`` returns)."""
        return {
            "id": self.id,
            "provider": self.provider,
            "path": self.path,
            "model": self.model,
            "stream": self.stream,
            "headers": self.headers,
            "body": self.body,
            "arrived": self.arrived,
            "first_byte": self.first_byte,
            "completed": self.completed,
            "disconnected": self.disconnected,
            "aborted": self.aborted,
            "status": self.status,
            "closed": self.closed,
        }
