"""The direction of dependencies inside habitto_chat: the realtime layer (sockets, hub,
batcher) depends on the rest of the app, never the other way round. Events reach the
hub through habitto_chat.events, which the hub subscribes to at start-up."""

import ast
from pathlib import Path

import habitto_chat

APP_DIR = Path(habitto_chat.__file__).resolve().parent
REALTIME = "habitto_chat.realtime"


def module_name(path):
    parts = path.relative_to(APP_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source, module, is_package=False):
    """Every module an import statement anywhere in `source` names, function bodies
    included, relative imports resolved against `module`; `from x import y` yields
    both x and x.y (y may be a submodule)."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def is_realtime(name):
    return name == REALTIME or name.startswith(REALTIME + ".")


def test_walker_sees_every_form_of_import():
    """The check below can fail: each of these imports is caught."""
    forms = {
        "from .realtime.hub import hub": "habitto_chat.events",
        "from .realtime import hub": "habitto_chat.events",
        "from . import realtime": "habitto_chat.events",
        "from ..realtime import consumers": "habitto_chat.api.views",
        "import habitto_chat.realtime.hub": "habitto_chat.events",
        "from habitto_chat.realtime.hub import hub": "habitto_chat.events",
        "def late():\n    from .realtime.hub import hub\n": "habitto_chat.events",
        "class A:\n    def m(self):\n        import habitto_chat.realtime as r\n": "habitto_chat.tokens",
    }
    for source, module in forms.items():
        assert any(is_realtime(name) for name in imported_modules(source, module)), source
    assert not any(is_realtime(n) for n in imported_modules("from . import wire\nimport realtime_x", "habitto_chat.events"))
    # In a package's __init__, "." is the package itself.
    assert "habitto_chat.realtime.hub" in imported_modules("from .hub import hub", REALTIME, is_package=True)


def test_nothing_outside_realtime_imports_realtime():
    modules = {module_name(path): path for path in APP_DIR.rglob("*.py")}
    assert "habitto_chat.actions" in modules and "habitto_chat.realtime.hub" in modules
    offenders = {}
    for name, path in modules.items():
        if is_realtime(name):
            continue
        wrong = {
            imported
            for imported in imported_modules(path.read_text(), name, path.name == "__init__.py")
            if is_realtime(imported)
        }
        if wrong:
            offenders[name] = sorted(wrong)
    assert offenders == {}
