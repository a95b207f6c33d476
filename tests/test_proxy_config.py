"""Proxy configuration (LiteLLM files as they are, errors with key and line) and ``salvo serve``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import aiohttp
import openai
import pytest

from _serve import salvo_serve
from salvo import ConfigError
from salvo.cli import main
from salvo.proxy import ProxyServer, ProxySettings, create_app, load_settings
from salvo.proxy._cli import split_limits
from salvo.testing import Behavior, FakeProvider

LITELLM = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {base}
      api_key: os.environ/TEST_PROXY_UPSTREAM_KEY
      rpm: 600
    model_info:
      id: deployment-1
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {base}
      api_key: os.environ/TEST_PROXY_UPSTREAM_KEY
litellm_settings:
  drop_params: true
  num_retries: 0
  request_timeout: 30
router_settings:
  routing_strategy: simple-shuffle
general_settings:
  master_key: os.environ/TEST_PROXY_MASTER
  database_url: postgresql://user:pass@localhost/litellm
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


async def test_a_litellm_config_file_loads_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PROXY_UPSTREAM_KEY", "sk-up-abcdefabcdef")
    monkeypatch.setenv("TEST_PROXY_MASTER", "sk-1234")
    async with FakeProvider() as fake:
        path = _write(tmp_path, LITELLM.format(base=fake.openai_base))
        async with (
            ProxyServer(path) as proxy,
            openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="sk-1234") as oai,
        ):
            assert proxy.state.settings.num_retries == 0
            assert proxy.state.settings.request_timeout == 30
            models = [m.id for m in (await oai.models.list()).data]
            assert models == ["gpt-4o"]
            messages = [{"role": "user", "content": "hi"}]
            first = await oai.chat.completions.create(model="gpt-4o", messages=messages)
            second = await oai.chat.completions.create(model="gpt-4o", messages=messages)
            # two deployments behind one alias take turns
            assert {first.model, second.model} == {"gpt-4o", "gpt-4o-mini"}
            assert fake.records[0].headers["authorization"] == "Bearer sk-up-abcdefabcdef"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            """\
            model_list:
              - model_name: a
                params: {model: openai/gpt-4o, api_key: os.environ/TEST_PROXY_UNSET}
            """,
            ["'a'", "line 2", "'api_key'", "TEST_PROXY_UNSET"],
        ),
        (
            """\
            model_list:
              - model_name: ok
                params: {model: openai/gpt-4o, api_key: k}
              - model_name: b
                litellm_params: {model: bedrock/claude}
            """,
            ["'b'", "line 4", "no 'bedrock' provider yet"],
        ),
        (
            """\
            model_list:
              - model_name: c
                params: {model: openai/gpt-4o, api_key: k, rpm: -5}
            """,
            ["line 2", "'rpm'"],
        ),
        (
            """\
            model_list:
              - model_name: d
                params: {model: deepseek/deepseek-chat, api_key: k, batch: native}
            """,
            ["line 2", "'batch'", "no batch API"],
        ),
        (
            """\
            model_list:
              - model_name: e,f
                params: {model: openai/gpt-4o, api_key: k}
            """,
            ["line 2", "','"],
        ),
        (
            """\
            model_list: []
            general_settings:
              master_key: os.environ/TEST_PROXY_UNSET
            """,
            ["'master_key'", "line 3", "TEST_PROXY_UNSET"],
        ),
        (
            """\
            model_list: []
            salvo_settings:
              allow_any_model: yes please
              max_request_size_mb: 1
            """,
            ["'allow_any_model'", "line 3", "true or false"],
        ),
        (
            """\
            model_list: []
            litellm_settings:

              max_request_size_mb: big
            """,
            ["'max_request_size_mb'", "line 4", "a number > 0"],
        ),
    ],
)
def test_bad_configs_name_the_key_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragments: list[str]
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        create_app(path)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert main(["serve", "--config", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("salvo serve: ") and fragments[0] in err


def test_settings_defaults_and_the_master_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from salvo import load_config

    monkeypatch.delenv("SALVO_MASTER_KEY", raising=False)
    assert load_settings(load_config({"model_list": []})) == ProxySettings()
    monkeypatch.setenv("SALVO_MASTER_KEY", "from-env")
    cfg = load_config({"model_list": [], "salvo_settings": {"max_file_size_mb": 2}})
    settings = load_settings(cfg)
    assert settings.master_key == "from-env"
    assert settings.max_file_bytes == 2 * 1024 * 1024


def test_limits_are_divided_among_workers() -> None:
    from salvo import load_config

    cfg = load_config(
        {"model_list": [{"model_name": "a", "params": {"model": "openai/x", "rpm": 601, "tpm": 9}}]}
    )
    (entry,) = split_limits(cfg, 4).models["a"]
    assert entry.params == {"model": "openai/x", "rpm": 151, "tpm": 3}
    assert split_limits(cfg, 1) is cfg


def test_serve_refuses_a_public_address_without_a_master_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SALVO_MASTER_KEY", raising=False)
    path = _write(tmp_path, "model_list: []\n")
    assert main(["serve", "--config", str(path), "--host", "0.0.0.0"]) == 2
    assert "without a master key" in capsys.readouterr().err
    assert main(["serve", "--config", str(path), "--workers", "0"]) == 2


@pytest.mark.parametrize("workers", [1, 2])
async def test_salvo_serve_starts_serves_and_stops_on_sigterm(tmp_path: Path, workers: int) -> None:
    async with FakeProvider() as fake:
        fake.script("gpt-4o-mini", Behavior(text="served"))
        path = _write(
            tmp_path,
            f"""\
            model_list:
              - model_name: fast
                params: {{model: openai/gpt-4o-mini, api_base: "{fake.openai_base}", api_key: k}}
            general_settings: {{master_key: cli-key}}
            """,
        )
        args = ["--config", str(path), "--port", "0", "--workers", str(workers)]
        async with salvo_serve(*args, timeout=20) as served:
            line = served.line
            assert line.startswith("salvo proxy listening on http://127.0.0.1:"), line
            assert line.rstrip().endswith("models: fast")
            assert f"({workers} worker" in line
            url = served.url
            async with aiohttp.ClientSession() as http:
                for _ in range(4):
                    async with http.post(
                        url + "/v1/chat/completions",
                        json={"model": "fast", "messages": [{"role": "user", "content": "x"}]},
                        headers={"Authorization": "Bearer cli-key"},
                    ) as resp:
                        assert resp.status == 200
                        body = await resp.json()
                        assert body["choices"][0]["message"]["content"] == "served"
        assert served.proc.returncode == 0, served.err.decode()


def test_a_provider_parameter_that_is_not_json_is_refused_when_the_config_loads() -> None:
    import salvo

    entry = {"model_name": "m", "params": {"model": "openai/gpt-4o-mini", "temperature": object()}}
    with pytest.raises(
        salvo.ConfigError, match="'temperature' of 'm' \\(object\\) can not go into a JSON"
    ):
        salvo.Client(config={"model_list": [entry]})
