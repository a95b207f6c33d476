"""The error tree, model resolution, and input checks: everything raised before any request."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import salvo
from salvo._errors import error_for_status
from salvo._messages import check_messages
from salvo._models import parse_models, resolve_deployment
from salvo.providers import Endpoint
from salvo.providers._base import make_provider_error, retry_after_from_headers


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, salvo.BadRequestError),
        (401, salvo.AuthenticationError),
        (403, salvo.PermissionDeniedError),
        (404, salvo.NotFoundError),
        (409, salvo.ConflictError),
        (422, salvo.BadRequestError),
        (429, salvo.RateLimitError),
        (500, salvo.ServerError),
        (503, salvo.ServerError),
        (529, salvo.ServerError),
        (418, salvo.ProviderError),
    ],
)
def test_status_maps_to_error_class(status: int, cls: type[salvo.ProviderError]) -> None:
    assert error_for_status(status) is cls
    assert issubclass(cls, salvo.SalvoError)


def test_timeout_error_is_also_builtin() -> None:
    assert issubclass(salvo.TimeoutError, TimeoutError)
    assert issubclass(salvo.TimeoutError, salvo.TransportError)


def test_all_models_failed_is_an_exception_group() -> None:
    errs = [
        salvo.ServerError("boom", status_code=500, provider="openai", model="a"),
        salvo.RateLimitError("slow", status_code=429, provider="openai", model="b"),
    ]
    group = salvo.AllModelsFailedError("all failed", errs, ["a", "b"])
    assert isinstance(group, ExceptionGroup)
    assert isinstance(group, salvo.SalvoError)
    assert list(group.exceptions) == errs
    assert group.models == ("a", "b")
    with pytest.raises(ExceptionGroup) as info:
        raise group
    matched, rest = info.value.split(salvo.RateLimitError)
    assert matched is not None and rest is not None
    assert isinstance(rest, salvo.AllModelsFailedError)


def test_provider_error_pickles_with_its_fields() -> None:
    err = salvo.RateLimitError("x", status_code=429, provider="p", model="m", retry_after=2.0)
    back = pickle.loads(pickle.dumps(err))
    assert (back.status_code, back.provider, back.model, back.retry_after) == (429, "p", "m", 2.0)


def test_openai_error_body_parsed() -> None:
    ep = Endpoint(provider="openai", model="gpt-4o-mini", api_base="http://x")
    body = (
        b'{"error":{"message":"Rate limit reached","type":"requests",'
        b'"param":null,"code":"rate_limit_exceeded"}}'
    )
    err = make_provider_error(ep, 429, {"retry-after-ms": "1500", "x-should-retry": "true"}, body)
    assert isinstance(err, salvo.RateLimitError)
    assert err.retry_after == 1.5 and err.should_retry is True
    assert "Rate limit reached" in str(err) and err.body["code"] == "rate_limit_exceeded"


def test_html_error_page_is_named_as_such() -> None:
    ep = Endpoint(provider="openai", model="m", api_base="http://x")
    err = make_provider_error(ep, 502, {}, b"<html><body>Bad gateway</body></html>")
    assert isinstance(err, salvo.ServerError)
    assert "HTML page" in str(err)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "1.5", "retry-after-ms": "100"}, 0.1),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_from_headers(headers) == expected


def test_retry_after_http_date() -> None:
    value = retry_after_from_headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert value == 0.0  # a date in the past means "now"


def test_parse_models_list_and_comma_string() -> None:
    assert parse_models("gpt-4o, groq/llama3-8b-8192 ,") == ["gpt-4o", "groq/llama3-8b-8192"]
    assert parse_models(["a", " b "]) == ["a", "b"]
    with pytest.raises(salvo.ConfigError):
        parse_models(" , ")


def test_resolution_by_prefix_and_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    dep = resolve_deployment("gpt-4o-mini")
    assert (dep.provider, dep.endpoint.model) == ("openai", "gpt-4o-mini")
    assert dep.endpoint.api_base == "https://api.openai.com/v1"
    assert dep.headers["authorization"] == "Bearer sk-test"
    groq = resolve_deployment("groq/llama-3.1-8b-instant")
    assert groq.endpoint.api_base == "https://api.groq.com/openai/v1"
    assert groq.endpoint.model == "llama-3.1-8b-instant"


def test_base_url_from_env_and_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    assert resolve_deployment("openai/x").endpoint.api_base == "http://127.0.0.1:9/v1"
    dep = resolve_deployment("openai/x", overrides={"api_base": "http://h/v1", "api_key": "k2"})
    assert dep.endpoint.api_base == "http://h/v1" and dep.endpoint.api_key == "k2"


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(salvo.ConfigError, match="GROQ_API_KEY"):
        resolve_deployment("groq/llama3")


def test_unknown_provider_and_unknown_bare_name() -> None:
    with pytest.raises(salvo.ConfigError, match="Unknown provider 'nope'"):
        resolve_deployment("nope/model")
    with pytest.raises(salvo.ConfigError, match="provider/name"):
        resolve_deployment("mystery-model")


def test_local_servers_need_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    dep = resolve_deployment("vllm/meta-llama/Llama-3.1-8B")
    assert dep.endpoint.model == "meta-llama/Llama-3.1-8B"
    assert "authorization" not in dep.headers


def test_config_alias_with_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-alias")
    cfg = salvo.load_config(
        {
            "model_list": [
                {
                    "model_name": "fast",
                    "litellm_params": {
                        "model": "openai/gpt-4o-mini",
                        "api_base": "http://127.0.0.1:1/v1",
                        "api_key": "os.environ/MY_KEY",
                        "rpm": 500,
                        "temperature": 0.2,
                    },
                }
            ]
        }
    )
    dep = resolve_deployment("fast", config=cfg)
    assert dep.endpoint.api_key == "sk-alias" and dep.rpm == 500
    assert dep.params == {"temperature": 0.2}
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(salvo.ConfigError, match="MY_KEY"):
        resolve_deployment("fast", config=cfg)


def test_bad_config_names_the_entry_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: ok\n"
        "    params: {model: openai/x}\n"
        "  - model_name: bad\n"
        "    params: {}\n"
    )
    with pytest.raises(salvo.ConfigError, match=r"model_list\[1\] \(line 4\).*'bad'"):
        salvo.load_config(path)


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ("hello", "non-empty list"),
        ([], "non-empty list"),
        (["hi"], r"messages\[0\] must be a mapping"),
        ([{"content": "hi"}], r"messages\[0\] has role None"),
        ([{"role": "robot", "content": "hi"}], "role 'robot'"),
        ([{"role": "user"}], "has no 'content'"),
        ([{"role": "user", "content": 5}], "must be a string or a list"),
    ],
)
def test_malformed_messages(messages: object, match: str) -> None:
    with pytest.raises(salvo.ConfigError, match=match):
        check_messages(messages)


def test_valid_messages_pass() -> None:
    check_messages(
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]},
            {"role": "tool", "tool_call_id": "c", "content": "18C"},
        ]
    )


def test_exported_members() -> None:
    public = {n for n in dir(salvo) if not n.startswith("_")}
    modules = {"providers", "cli", "testing", "batches", "proxy", "asgi"}
    assert set(salvo.__all__) == public - modules | ({"providers"} & public)
    assert salvo.__all__ == sorted(salvo.__all__)
    # the public seam: Client.route -> Route, Client.send(HTTPRequest) -> Response(Stream)
    assert {"HTTPRequest", "Response", "ResponseStream", "Route"} <= set(salvo.__all__)
