"""The layering rules, read from the source.

* The core never imports plugins or recipes.
* Plugins and recipes use the core's public surface only: ``emofeat`` itself and the public
  modules listed in its docstring (:data:`PUBLIC_CORE`); every other core module is private.
* Recipes use a plugin through its package-level API only (``emofeat_plugins.faces``, not
  ``emofeat_plugins.faces.backbones``); a plugin imports its own submodules freely but
  another plugin's at package level only, and never imports the recipes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

import emofeat


def _public_core() -> set[str]:
    """``emofeat`` and the modules its docstring lists under "Public modules:"."""
    _, found, rest = (emofeat.__doc__ or "").partition("Public modules:")
    bullets = rest.split("\n\n")[1] if found and rest.count("\n\n") else ""
    return {"emofeat", *re.findall(r"^\* ``(emofeat\.\w+)``", bullets, re.MULTILINE)}


PUBLIC_CORE = _public_core()

# top-level package -> the folder that holds it (pyproject's package-dir)
_ROOTS = {
    "emofeat": REPO / "emofeat",
    "emofeat_plugins": REPO / "plugins",
    "emofeat_recipes": REPO / "recipes",
}


def _package_of(path: Path) -> str:
    """Dotted name of the package that holds the module at ``path``."""
    for top, root in _ROOTS.items():
        if path.is_relative_to(root):
            return ".".join([top, *path.relative_to(root).parent.parts])
    raise AssertionError(f"{path} lies in no package")


def _is_module(name: str) -> bool:
    """True when the dotted ``name`` is a module or package of this repository."""
    top, *rest = name.split(".")
    if top not in _ROOTS:
        return False
    base = _ROOTS[top].joinpath(*rest)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    return _imports_source(path.read_text(), path)


def _imports_source(source: str, path: Path) -> set[str]:
    """Every module that ``source``, the text of the module at ``path``, imports (at any
    depth, relative imports resolved).

    ``from package import name`` counts as an import of ``package.name`` when that is a
    module (``from emofeat import progress`` imports ``emofeat.progress``).
    """
    tree = ast.parse(source, filename=str(path))
    package = _package_of(path)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                out.add(sub if _is_module(sub) else module)
    return out


def _outer_modules() -> list[Path]:
    paths = sorted([*(REPO / "plugins").rglob("*.py"), *(REPO / "recipes").rglob("*.py")])
    assert len(paths) > 20
    return paths


def test_the_core_imports_no_plugin_and_no_recipe():
    modules = sorted((REPO / "emofeat").rglob("*.py"))
    assert len(modules) > 10
    for path in modules:
        bad = {
            m for m in _imports(path) if m.split(".")[0] in ("emofeat_plugins", "emofeat_recipes")
        }
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_public_core_modules_are_documented_modules():
    assert {"emofeat.models", "emofeat.recipes"} <= PUBLIC_CORE
    for name in PUBLIC_CORE:
        assert _is_module(name), f"emofeat's docstring lists {name} as public: no such module"


def test_plugins_and_recipes_import_only_the_public_core():
    for path in _outer_modules():
        core = {m for m in _imports(path) if m.split(".")[0] == "emofeat"}
        private = core - PUBLIC_CORE
        assert not private, (
            f"{path.relative_to(REPO)} imports private core modules {sorted(private)}: "
            f"use the names exported by {sorted(PUBLIC_CORE)}"
        )


def test_plugins_are_used_through_their_package_api():
    for path in _outer_modules():
        package = _package_of(path)
        own = ".".join(package.split(".")[:2])  # a plugin's own package, e.g. emofeat_plugins.faces
        bad = set()
        for m in _imports(path):
            parts = m.split(".")
            if parts[0] == "emofeat_recipes" and package.startswith("emofeat_plugins"):
                bad.add(m)  # plugins never depend on the recipes
            elif parts[0] == "emofeat_plugins" and len(parts) > 2:
                if not (package.startswith("emofeat_plugins.") and m.startswith(own + ".")):
                    bad.add(m)
        assert not bad, (
            f"{path.relative_to(REPO)} imports {sorted(bad)}: import plugins at package level "
            "(emofeat_plugins.faces, emofeat_plugins.audio) and add what is missing to that "
            "package's public API"
        )


def test_the_rules_see_private_imports():
    """The import reader resolves the forms the rules must catch."""
    recipe = REPO / "recipes" / "face_finetune.py"
    source = (
        "from emofeat import progress\n"
        "import emofeat.media\n"
        "from emofeat_plugins.faces import backbones\n"
        "def f():\n"
        "    from emofeat_plugins.audio.pdem_torch import load_network\n"
    )
    seen = _imports_source(source, recipe)
    assert {
        "emofeat.progress",
        "emofeat.media",
        "emofeat_plugins.faces.backbones",
        "emofeat_plugins.audio.pdem_torch",
    } <= seen
    plugin = REPO / "plugins" / "faces" / "extractors.py"
    assert "emofeat_plugins.faces.crops" in _imports_source("from .crops import crop_faces", plugin)


def test_the_corpus_code_uses_the_public_core_api():
    """The Aff-Wild2 reader, the join, the checks and the plan import ``emofeat`` itself only
    (plus the recipe helpers the core offers to recipes)."""
    allowed = {"emofeat", "emofeat.recipes"}
    paths = [*(REPO / "recipes" / "datasets").glob("*.py"), REPO / "recipes" / "plan.py"]
    for path in paths:
        core = {m for m in _imports(path) if m.split(".")[0] == "emofeat"}
        assert core <= allowed, f"{path.relative_to(REPO)} imports {sorted(core - allowed)}"
    assert not (REPO / "emofeat" / "datasets").exists()
