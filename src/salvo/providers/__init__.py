"""The provider table: one row per provider, OpenAI-compatible hosts as plain data rows.

A row says where the provider lives (base URL and the variable that overrides it), which
variable holds its key, which bare model-name prefixes resolve to it, and what it can do.
"""

from __future__ import annotations

from ._base import (
    Adapter,
    Capabilities,
    Endpoint,
    HTTPRequest,
    ProviderInfo,
    StreamParser,
)
from .anthropic import FINISH_REASONS as _ANTHROPIC_FINISH
from .anthropic import AnthropicAdapter
from .azure import DEFAULT_API_VERSION as _AZURE_VERSION
from .azure import AzureAdapter
from .cohere import FINISH_REASONS as _COHERE_FINISH
from .cohere import CohereAdapter
from .gemini import FINISH_REASONS as _GEMINI_FINISH
from .gemini import GeminiAdapter
from .openai import OpenAIAdapter

__all__ = [
    "PROVIDERS",
    "Adapter",
    "Capabilities",
    "Endpoint",
    "HTTPRequest",
    "ProviderInfo",
    "StreamParser",
    "get_provider",
    "providers",
    "providers_table",
    "register_provider",
]

_CHAT = Capabilities(streaming=True, tools=True, embeddings=False)
_CHAT_EMBED = Capabilities(streaming=True, tools=True, embeddings=True)
_CHAT_EMBED_BATCH = Capabilities(streaming=True, tools=True, embeddings=True, batch_api=True)


def _compat(
    name: str,
    base_url: str,
    key_env: str | None,
    *,
    key_required: bool = True,
    caps: Capabilities = _CHAT,
    finish_reasons: dict[str, str] | None = None,
    notes: str = "",
) -> ProviderInfo:
    return ProviderInfo(
        name=name,
        adapter=OpenAIAdapter(name, key_env=key_env, finish_reasons=finish_reasons),
        base_url=base_url,
        key_env=key_env,
        base_env=f"{name.upper()}_API_BASE",
        key_required=key_required,
        capabilities=caps,
        finish_reasons=finish_reasons or {},
        notes=notes,
    )


PROVIDERS: dict[str, ProviderInfo] = {}


def register_provider(info: ProviderInfo) -> None:
    """Add or replace a row of the provider table."""
    PROVIDERS[info.name] = info


for _row in (
    ProviderInfo(
        name="openai",
        adapter=OpenAIAdapter("openai"),
        base_url="https://api.openai.com/v1",
        key_env="OPENAI_API_KEY",
        base_env="OPENAI_BASE_URL",
        prefixes=("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-"),
        capabilities=Capabilities(streaming=True, tools=True, embeddings=True, batch_api=True),
    ),
    ProviderInfo(
        name="anthropic",
        adapter=AnthropicAdapter("anthropic"),
        base_url="https://api.anthropic.com",
        key_env="ANTHROPIC_API_KEY",
        base_env="ANTHROPIC_API_BASE",
        prefixes=("claude-",),
        capabilities=Capabilities(streaming=True, tools=True, embeddings=False, batch_api=True),
        finish_reasons=_ANTHROPIC_FINISH,
        notes="Messages API; max_tokens defaults to 4096; response_format is dropped",
    ),
    ProviderInfo(
        name="gemini",
        adapter=GeminiAdapter("gemini"),
        base_url="https://generativelanguage.googleapis.com",
        key_env="GEMINI_API_KEY",
        base_env="GEMINI_API_BASE",
        prefixes=("gemini-",),
        capabilities=Capabilities(streaming=True, tools=True, embeddings=True, batch_api=False),
        finish_reasons=_GEMINI_FINISH,
        notes="Gemini API (AI Studio key in GEMINI_API_KEY; GOOGLE_API_KEY is not read)",
    ),
    ProviderInfo(
        name="cohere",
        adapter=CohereAdapter("cohere"),
        base_url="https://api.cohere.com",
        key_env="CO_API_KEY",
        base_env="COHERE_API_BASE",
        prefixes=("command-",),
        capabilities=Capabilities(streaming=True, tools=True, embeddings=True, batch_api=False),
        finish_reasons=_COHERE_FINISH,
        notes="v2 API; key in CO_API_KEY (the Cohere SDK's name; LiteLLM uses COHERE_API_KEY)",
    ),
    ProviderInfo(
        name="azure",
        adapter=AzureAdapter("azure"),
        base_url="",
        key_env="AZURE_API_KEY",
        base_env="AZURE_API_BASE",
        capabilities=Capabilities(streaming=True, tools=True, embeddings=True, batch_api=True),
        version_env="AZURE_API_VERSION",
        default_version=_AZURE_VERSION,
        notes="azure/<deployment>; needs AZURE_API_BASE; a base ending /openai/v1 uses the v1 API",
    ),
    _compat(
        "groq",
        "https://api.groq.com/openai/v1",
        "GROQ_API_KEY",
        caps=Capabilities(streaming=True, tools=True, embeddings=False, batch_api=True),
    ),
    _compat(
        "together",
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
        caps=_CHAT_EMBED_BATCH,
        finish_reasons={"eos": "stop", "eos_token": "stop"},
    ),
    _compat(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        caps=_CHAT_EMBED,
        notes="model ids like accounts/fireworks/models/<name>",
    ),
    _compat("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    _compat(
        "mistral",
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        caps=_CHAT_EMBED_BATCH,
        finish_reasons={"model_length": "length"},
        notes="uses random_seed instead of seed",
    ),
    _compat("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    _compat(
        "perplexity",
        "https://api.perplexity.ai",
        "PERPLEXITY_API_KEY",
        caps=Capabilities(streaming=True, tools=False, embeddings=False),
    ),
    _compat("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
    _compat(
        "vllm", "http://localhost:8000/v1", "VLLM_API_KEY", key_required=False, caps=_CHAT_EMBED
    ),
    _compat(
        "llamacpp",
        "http://localhost:8080/v1",
        "LLAMACPP_API_KEY",
        key_required=False,
        caps=_CHAT_EMBED,
    ),
    _compat(
        "ollama",
        "http://localhost:11434/v1",
        "OLLAMA_API_KEY",
        key_required=False,
        caps=_CHAT_EMBED,
    ),
    _compat(
        "openai_compatible",
        "",
        "OPENAI_COMPATIBLE_API_KEY",
        key_required=False,
        caps=_CHAT_EMBED,
        notes="any OpenAI-compatible server; needs api_base",
    ),
):
    register_provider(_row)


def get_provider(name: str) -> ProviderInfo | None:
    return PROVIDERS.get(name)


def providers() -> list[ProviderInfo]:
    """Every supported provider with its model prefixes, key variable and capabilities."""
    return sorted(PROVIDERS.values(), key=lambda p: p.name)


def providers_table() -> str:
    """The provider table as Markdown (the README's copy is checked against this)."""

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    rows = [
        "| provider | model prefix | key variable | streaming | tools | embeddings | batch API |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in providers():
        c = p.capabilities
        prefix = ", ".join(f"`{x}`" for x in (f"{p.name}/", *p.prefixes))
        key = f"`{p.key_env}`" + ("" if p.key_required else " (optional)")
        rows.append(
            f"| {p.name} | {prefix} | {key} | {yes(c.streaming)} | {yes(c.tools)} "
            f"| {yes(c.embeddings)} | {yes(c.batch_api)} |"
        )
    return "\n".join(rows)
