"""The layering rule, read from the source: the core never imports plugins or recipes."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_the_core_imports_no_plugin_and_no_recipe():
    modules = sorted((REPO / "emofeat").rglob("*.py"))
    assert len(modules) > 10
    for path in modules:
        bad = {
            m for m in _imports(path) if m.split(".")[0] in ("emofeat_plugins", "emofeat_recipes")
        }
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_corpus_code_uses_the_public_core_api():
    """The Aff-Wild2 reader, the join, the checks and the plan import ``emofeat`` itself only
    (plus the recipe and progress helpers the core offers to recipes)."""
    allowed = {"emofeat", "emofeat.recipes", "emofeat.progress"}
    paths = [*(REPO / "recipes" / "datasets").glob("*.py"), REPO / "recipes" / "plan.py"]
    for path in paths:
        core = {m for m in _imports(path) if m.split(".")[0] == "emofeat"}
        assert core <= allowed, f"{path.relative_to(REPO)} imports {sorted(core - allowed)}"
    assert not (REPO / "emofeat" / "datasets").exists()
