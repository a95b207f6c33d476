"""Scrubbing the proxy's upstream secrets out of bytes it relays.

The proxy knows its secrets exactly (every deployment's key, the providers' key variables,
its master key), so it replaces each occurrence, as written and as JSON escapes it, with
``[redacted]``. Secrets of 8 characters or more are scrubbed from every relayed byte: no
ordinary text contains them by chance. Shorter ones (from :data:`MIN_SECRET` characters up)
are scrubbed from error bytes, i.e. any relayed piece that mentions ``error``: an upstream
that echoes a short key in an error's ``param`` or ``code`` must not hand it on, while a
four-letter key must not garble a normal answer that happens to contain the same letters.

Callers pass whole SSE events or whole bodies, never a piece cut at an arbitrary byte, so a
secret split across two network reads is scrubbed once the event around it is whole.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

__all__ = ["MIN_SECRET", "REDACTED", "Scrubber"]

#: Secrets shorter than this are not scrubbed at all (one to three characters are no secret).
MIN_SECRET = 4
#: Secrets at least this long are scrubbed from every relayed byte, not only from errors.
ALWAYS_FROM = 8
REDACTED = b"[redacted]"


class Scrubber:
    """``scrub(data) -> data`` with every known secret replaced (the same object when clean)."""

    __slots__ = ("_all", "_long")

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
        self._long = tuple(f for f in ordered if len(f) >= ALWAYS_FROM)

    def __bool__(self) -> bool:
        return bool(self._all)

    def __call__(self, data: bytes) -> bytes:
        secrets = self._all if b"error" in data or b"Error" in data else self._long
        for secret in secrets:
            if secret in data:
                data = data.replace(secret, REDACTED)
        return data
