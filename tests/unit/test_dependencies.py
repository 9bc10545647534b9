"""What a role imports at run time is a run-time dependency (pyproject.toml ``dependencies``).

``pip install .`` installs ``dependencies`` and nothing of the ``test`` extra, so code that imports
a test-only package (httpx, once) works in the test suite and fails in production. Two checks:

* every import in the project's run-time code (``domain/``, ``adapters/``, ``projections/``,
  ``pile_link/``, ``app.py``), module level or inside a function, names the standard library, the
  project itself, or a distribution pyproject declares (directly, or through a declared extra such
  as ``psycopg[pool]``); only ``if TYPE_CHECKING:`` imports and ``try: import … except ImportError``
  fallbacks are exempt;
* a fresh interpreter in which every distribution outside the run-time closure of ``dependencies``
  (computed with importlib.metadata) cannot be imported imports every module of the project and
  runs ``chargeledger --help`` and every command's ``--help``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "adapters", "projections", "pile_link", "simulation")
OWN = {*PACKAGES, "app"}
COMMANDS = ("demo", "servers", "relay", "gateway", "projections", "api", "operators", "peers", "audit", "simulate",
            "simulate-faults", "serve", "cluster")


def declared() -> list[Requirement]:
    return [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]


def brought(requirement: Requirement) -> Iterator[tuple[Requirement, bool]]:
    """What installing ``requirement`` installs next, each with whether only its extras bring it."""
    for line in metadata.requires(requirement.name) or []:
        nested = Requirement(line)
        if nested.marker is None:
            yield nested, False
        elif nested.marker.evaluate({"extra": ""}):
            yield nested, False
        elif any(nested.marker.evaluate({"extra": extra}) for extra in requirement.extras):
            yield nested, True


def closure(requirements: Iterable[Requirement], *, through_extras_only: bool = False) -> set[str]:
    """Distribution names ``requirements`` install (all of them, or only those declared or brought by a
    declared extra, e.g. psycopg-pool for ``psycopg[pool]``)."""
    names: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        todo.extend(nested for nested, by_extra in brought(requirement) if by_extra or not through_extras_only)
    return names


def runtime_sources() -> Iterator[Path]:
    yield ROOT / "app.py"
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def imported_at_run_time(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """Top-level module names imported anywhere in ``tree`` (with line numbers), but for ``if
    TYPE_CHECKING:`` blocks and the bodies of ``try`` blocks that fall back on ImportError."""
    def visit(node: ast.AST, exempt: bool) -> Iterator[tuple[str, int]]:
        if isinstance(node, ast.Import) and not exempt:
            yield from ((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and not exempt:
            yield node.module.split(".")[0], node.lineno
        optional = ((isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))
                    or (isinstance(node, ast.Try) and any(catches_import_error(h) for h in node.handlers)))
        for field, value in ast.iter_fields(node):
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    yield from visit(child, exempt or (optional and field == "body"))

    yield from visit(tree, False)


def catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = {n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)} if handler.type else set()
    return bool(caught & {"ImportError", "ModuleNotFoundError"})


def test_every_import_of_run_time_code_is_a_declared_dependency() -> None:
    direct = closure(declared(), through_extras_only=True)
    providers = metadata.packages_distributions()
    undeclared = []
    for path in runtime_sources():
        for module, line in imported_at_run_time(ast.parse(path.read_text(), str(path))):
            if module in sys.stdlib_module_names or module in OWN:
                continue
            dists = {canonicalize_name(d) for d in providers.get(module, [])}
            if not dists & direct:
                undeclared.append(f"{path.relative_to(ROOT)}:{line} imports {module} "
                                  f"({', '.join(sorted(dists)) or 'no installed distribution'})")
    assert undeclared == [], "not in pyproject.toml dependencies:\n" + "\n".join(undeclared)


# A meta-path finder that refuses every top-level module only distributions outside the run-time
# closure provide, installed before anything of the project is imported.
BLOCKING = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys
    from importlib import metadata

    allowed, own = set(sys.argv[1].split(",")), set(sys.argv[2].split(","))
    canon = lambda name: name.lower().replace("_", "-").replace(".", "-")
    providers = {module: {canon(d) for d in dists} for module, dists in metadata.packages_distributions().items()}

    class OnlyRunTimeDependencies(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in sys.stdlib_module_names or top in own or top not in providers:
                return None
            if not providers[top] & allowed:
                raise ModuleNotFoundError(f"{top} is not a run-time dependency ({', '.join(providers[top])})",
                                          name=name)
            return None

    sys.meta_path.insert(0, OnlyRunTimeDependencies())
    for package in sorted(own - {"app"}):
        for module in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            importlib.import_module(module.name)
    import app
    for argv in [["--help"], *([command, "--help"] for command in sys.argv[3].split(","))]:
        try:
            app.main(argv)
        except SystemExit as stop:
            assert stop.code == 0, (argv, stop.code)
    print("all imported")
""")


def test_the_project_imports_and_every_command_starts_with_run_time_dependencies_only() -> None:
    allowed = closure(declared())
    result = subprocess.run([sys.executable, "-c", BLOCKING, ",".join(sorted(allowed)), ",".join(sorted(OWN)),
                             ",".join(COMMANDS)], capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert result.returncode == 0 and result.stdout.rstrip().endswith("all imported"), result.stderr[-3000:]
