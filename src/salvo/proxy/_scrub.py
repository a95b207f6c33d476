"""Scrubbing the proxy's upstream secrets out of the error bytes it relays.

The proxy knows its secrets exactly (every deployment's key, the providers' key variables,
its master key), so it replaces each occurrence, as written and as JSON escapes it, with
``[redacted]``, short keys too (from :data:`MIN_SECRET` characters: one to three characters are
no secret, and replacing them would garble any text). What is scrubbed is every relayed piece
that carries an error (it mentions ``error`` or ``Error`` anywhere: an OpenAI error event, a
vLLM ``"object": "error"``, an HTML error page): an upstream that echoes the request's
``Authorization`` header or its key in an error's ``message``, ``param`` or ``code`` never hands
it on. Pieces without one are relayed untouched (one byte scan on the streaming hot path).

Callers pass whole SSE events or whole bodies, never a piece cut at an arbitrary byte, so a
secret split across two network reads is scrubbed once the event around it is whole.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

__all__ = ["MIN_SECRET", "REDACTED", "Scrubber"]

#: Secrets shorter than this are not scrubbed at all (one to three characters are no secret).
MIN_SECRET = 4
REDACTED = b"[redacted]"


class Scrubber:
    """``scrub(data) -> data``: an error piece with every known secret replaced (the same
    object when there is nothing to replace)."""

    __slots__ = ("_all",)

    def __init__(self, secrets: Iterable[str | None]) -> None:
        forms: set[bytes] = set()
        for s in secrets:
            if not isinstance(s, str) or len(s) < MIN_SECRET:
                continue
            forms.add(s.encode("utf-8", "surrogateescape"))
            escaped = msgspec.json.encode(s)[1:-1]  # how a JSON body writes it
            forms.add(escaped)
            forms.add(escaped.replace(b"/", b"\\/"))
        ordered = sorted(forms, key=len, reverse=True)  # a longer secret holding a shorter one
        self._all = tuple(ordered)

    def __bool__(self) -> bool:
        return bool(self._all)

    def __call__(self, data: bytes) -> bytes:
        if b"rror" not in data:  # error, Error: one scan of a piece that has none
            return data
        for secret in self._all:
            if secret in data:
                data = data.replace(secret, REDACTED)
        return data
