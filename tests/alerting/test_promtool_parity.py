"""``perfintel rules test`` / ``rules check`` give the real promtool's verdicts on the same files.

``tests/alerting/promtool/`` holds rule files and unit-test files (passing
and failing ones: wrong annotation, ``for`` not yet elapsed, wrong sample,
missing rule files, expanding notation, Go-template formatting). Each is run
through Debian's ``promtool`` and through perfintel; the exit codes must agree.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfintel.cli_rules import rules_app

HERE = Path(__file__).parent / "promtool"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
TESTS = sorted(p.name for p in HERE.glob("test_*.yml"))
CHECKS = sorted(p.name for p in HERE.glob("bad_*.yml")) + sorted(
    p.name for p in HERE.glob("rules_*.yml")
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=HERE, capture_output=True, text=True, timeout=120)


def _perfintel(*args: str) -> subprocess.CompletedProcess[str]:
    # in-process (the CLI's own code path), from the same working directory as promtool
    with contextlib.chdir(HERE):
        r = CliRunner().invoke(rules_app, list(args))
    return subprocess.CompletedProcess(args, r.exit_code, r.output, "")


def test_promtool_is_installed() -> None:
    # scripts/test installs Debian's prometheus package; without it this suite means nothing
    assert Path(PROMTOOL).exists(), "promtool missing: scripts/test installs the prometheus package"


@pytest.mark.external
@pytest.mark.parametrize("name", TESTS)
def test_unit_test_verdict_matches_promtool(name: str) -> None:
    theirs = _run(PROMTOOL, "test", "rules", name)
    ours = _perfintel("test", name)
    assert ours.returncode == theirs.returncode, (
        f"promtool: {theirs.returncode}\n{theirs.stdout}{theirs.stderr}\n"
        f"perfintel: {ours.returncode}\n{ours.stdout}{ours.stderr}"
    )


@pytest.mark.external
@pytest.mark.parametrize("name", CHECKS)
def test_check_verdict_matches_promtool(name: str) -> None:
    theirs = _run(PROMTOOL, "check", "rules", name)
    ours = _perfintel("check", name)
    assert ours.returncode == theirs.returncode, f"{theirs.stdout}{theirs.stderr}\n{ours.stdout}"
    if name.startswith("bad_"):
        # ours says which file, which line and why
        assert re.search(rf"{re.escape(name)}:\d+: \S", ours.stdout), ours.stdout


def test_both_kinds_of_verdict_are_exercised() -> None:
    # the parity above is only worth something if some files pass and some fail
    assert any("fail" in t for t in TESTS) and any("pass" in t for t in TESTS)
    assert any(c.startswith("bad_") for c in CHECKS) and any(c.startswith("rules_") for c in CHECKS)
