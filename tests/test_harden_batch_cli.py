"""Item 3 of issue 11: ``salvo batch run`` never writes over its own input, and a bad output
or errors path is refused, with a clear message, before anything is touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from _batch_helpers import jsonl
from salvo.cli import main

MODEL = "openai/gpt-4o-mini"


pytestmark = pytest.mark.usefixtures("batch_dir")


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    # api_base on a closed port: if the check let the run start, it would fail differently
    code = main(["batch", "run", *argv, "--api-base", "http://127.0.0.1:9/v1", "--api-key", "k",
                 "--progress", "none", "--max-retries", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("salvo batch run: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("flag", ["-o", "--errors"])
@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    how: str,
) -> None:
    src = tmp_path / "requests.jsonl"
    data = jsonl(MODEL, 3)
    src.write_bytes(data)
    target = str(src)
    if how == "relative":
        monkeypatch.chdir(tmp_path)
        target = "./sub/../requests.jsonl"
        (tmp_path / "sub").mkdir()
    elif how == "symlink":
        (tmp_path / "link.jsonl").symlink_to(src)
        target = str(tmp_path / "link.jsonl")
    elif how == "hardlink":
        os.link(src, tmp_path / "hard.jsonl")
        target = str(tmp_path / "hard.jsonl")
    other = str(tmp_path / "out.jsonl")
    argv = ["-o", target] if flag == "-o" else ["-o", other, "--errors", target]
    err = _refused(capsys, str(src), *argv)
    assert "is the input file" in err
    assert src.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir() if "salvo-state" in p.name) == []
    assert not (tmp_path / "out.jsonl").exists()


def test_output_and_errors_may_not_be_one_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "requests.jsonl"
    src.write_bytes(jsonl(MODEL, 1))
    out = str(tmp_path / "o.jsonl")
    err = _refused(capsys, str(src), "-o", out, "--errors", out)
    assert "the same file" in err


@pytest.mark.parametrize("flag", ["-o", "--errors"])
def test_a_directory_or_a_missing_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    src = tmp_path / "requests.jsonl"
    src.write_bytes(jsonl(MODEL, 1))
    (tmp_path / "adir").mkdir()
    for target, words in (
        (tmp_path / "adir", "is a directory"),
        (tmp_path / "nowhere" / "o.jsonl", "does not exist"),
    ):
        argv = ["-o", str(target)] if flag == "-o" else ["-o", str(tmp_path / "o.jsonl"),
                                                          "--errors", str(target)]  # fmt: skip
        err = _refused(capsys, str(src), *argv)
        assert words in err and str(target) in err
        assert not (tmp_path / "o.jsonl").exists()
        assert not (tmp_path / "nowhere").exists()
    assert list((tmp_path / "adir").iterdir()) == []


def test_an_input_that_is_a_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(capsys, str(tmp_path), "-o", str(tmp_path / "o.jsonl"))
    assert "does not exist" in err or "is a directory" in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_where_nothing_can_be_written_is_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "requests.jsonl"
    src.write_bytes(jsonl(MODEL, 1))
    err = _refused(capsys, str(src), "-o", "/proc/salvo-out.jsonl")
    assert "cannot create the job's state file /proc/salvo-out.jsonl.salvo-state" in err
