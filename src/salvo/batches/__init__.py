"""Batch jobs: files and batches on OpenAI, Azure, Anthropic, or the local engine.

One OpenAI shape whatever the provider (:class:`Batch`, :class:`FileObject`, :class:`Page`,
:class:`BatchResult`); see ``salvo.batches._api`` for how ``provider`` picks a backend and
``salvo.batches._engine`` for the local engine and its exactly-once guarantee.
"""

from ._api import AsyncStream as AsyncStream
from ._api import acancel_batch as acancel_batch
from ._api import acreate_batch as acreate_batch
from ._api import acreate_file as acreate_file
from ._api import adelete_file as adelete_file
from ._api import afile_content as afile_content
from ._api import aiter_file_content as aiter_file_content
from ._api import alist_batches as alist_batches
from ._api import alist_files as alist_files
from ._api import aretrieve_batch as aretrieve_batch
from ._api import aretrieve_file as aretrieve_file
from ._api import asubmit_batch as asubmit_batch
from ._results import abatch_results as abatch_results
from ._results import await_batch as await_batch
from ._sync import batch_completion_create as batch_completion_create
from ._sync import batch_completion_list as batch_completion_list
from ._sync import batch_completion_retrieve as batch_completion_retrieve
from ._sync import cancel_batch as cancel_batch
from ._sync import create_batch as create_batch
from ._sync import create_file as create_file
from ._sync import file_content as file_content
from ._sync import list_batches as list_batches
from ._sync import retrieve_batch as retrieve_batch
from ._types import Batch as Batch
from ._types import BatchError as BatchError
from ._types import BatchResult as BatchResult
from ._types import FileDeleted as FileDeleted
from ._types import FileObject as FileObject
from ._types import Page as Page
from ._types import RequestCounts as RequestCounts

__all__ = [
    "AsyncStream",
    "Batch",
    "BatchError",
    "BatchResult",
    "FileDeleted",
    "FileObject",
    "Page",
    "RequestCounts",
    "abatch_results",
    "acancel_batch",
    "acreate_batch",
    "acreate_file",
    "adelete_file",
    "afile_content",
    "aiter_file_content",
    "alist_batches",
    "alist_files",
    "aretrieve_batch",
    "aretrieve_file",
    "asubmit_batch",
    "await_batch",
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
