"""`make test` runs the checks first, and they fail on what they are there to catch (with the project's own config)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(shutil.which("ruff") or REPO / ".venv" / "bin" / "ruff").parent


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_make_test_runs_lint_format_and_types_before_the_suite():
    planned = run("make", "-n", "test").stdout.splitlines()
    steps = [
        next(i for i, line in enumerate(planned) if marker in line) for marker in ("ruff check", "ruff format --check", "mypy", "pytest")
    ]
    assert steps == sorted(steps)


def test_a_lint_error_fails_ruff_with_the_projects_rules(tmp_path):
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import os\n\n\ndef f(items):\n    return [x for x in items if x == None]\n")
    checked = run(str(BIN / "ruff"), "check", "bad.py", cwd=tmp_path)
    assert checked.returncode == 1
    assert "F401" in checked.stdout and "E711" in checked.stdout


def test_an_unformatted_file_fails_the_format_check(tmp_path):
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    (tmp_path / "ugly.py").write_text("x = {  'a':1 }\n")
    assert run(str(BIN / "ruff"), "format", "--check", "ugly.py", cwd=tmp_path).returncode == 1


def test_a_type_error_in_a_strict_module_fails_mypy(tmp_path):
    config = (REPO / "pyproject.toml").read_text()
    files = next(line for line in config.splitlines() if line.startswith("files = "))
    (tmp_path / "pyproject.toml").write_text(config.replace(files, 'files = ["typed.py"]'))
    (tmp_path / "typed.py").write_text("def double(x):\n    return x * 2\n\n\ncount: int = 'three'\n")
    checked = run(str(BIN / "mypy"), cwd=tmp_path)
    assert checked.returncode == 1
    assert "typed.py:1: error: Function is missing a type annotation" in checked.stdout
    assert "typed.py:5: error: Incompatible types in assignment" in checked.stdout


SUPPRESSION = re.compile(r"#\s*(?:noqa|type:\s*ignore)\b(?P<rest>.*)$")
JUSTIFIED = re.compile(r"(?::\s*[A-Z]+\d+(?:,\s*[A-Z]+\d+)*|\[[\w-]+(?:,\s*[\w-]+)*\])\s*(?:-|#)\s*\S")
PACKAGES = ("api", "bench", "deploy", "footfall", "ingest", "outbound", "processors", "projections", "schemas", "tests")


def unjustified(line: str) -> bool:
    """A `noqa` / `type: ignore` that does not name its rule and say why on the same line."""
    found = SUPPRESSION.search(line)
    return found is not None and JUSTIFIED.match(found["rest"]) is None


def test_a_suppression_needs_its_rule_and_a_reason():
    def line(text: str) -> str:  # the markers spelt out here would be found by the scan below
        return text.replace("NOQA", "no" + "qa").replace("IGNORE", "type: " + "ignore")

    assert unjustified(line("x = 1  # NOQA"))
    assert unjustified(line("x = 1  # NOQA: E731"))
    assert unjustified(line("x = f()  # IGNORE"))
    assert unjustified(line("x = f()  # IGNORE[override]"))
    assert not unjustified(line("except Exception:  # NOQA: BLE001 - reported per case"))
    assert not unjustified(line("def f(self, t: T) -> None:  # IGNORE[override]  # asyncio calls it with a Transport"))
    assert not unjustified(line("x = 1  # a comment that says NOQA in passing"))


def test_every_suppression_in_the_code_names_its_rule_and_says_why():
    bare = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if unjustified(line)
    ]
    assert bare == []
