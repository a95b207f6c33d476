"""What the fan-out layer needs from a client: a small protocol, so that fan-out sits below
``Client`` and ``_client.py`` imports it (never the other way round).

``Client`` satisfies :class:`FanoutClient`; the fan-out modules (``_fanout``, ``_race``) take
one and import nothing from ``_client``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from ._errors import SalvoError
from ._types import ModelResponse

if TYPE_CHECKING:
    from ._budget import Budget
    from ._call import CallOptions
    from ._hedge import HedgeState
    from ._stream import CompletionStream

__all__ = ["FanoutClient", "Result"]

#: One item of a batch or gather: the answer, or the error it ended with, in place.
Result: TypeAlias = ModelResponse | SalvoError


class FanoutClient(Protocol):
    """The calls and state fan-out runs on."""

    @property
    def max_concurrency(self) -> int: ...

    @property
    def hedging(self) -> HedgeState: ...

    @property
    def budget(self) -> Budget | None: ...

    def options(self, model: str, params: dict[str, Any]) -> CallOptions: ...

    async def complete_with(
        self,
        opts: CallOptions,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        *,
        budget: Budget | None = None,
    ) -> ModelResponse: ...

    async def stream_with(
        self,
        opts: CallOptions,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        *,
        budget: Budget | None = None,
    ) -> CompletionStream: ...
