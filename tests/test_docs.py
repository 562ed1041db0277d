"""Every setting is documented, and the README's commands exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from perfintel.config import iter_fields

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", doc, re.M))
    fields = {name for name, _ in iter_fields()}
    assert fields - documented == set(), "settings missing from docs/configuration.md"
    assert documented - fields == set(), (
        "docs/configuration.md documents settings that do not exist"
    )


def test_every_setting_has_a_description() -> None:
    assert [name for name, desc in iter_fields() if not desc] == []


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/serve" in readme and "scripts/test" in readme
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_nothing_names_a_development_machines_absolute_paths() -> None:
    # Commands in docs must run from any checkout: paths relative to the repository
    # (the shared data is ../shared), never this or that machine's home or work tree.
    pattern = re.compile(r"(?<![\w.~])/(?:work|home|Users|root)/\w")
    files = [ROOT / "README.md", ROOT / "BENCHMARKS.md"]
    for folder, glob in (("docs", "*.md"), ("benchmarks", "*.py"), ("perfintel", "**/*.py")):
        files += sorted((ROOT / folder).glob(glob))
    files += sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file())
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


_SCRIPTS = sorted(
    p.name
    for p in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")
    if '__name__ == "__main__"' in p.read_text()
)


@pytest.mark.parametrize("script", _SCRIPTS)
def test_every_benchmark_answers_help_without_running(script: str) -> None:
    # `--help` is how a reader finds a benchmark's options; some ran the whole benchmark instead
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout[:300]


def test_test_modules_have_unique_names() -> None:
    # the test folders are no packages: two test files of one name in two folders stop the
    # whole run at collection ("import file mismatch"), as tests/api and tests/analysis'
    # test_anomaly_warmup.py did in CI
    names: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        assert path.name not in names, f"{path} and {names[path.name]} share a name"
        names[path.name] = path
