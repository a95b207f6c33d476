"""A provider batch's cost, computed once and kept (see ``_results``'s docstring).

A leaf below ``_api`` and ``_results``, which both use it, so neither imports the other.
"""

from __future__ import annotations

from .._pricing import response_cost
from ._backends import Backend
from ._types import Batch

__all__ = ["native", "with_cost"]


def native(backend: Backend) -> bool:
    from ._local import LocalBatches

    return not isinstance(backend, LocalBatches)


def with_cost(backend: Backend, batch: Batch) -> Batch:
    """Fill ``cost_usd`` of a finished provider batch from the stored figure, or compute it
    once from the batch's reported usage and store it."""
    if not batch.done or batch.cost_usd is not None or not native(backend):
        return batch
    store = backend.store
    _, cost = store.recall(batch.provider, batch.id)
    if cost is None and batch.usage is not None and batch.model:
        u = batch.usage
        details = u.get("input_tokens_details") or {}
        usage = {
            "prompt_tokens": u.get("input_tokens", 0),
            "completion_tokens": u.get("output_tokens", 0),
            "prompt_tokens_details": {"cached_tokens": details.get("cached_tokens", 0)},
        }
        cost = response_cost(batch.provider, usage, batch.model, batch=True)
        if cost is not None:
            store.store_cost(batch.provider, batch.id, cost)
    batch.cost_usd = cost
    return batch
