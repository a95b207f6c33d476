"""salvo's benchmarks: ``python -m benchmarks`` (salvo vs raw aiohttp) and
``python -m benchmarks --compare`` (also the openai SDK and LiteLLM). See ``_harness``."""
