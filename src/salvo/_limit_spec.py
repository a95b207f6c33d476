"""What a key's limits are (:class:`LimitSpec`) and what its limiter reports
(:class:`LimiterStatistics`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ._errors import ConfigError

__all__ = ["LimitSpec", "LimiterStatistics"]

_FIELDS = ("rpm", "tpm", "max_parallel_requests")


class LimitSpec:
    """The limits of a key; ``None`` (or 0) means "no limit of this kind"."""

    __slots__ = _FIELDS

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        max_parallel_requests: int | None = None,
    ) -> None:
        for name, value in zip(_FIELDS, (rpm, tpm, max_parallel_requests), strict=True):
            ok = value is None or (
                isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            )
            if not ok or (name == "max_parallel_requests" and not isinstance(value, int | None)):
                raise ConfigError(f"{name} must be a positive number or None, not {value!r}.")
        self.rpm = rpm or None
        self.tpm = tpm or None
        self.max_parallel_requests = max_parallel_requests or None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LimitSpec:
        unknown = set(values) - set(_FIELDS)
        if unknown:
            raise ConfigError(
                f"Unknown limit(s) {', '.join(sorted(unknown))}; use rpm, tpm and "
                "max_parallel_requests."
            )
        return cls(**values)

    def over(self, base: LimitSpec) -> LimitSpec:
        """This spec's limits where set, ``base``'s elsewhere."""
        return LimitSpec(
            self.rpm or base.rpm,
            self.tpm or base.tpm,
            self.max_parallel_requests or base.max_parallel_requests,
        )

    def _tuple(self) -> tuple[Any, ...]:
        return (self.rpm, self.tpm, self.max_parallel_requests)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LimitSpec) and self._tuple() == other._tuple()

    def __hash__(self) -> int:
        return hash(self._tuple())

    def __bool__(self) -> bool:
        return bool(self.rpm or self.tpm or self.max_parallel_requests)

    def __repr__(self) -> str:
        return (
            f"LimitSpec(rpm={self.rpm}, tpm={self.tpm}, "
            f"max_parallel_requests={self.max_parallel_requests})"
        )


class LimiterStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one key's limiter (part of ``Client.statistics()``)."""

    rpm: float | None
    tpm: float | None
    max_parallel_requests: int | None
    in_flight: int
    waiting: int
    paused_for: float
    tokens_owed: float
