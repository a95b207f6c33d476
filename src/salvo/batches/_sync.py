"""Blocking twins of the batch functions, with the seed names, for scripts.

Inside a running event loop they refuse and name the coroutine to await instead. A local
batch runs in this process, so the blocking ``create_batch`` / ``batch_completion_create``
of a local batch return once it has ended (the async API runs it in the background).
"""

from __future__ import annotations

import os
from typing import Any

from .._sync import _run
from ._api import (
    acancel_batch,
    acreate_batch,
    acreate_file,
    afile_content,
    alist_batches,
    aretrieve_batch,
    pick_provider,
)
from ._backends import is_local
from ._results import await_batch
from ._store import FileSource
from ._types import Batch, FileContent, FileObject, Page

__all__ = [
    "batch_completion_create",
    "batch_completion_list",
    "batch_completion_retrieve",
    "cancel_batch",
    "create_batch",
    "create_file",
    "file_content",
    "list_batches",
    "retrieve_batch",
]


def create_file(file: FileSource, **kw: Any) -> FileObject:
    """Blocking :func:`salvo.acreate_file`."""
    return _run("create_file", "acreate_file", acreate_file, file, **kw)


async def _create(**kw: Any) -> Batch:
    batch = await acreate_batch(**kw)
    provider = pick_provider(kw.get("provider", "openai"), kw.get("custom_llm_provider"))
    if not is_local(provider):
        return batch
    keep = ("client", "api_key", "api_base", "store_dir", "model", "concurrency")
    return await await_batch(batch.id, provider=provider, **{k: kw[k] for k in keep if k in kw})


def create_batch(**kw: Any) -> Batch:
    """Blocking :func:`salvo.acreate_batch` (a local batch is run to its end first)."""
    return _run("create_batch", "acreate_batch", _create, **kw)


def retrieve_batch(batch_id: str, **kw: Any) -> Batch:
    """Blocking :func:`salvo.aretrieve_batch`."""
    return _run("retrieve_batch", "aretrieve_batch", aretrieve_batch, batch_id, **kw)


def list_batches(**kw: Any) -> Page[Batch]:
    """Blocking :func:`salvo.alist_batches`."""
    return _run("list_batches", "alist_batches", alist_batches, **kw)


def cancel_batch(batch_id: str, **kw: Any) -> Batch:
    """Blocking :func:`salvo.acancel_batch`."""
    return _run("cancel_batch", "acancel_batch", acancel_batch, batch_id, **kw)


def file_content(file_id: str, **kw: Any) -> FileContent:
    """Blocking :func:`salvo.afile_content`: the file's whole content."""
    return _run("file_content", "afile_content", afile_content, file_id, **kw)


async def _upload_and_create(input_file_path: str | os.PathLike[str], **kw: Any) -> Batch:
    files_kw = {
        k: kw[k] for k in ("provider", "client", "api_key", "api_base", "store_dir") if k in kw
    }
    fo = await acreate_file(input_file_path, purpose="batch", **files_kw)
    return await _create(input_file_id=fo.id, **kw)


def batch_completion_create(*, input_file_path: str | os.PathLike[str], **kw: Any) -> Batch:
    """Upload a JSONL file and create a batch from it (LiteLLM's name)."""
    return _run(
        "batch_completion_create", "acreate_batch", _upload_and_create, input_file_path, **kw
    )


def batch_completion_retrieve(batch_id: str, **kw: Any) -> Batch:
    """Blocking :func:`salvo.aretrieve_batch` (LiteLLM's name)."""
    return _run("batch_completion_retrieve", "aretrieve_batch", aretrieve_batch, batch_id, **kw)


def batch_completion_list(*, limit: int = 20, **kw: Any) -> Page[Batch]:
    """Blocking :func:`salvo.alist_batches` (LiteLLM's name)."""
    return _run("batch_completion_list", "alist_batches", alist_batches, limit=limit, **kw)
