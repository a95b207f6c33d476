"""salvo: fire LLM calls in parallel and keep only what you need.

Many prompts to one model (:func:`abatch_completion`), one prompt to many models, the fastest
winning with the losers closed at once (:func:`arace`), or all of them (:func:`agather_all`).
"""

import sys as _sys
import types as _pytypes
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from . import _compat
from ._api import abatch_completion as abatch_completion
from ._api import acompletion as acompletion
from ._api import aembedding as aembedding
from ._api import afirst_k as afirst_k
from ._api import agather_all as agather_all
from ._api import arace as arace
from ._api import warmup as warmup
from ._budget import Budget as Budget
from ._budget import LocalBudget as LocalBudget
from ._budget_redis import RedisBudget as RedisBudget
from ._call import Route as Route
from ._client import Client as Client
from ._config import Config as Config
from ._config import load_config as load_config
from ._errors import AllModelsFailedError as AllModelsFailedError
from ._errors import AuthenticationError as AuthenticationError
from ._errors import BadRequestError as BadRequestError
from ._errors import BudgetExceededError as BudgetExceededError
from ._errors import ConfigError as ConfigError
from ._errors import ConflictError as ConflictError
from ._errors import ConnectionError as ConnectionError
from ._errors import NotFoundError as NotFoundError
from ._errors import PermissionDeniedError as PermissionDeniedError
from ._errors import ProviderError as ProviderError
from ._errors import RateLimitError as RateLimitError
from ._errors import ResponseDecodeError as ResponseDecodeError
from ._errors import SalvoError as SalvoError
from ._errors import ServerError as ServerError
from ._errors import StreamError as StreamError
from ._errors import TimeoutError as TimeoutError
from ._errors import TransportError as TransportError
from ._limits import LimiterStatistics as LimiterStatistics
from ._limits import LimitSpec as LimitSpec
from ._pricing import cost_usd as cost_usd
from ._pricing import get_price as get_price
from ._pricing import set_price as set_price
from ._redis_store import LimitsStoreError as LimitsStoreError
from ._redis_store import RedisStore as RedisStore
from ._response import Response as Response
from ._response import ResponseStream as ResponseStream
from ._retry import RetryPolicy as RetryPolicy
from ._stats import ClientStatistics as ClientStatistics
from ._stream import CompletionStream as CompletionStream
from ._sync import batch_completion as batch_completion
from ._sync import batch_completion_models as batch_completion_models
from ._sync import batch_completion_models_all_responses as batch_completion_models_all_responses
from ._sync import completion as completion
from ._sync import embedding as embedding
from ._types import ChatCompletionChunk as ChatCompletionChunk
from ._types import Choice as Choice
from ._types import ChunkChoice as ChunkChoice
from ._types import ContenderReport as ContenderReport
from ._types import Delta as Delta
from ._types import Embedding as Embedding
from ._types import EmbeddingResponse as EmbeddingResponse
from ._types import Message as Message
from ._types import ModelResponse as ModelResponse
from ._types import RaceReport as RaceReport
from ._types import ToolCall as ToolCall
from ._types import Usage as Usage
from .providers import HTTPRequest as HTTPRequest
from .providers import providers as providers

if _TYPE_CHECKING:
    from .batches import AsyncStream as AsyncStream
    from .batches import Batch as Batch
    from .batches import BatchError as BatchError
    from .batches import BatchResult as BatchResult
    from .batches import FileDeleted as FileDeleted
    from .batches import FileObject as FileObject
    from .batches import Page as Page
    from .batches import RequestCounts as RequestCounts
    from .batches import abatch_results as abatch_results
    from .batches import acancel_batch as acancel_batch
    from .batches import acreate_batch as acreate_batch
    from .batches import acreate_file as acreate_file
    from .batches import adelete_file as adelete_file
    from .batches import afile_content as afile_content
    from .batches import aiter_file_content as aiter_file_content
    from .batches import alist_batches as alist_batches
    from .batches import alist_files as alist_files
    from .batches import aretrieve_batch as aretrieve_batch
    from .batches import aretrieve_file as aretrieve_file
    from .batches import asubmit_batch as asubmit_batch
    from .batches import await_batch as await_batch
    from .batches import batch_completion_create as batch_completion_create
    from .batches import batch_completion_list as batch_completion_list
    from .batches import batch_completion_retrieve as batch_completion_retrieve
    from .batches import cancel_batch as cancel_batch
    from .batches import create_batch as create_batch
    from .batches import create_file as create_file
    from .batches import file_content as file_content
    from .batches import list_batches as list_batches
    from .batches import retrieve_batch as retrieve_batch

__version__ = "0.1.0"

__all__ = [
    "AllModelsFailedError",
    "AsyncStream",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchError",
    "BatchResult",
    "Budget",
    "BudgetExceededError",
    "ChatCompletionChunk",
    "Choice",
    "ChunkChoice",
    "Client",
    "ClientStatistics",
    "CompletionStream",
    "Config",
    "ConfigError",
    "ConflictError",
    "ConnectionError",
    "ContenderReport",
    "Delta",
    "Embedding",
    "EmbeddingResponse",
    "FileDeleted",
    "FileObject",
    "HTTPRequest",
    "LimitSpec",
    "LimiterStatistics",
    "LimitsStoreError",
    "LocalBudget",
    "Message",
    "ModelResponse",
    "NotFoundError",
    "Page",
    "PermissionDeniedError",
    "ProviderError",
    "RaceReport",
    "RateLimitError",
    "RedisBudget",
    "RedisStore",
    "RequestCounts",
    "Response",
    "ResponseDecodeError",
    "ResponseStream",
    "RetryPolicy",
    "Route",
    "SalvoError",
    "ServerError",
    "StreamError",
    "TimeoutError",
    "ToolCall",
    "TransportError",
    "Usage",
    "abatch_completion",
    "abatch_results",
    "acancel_batch",
    "acompletion",
    "acreate_batch",
    "acreate_file",
    "adelete_file",
    "aembedding",
    "afile_content",
    "afirst_k",
    "agather_all",
    "aiter_file_content",
    "alist_batches",
    "alist_files",
    "arace",
    "aretrieve_batch",
    "aretrieve_file",
    "asubmit_batch",
    "await_batch",
    "batch_completion",
    "batch_completion_create",
    "batch_completion_list",
    "batch_completion_models",
    "batch_completion_models_all_responses",
    "batch_completion_retrieve",
    "cancel_batch",
    "completion",
    "cost_usd",
    "create_batch",
    "create_file",
    "drop_params",
    "embedding",
    "file_content",
    "get_price",
    "list_batches",
    "load_config",
    "num_retries",
    "providers",
    "request_timeout",
    "retrieve_batch",
    "set_price",
    "warmup",
]

#: Batch-job names, imported on first use: most programs never touch batch jobs, and the
#: batch package (SQLite, file store) is a sizeable share of ``import salvo``.
_LAZY_BATCHES = frozenset(
    {
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
    }
)


#: LiteLLM's module-level settings, as scripts set them (``litellm.num_retries = 3``):
#: ``salvo.drop_params`` (default True), ``salvo.num_retries`` and ``salvo.request_timeout``
#: (default None: the Client's own defaults, 2 retries and 600 s).
_SETTINGS = frozenset({"drop_params", "num_retries", "request_timeout"})


class _SalvoModule(_pytypes.ModuleType):
    def __setattr__(self, name: str, value: _Any) -> None:
        if name in _SETTINGS:
            _compat.set_setting(name, value)
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _SalvoModule


def __getattr__(name: str) -> _Any:
    if name in _SETTINGS:
        return _compat.setting(name)
    if name in _LAZY_BATCHES:
        from . import batches

        value = getattr(batches, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'salvo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_BATCHES | _SETTINGS)
