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
from .vertex_ai import VertexAdapter

__all__ = [
    "BASE_ENV_FALLBACKS",
    "KEY_ENV_FALLBACKS",
    "PROVIDERS",
    "PROVIDER_ALIASES",
    "UNSUPPORTED",
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
        capabilities=Capabilities(streaming=True, tools=True, embeddings=True, batch_api=True),
        finish_reasons=_GEMINI_FINISH,
        notes="Gemini API (AI Studio key in GEMINI_API_KEY, else GOOGLE_API_KEY)",
    ),
    ProviderInfo(
        name="vertex_ai",
        adapter=VertexAdapter("vertex_ai"),
        base_url="https://aiplatform.googleapis.com",
        key_env=None,
        base_env="VERTEXAI_API_BASE",
        key_required=False,
        capabilities=Capabilities(streaming=True, tools=True, embeddings=False, batch_api=True),
        finish_reasons=_GEMINI_FINISH,
        notes="Gemini on Vertex AI: service-account credentials (extra salvo-llm[vertex]); "
        "VERTEXAI_PROJECT, VERTEXAI_LOCATION, GOOGLE_APPLICATION_CREDENTIALS",
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
        notes="v2 API; key in CO_API_KEY (the Cohere SDK's name), else COHERE_API_KEY",
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


#: LiteLLM's (and the official SDKs') variable names, read when salvo's own is unset.
KEY_ENV_FALLBACKS: dict[str, tuple[str, ...]] = {
    "cohere": ("COHERE_API_KEY",),
    "gemini": ("GOOGLE_API_KEY",),
    "together": ("TOGETHERAI_API_KEY",),
    "fireworks": ("FIREWORKS_AI_API_KEY",),
    "azure": ("AZURE_OPENAI_API_KEY",),
}
BASE_ENV_FALLBACKS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_BASE",),
    "azure": ("AZURE_OPENAI_ENDPOINT",),
}

#: LiteLLM's provider prefixes that name a provider salvo has under another name.
PROVIDER_ALIASES: dict[str, str] = {
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "cohere_chat": "cohere",
    "mistralai": "mistral",
    "hosted_vllm": "vllm",
    "azure_openai": "azure",
}

#: Providers LiteLLM users may write that salvo does not have yet, and what to use instead.
UNSUPPORTED: dict[str, str] = {
    "bedrock": (
        "AWS Bedrock needs SigV4 request signing, which salvo does not do: call Anthropic "
        "models through anthropic/<model> with an Anthropic key, or put an OpenAI-compatible "
        "gateway in front of Bedrock and use openai_compatible/<model> with api_base=...."
    ),
    "sagemaker": (
        "SageMaker endpoints need SigV4 signing, which salvo does not do: serve the model "
        "with an OpenAI-compatible server (vLLM, TGI) and use vllm/<model> or "
        "openai_compatible/<model> with api_base=...."
    ),
    "huggingface": (
        "Hugging Face Inference Providers speak the OpenAI API: use "
        "openai_compatible/<model> with api_base=https://router.huggingface.co/v1 and "
        "api_key=<HF token>."
    ),
    "replicate": (
        "Replicate's prediction API is not OpenAI-shaped; use a provider from the list, or "
        "openai_compatible/<model> with the api_base of an OpenAI-compatible host."
    ),
    "watsonx": (
        "IBM watsonx needs IAM token exchange, which salvo does not do; use "
        "openai_compatible/<model> with an OpenAI-compatible gateway's api_base."
    ),
    "databricks": (
        "Databricks serving endpoints speak the OpenAI API: use openai_compatible/<model> "
        "with api_base=https://<workspace>/serving-endpoints and api_key=<token>."
    ),
    "ai21": "AI21 is not in salvo yet; use openai_compatible/<model> with its api_base.",
    "cloudflare": (
        "Cloudflare Workers AI has an OpenAI-compatible endpoint: use openai_compatible/"
        "<model> with api_base=https://api.cloudflare.com/client/v4/accounts/<id>/ai/v1."
    ),
    "palm": "PaLM is retired; use gemini/<model> (key in GEMINI_API_KEY or GOOGLE_API_KEY).",
    "text-completion-openai": (
        "salvo has chat completions only; use openai/<model> with chat messages."
    ),
}


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
        if p.key_env is None:  # vertex_ai: a service account's tokens, no key
            key = "service account (`GOOGLE_APPLICATION_CREDENTIALS`)"
        else:
            key = f"`{p.key_env}`" + ("" if p.key_required else " (optional)")
        rows.append(
            f"| {p.name} | {prefix} | {key} | {yes(c.streaming)} | {yes(c.tools)} "
            f"| {yes(c.embeddings)} | {yes(c.batch_api)} |"
        )
    return "\n".join(rows)
