"""Mutation testing (``make mutate``): how many changes to the code would no test notice?

For each module below, mutmut (3.x) makes every mutant of it; mutants that only change a
string literal (messages, mostly) are left out; a seeded sample of the rest (70 a module by
default) is run against that module's tests; the score is the share killed. Each module runs
in a scratch copy of the repository, so nothing here touches the working tree.

    python tools/mutate.py                      # every module, 70 mutants each
    python tools/mutate.py --sample 0 --module src/salvo/_limits.py   # all of one module

Survivors are printed with their diffs: each is a test to write, or a mutant that changes
nothing observable (an equivalent mutant), which only a reader can tell. The equivalent ones a
reader has found are listed in ``tools/mutants_equivalent.toml`` (name, the mutated line, why);
they are still run, but left out of the score's denominator. An entry whose line no longer
matches the mutant of that name (the code moved and mutmut renumbered) is ignored with a
warning, and one that a test kills is counted killed: the list can never hide a survivor.
"""

from __future__ import annotations

import argparse
import io
import random
import re
import shutil
import subprocess
import sys
import tempfile
import tokenize
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: module -> the tests that exercise it (mutmut runs, for each mutant, those that reach it).
MODULES: dict[str, list[str]] = {
    # the seam: one attempt on the wire, and the response / stream it returns
    "src/salvo/_call.py": [
        "tests/test_seam.py",
        "tests/test_seam_limits.py",
        "tests/test_faults.py",
        "tests/test_core_e2e.py",
        "tests/test_call_edges.py",
    ],
    "src/salvo/_response.py": [
        "tests/test_seam.py",
        "tests/test_seam_limits.py",
        "tests/test_faults.py",
        "tests/test_proxy_passthrough.py",
        "tests/test_call_edges.py",
        "tests/test_response_stream_edges.py",
    ],
    "src/salvo/_limits.py": [
        "tests/test_limits.py",
        "tests/test_limits_accounting.py",
        "tests/test_limits_edges.py",
    ],
    "src/salvo/_retry.py": [
        "tests/test_retry.py",
        "tests/test_faults.py",
        "tests/test_redaction.py",
        "tests/test_errors_in_detail.py",
        "tests/test_limits_accounting.py",
        "tests/test_limits.py",  # a response's usage reaching the token limiter
        "tests/test_retry_policy_edges.py",
    ],
    "src/salvo/_stream.py": [
        "tests/test_core_e2e.py",
        "tests/test_faults.py",
        "tests/test_hot_path.py",
        "tests/test_errors_in_detail.py",
        "tests/test_limits_accounting.py",
        "tests/test_stream_collect_edges.py",
    ],
    # fan-out: batch and gather, the race engine (full, hedged, first-k), shielded cleanup
    "src/salvo/_fanout.py": [
        "tests/test_fanout_contract.py",
        "tests/test_core_e2e.py",
        "tests/test_budget.py",
        "tests/test_fanout_edges.py",
    ],
    "src/salvo/_race.py": [
        "tests/test_fanout_contract.py",
        "tests/test_core_e2e.py",
        "tests/test_hedge.py",
        "tests/test_providers_e2e.py",
        "tests/test_budget.py",  # max_cost_usd reaching every contender
        "tests/test_race_edges.py",
    ],
    "src/salvo/_closing.py": [
        "tests/test_race_cancel_storm.py",
        "tests/test_hedge.py",
        "tests/test_finish_tasks_contract.py",
    ],
    "src/salvo/batches/_engine.py": [
        "tests/test_batch_local.py",
        "tests/test_batch_engine_totals.py",
        "tests/test_batch_budget.py",
        "tests/test_harden_deep_json.py",
        "tests/test_batch_engine_edges.py",
    ],
}

EQUIVALENT = ROOT / "tools" / "mutants_equivalent.toml"
_COPY = ("src", "tests", "pyproject.toml", "README.md")  # a test checks the README's table
_STATUS = re.compile(r"^\s*(\S+): (.+)$")


def _mutmut(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    mutmut = Path(sys.executable).with_name("mutmut")
    return subprocess.run(
        [str(mutmut), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


_TOP_DECORATOR = re.compile(
    r"^@(?!(?:staticmethod|classmethod|property)\b)([\w.]+\(.*\))\n((?:async )?def (\w+))", re.M
)


def undecorate(path: Path) -> int:
    """mutmut 3 leaves decorated functions unmutated (``@fanout("race")`` would hide ``arace``
    and ``abatch_completion`` whole). In the scratch copy only, each top-level ``@deco(...)``
    becomes ``name = deco(...)(name)`` at the end of the module: the module ends up with the
    same decorated functions, and mutmut mutates their bodies. Returns how many it moved."""
    text = path.read_text(encoding="utf-8")
    tail: list[str] = []

    def move(m: re.Match[str]) -> str:
        tail.append(f"{m.group(3)} = {m.group(1)}({m.group(3)})")
        return m.group(2)

    text = _TOP_DECORATOR.sub(move, text)
    if tail:
        path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(tail) + "\n", encoding="utf-8")
    return len(tail)


def _scratch(module: str, tests: list[str]) -> Path:
    work = Path(tempfile.mkdtemp(prefix="salvo-mutate-"))
    for name in _COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    undecorate(work / module)
    selection = ", ".join(f'"{t}"' for t in tests)
    with open(work / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write(
            "\n[tool.mutmut]\n"
            'source_paths = ["src/"]\n'
            'also_copy = ["README.md"]\n'
            f'only_mutate = ["{module}"]\n'
            f"pytest_add_cli_args_test_selection = [{selection}]\n"
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
        )
    return work


def _results(work: Path) -> dict[str, str]:
    out = _mutmut(work, "results", "--all", "true").stdout
    found = {}
    for line in out.splitlines():
        m = _STATUS.match(line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def _diff(work: Path, name: str) -> str:
    return _mutmut(work, "show", name).stdout


def _code_only(lines: list[str]) -> str:
    """The lines with every string literal blanked (so a string-only change compares equal)."""
    text = "\n".join(line.strip() for line in lines)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return text
    return " ".join("S" if t.type == tokenize.STRING else t.string for t in tokens)


def string_only(diff: str) -> bool:
    minus = [x[1:] for x in diff.splitlines() if x.startswith("-") and not x.startswith("---")]
    plus = [x[1:] for x in diff.splitlines() if x.startswith("+") and not x.startswith("+++")]
    return bool(minus) and _code_only(minus) == _code_only(plus)


def _added_lines(diff: str) -> list[str]:
    return [
        x[1:].strip() for x in diff.splitlines() if x.startswith("+") and not x.startswith("+++")
    ]


def load_equivalent(path: Path = EQUIVALENT) -> dict[str, dict[str, str]]:
    """name -> {"line": the mutated line, "why": the reason it changes nothing observable}."""
    if not path.exists():
        return {}
    with open(path, "rb") as f:
        table = tomllib.load(f)
    for name, entry in table.items():
        if not (isinstance(entry.get("line"), str) and isinstance(entry.get("why"), str)):
            raise SystemExit(f"{path}: [{name!r}] needs a line and a why")
    return table


class Outcome:
    """One module's run: how many killed, which survived, which are listed as equivalent."""

    def __init__(self) -> None:
        self.killed = 0
        self.ran = 0
        self.equivalent: list[tuple[str, str]] = []  # (name, why), survived and listed
        self.survivors: list[str] = []  # status + diff, for --show-survivors
        self.warnings: list[str] = []

    @property
    def score(self) -> float:
        scored = self.ran - len(self.equivalent)
        return 100.0 * self.killed / scored if scored else 0.0


def run_module(
    module: str,
    tests: list[str],
    sample: int,
    seed: int,
    equivalent: dict[str, dict[str, str]] | None = None,
) -> Outcome:
    work = _scratch(module, tests)
    try:
        # Make the mutants (and mutmut's stats) without running any: a name that matches none.
        made = _mutmut(work, "run", "__none__")
        if "failed to collect stats" in made.stdout + made.stderr:
            # the tests fail without any mutant: every mutant would be "not checked"
            raise SystemExit(f"{module}: the tests fail unmutated:\n{made.stdout[-4000:]}")
        names = sorted(_results(work))
        random.Random(seed).shuffle(names)
        chosen: list[str] = []
        skipped = 0
        for name in names:  # string-only ones are left out as they come up (a diff each)
            if 0 < sample <= len(chosen):
                break
            if string_only(_diff(work, name)):
                skipped += 1
            else:
                chosen.append(name)
        print(f"{module}: {len(names)} mutants; running {len(chosen)} "
              f"({skipped} string-only ones left out on the way)", flush=True)  # fmt: skip
        for i in range(0, len(chosen), 50):
            _mutmut(work, "run", *chosen[i : i + 50])
        status = _results(work)
        out = Outcome()
        out.ran = len(chosen)
        for name in chosen:
            if status.get(name) in ("killed", "timeout", "segfault"):
                out.killed += 1
                if name in (equivalent or {}):
                    out.warnings.append(f"{name} is listed as equivalent but a test kills it")
                continue
            diff = _diff(work, name)
            entry = (equivalent or {}).get(name)
            if entry is not None:
                if entry["line"].strip() in _added_lines(diff):
                    out.equivalent.append((name, entry["why"]))
                    continue
                out.warnings.append(
                    f"{name}: the listed line no longer matches; counted as a survivor"
                )
            out.survivors.append(f"{status.get(name)}\n{diff}")
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=int, default=70, help="mutants per module (0: all)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--module", action="append", help="only these modules (repeatable)")
    ap.add_argument("--show-survivors", action="store_true")
    ap.add_argument(
        "--equivalent",
        type=Path,
        default=EQUIVALENT,
        help="TOML list of equivalent mutants (name, line, why); default: %(default)s",
    )
    args = ap.parse_args(argv)
    modules = args.module or list(MODULES)
    equivalent = load_equivalent(args.equivalent)
    rows = []
    for module in modules:
        out = run_module(module, MODULES[module], args.sample, args.seed, equivalent)
        rows.append((module, out))
        for w in out.warnings:
            print(f"warning: {w}")
        for name, why in out.equivalent:
            print(f"equivalent: {name}: {why}")
        if args.show_survivors:
            for s in out.survivors:
                print(s)
    print("\nmodule                              killed / run   equivalent   score")
    for module, out in rows:
        print(
            f"{module:<36}{out.killed:>6} / {out.ran:<5}  {len(out.equivalent):>10}   "
            f"{out.score:5.1f} %"
        )
    print("score: killed / (run - equivalent)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
