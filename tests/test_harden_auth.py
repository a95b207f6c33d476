"""Item 1 of issue 11: a blank master key never turns auth off."""

from __future__ import annotations

from pathlib import Path

import pytest

from salvo import ConfigError, load_config
from salvo.cli import main
from salvo.proxy import ProxySettings, create_app, load_settings


@pytest.mark.parametrize("blank", ["", " ", "\t \n"])
def test_a_blank_master_key_in_the_environment_stops_start_up(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    blank: str,
) -> None:
    monkeypatch.setenv("SALVO_MASTER_KEY", blank)
    path = tmp_path / "c.yaml"
    path.write_text("model_list: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="SALVO_MASTER_KEY is set but blank"):
        load_settings(load_config(path))
    for host in ("0.0.0.0", "127.0.0.1"):
        assert main(["serve", "--config", str(path), "--host", host, "--port", "0"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("salvo serve: ") and "SALVO_MASTER_KEY is set but blank" in err
        assert "Traceback" not in err


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_master_key_in_the_config_or_in_settings_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    monkeypatch.delenv("SALVO_MASTER_KEY", raising=False)
    monkeypatch.setenv("TEST_BLANK_MASTER", blank)
    cfg = {"model_list": [], "general_settings": {"master_key": "os.environ/TEST_BLANK_MASTER"}}
    with pytest.raises(ConfigError, match="master_key"):
        create_app(cfg)
    with pytest.raises(ConfigError, match="master_key"):
        ProxySettings(master_key=blank)
    with pytest.raises(ConfigError, match="master_key"):
        create_app({"model_list": []}, settings=ProxySettings(master_key=blank))


def test_a_master_key_with_surrounding_spaces_is_kept_stripped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SALVO_MASTER_KEY", "  sk-real  ")
    assert load_settings(load_config({"model_list": []})).master_key == "sk-real"
