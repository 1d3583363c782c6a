"""The repository's layout rules, checked on the source with `ast` (docs/architecture.md):
tests do not lean on the load tester or the benchmarks, nothing patches sys.path, and the
distribution ships only habitto_* packages."""

import ast
import tomllib
from pathlib import Path

from setuptools import find_packages

REPO_DIR = Path(__file__).resolve().parents[1]
TESTS_DIR = REPO_DIR / "tests"
# The load tester and the benchmark harness; only their own tests (tests/loadtests/,
# tests/bench/) may import them.
TOOLS = {"loadtests", "bench"}


def imported_modules(path):
    """Every module name an import statement of `path` names, at any depth (function-level too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_imported_modules_sees_function_level_imports(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("import os\n\ndef f():\n    from loadtests.gate import gate\n    import bench.run\n")
    assert imported_modules(source) == {"os", "loadtests.gate", "bench.run"}


def test_tests_import_the_load_tester_and_the_benchmarks_only_in_their_own_folders():
    offenders = []
    for path in sorted(TESTS_DIR.rglob("*.py")):
        folder = path.relative_to(TESTS_DIR).parts[0]
        for name in imported_modules(path):
            tool = name.split(".")[0]
            if tool in TOOLS and folder != tool:
                offenders.append(f"{path.relative_to(REPO_DIR)} imports {name}")
    assert offenders == []


def uses_sys_path(path):
    return any(isinstance(node, ast.Attribute) and node.attr == "path"
               and isinstance(node.value, ast.Name) and node.value.id == "sys"
               for node in ast.walk(ast.parse(path.read_text(), str(path))))


def python_files():
    for path in REPO_DIR.rglob("*.py"):
        parts = path.relative_to(REPO_DIR).parts
        if not any(part.startswith((".", "build")) or part.endswith(".egg-info") for part in parts):
            yield path


def test_nothing_patches_sys_path():
    """The project is installed (pip install -e .); tools run from the repository root."""
    offenders = [str(p.relative_to(REPO_DIR)) for p in python_files()
                 if uses_sys_path(p) and not (p.name == "conftest.py" and p.is_relative_to(TESTS_DIR))]
    assert offenders == []


def test_the_distribution_ships_only_habitto_packages():
    config = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = find_packages(where=str(REPO_DIR / config["where"][0]), include=config["include"])
    top_level = {name.split(".")[0] for name in shipped}
    assert top_level == {"habitto_accounts", "habitto_chat", "habitto_client", "habitto_server", "habitto_web"}
    assert "habitto_chat.migrations" in shipped and "habitto_accounts.migrations" in shipped
