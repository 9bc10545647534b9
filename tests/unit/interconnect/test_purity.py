"""The T/CEC protocol layer (adapters/interconnect/tcec/) is pure: no web framework, HTTP client or
database driver, so the pipeline and the codec run (and are tested) without any of them."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TCEC = ROOT / "adapters" / "interconnect" / "tcec"
ALLOWED_THIRD_PARTY = {"cryptography", "pydantic", "pydantic_core"}
ALLOWED_OWN = ("adapters.interconnect.tcec", "domain.text")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_protocol_layer_imports_only_the_standard_library_cryptography_and_pydantic() -> None:
    modules = sorted(TCEC.rglob("*.py"))
    assert len(modules) >= 10
    outside = {}
    for path in modules:
        for name in imports(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__" or top in ALLOWED_THIRD_PARTY:
                continue
            if name.startswith(ALLOWED_OWN):
                continue
            outside.setdefault(str(path.relative_to(ROOT)), []).append(name)
    assert outside == {}


def test_the_check_finds_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import fastapi\nfrom psycopg import sql\nfrom adapters.interconnect.tcec import wire\n")
    assert imports(module) == {"fastapi", "psycopg", "adapters.interconnect.tcec"}
