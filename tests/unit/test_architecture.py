"""The layout's rules, checked: import contracts (import-linter), nothing imports app.py, module sizes.

docs/architecture.md explains each rule; pyproject.toml ([tool.importlinter]) holds the contracts.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "adapters", "projections", "pile_link", "simulation")
# The 400-line rule also covers the tests and the benchmarks: a reader opens them as often as the code.
SIZED = (*PACKAGES, "tests", "bench")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 400
# Declarative tables: one row per protocol field or frame, nothing to split by concern (docs/architecture.md).
DECLARATIVE: set[str] = set()  # none at present: the codec's field tables are split by frame range


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def modules(folders: tuple[str, ...] = PACKAGES) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout or "broken" not in result.stdout.split("Contracts:")[-1]


def test_an_upward_import_breaks_a_contract(tmp_path: Path) -> None:
    """The contracts can fail: a copy of the tree where the domain imports the API is refused."""
    for name in (*PACKAGES, "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    money = tmp_path / "domain" / "money.py"
    money.write_text(money.read_text() + "\nfrom adapters.api import app as _upward  # noqa: E402,F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "domain.money -> adapters.api.app" in result.stdout


def test_nothing_imports_the_composition_root() -> None:
    importers = []
    for path in [*modules(), *(ROOT / "bench").rglob("*.py")]:  # tests may drive the CLI through it
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            if "app" in names:
                importers.append(str(path.relative_to(ROOT)))
    assert importers == []


def test_no_module_is_over_400_lines_except_declarative_tables() -> None:
    sized = modules(SIZED)
    assert {p.relative_to(ROOT).parts[0] for p in sized} == set(SIZED)  # every folder is there to be measured
    long = {str(p.relative_to(ROOT)): n for p in sized
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= DECLARATIVE, long
