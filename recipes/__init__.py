"""emofeat recipes: temporal and fusion predictors trained on stored features.

Registered through the ``emofeat`` entry-point group like any plugin (hook
``register_recipes``); the core never imports this package. Heavy modules (torch, the
models) are imported only when a recipe runs.
"""

from __future__ import annotations

from pathlib import Path

import emofeat
from emofeat.recipes import Recipe, RecipeRun

CONFIGS = Path(__file__).parent / "configs"
VERSION = "1"


def _run_va(ctx: RecipeRun) -> dict:
    from emofeat_recipes.abaw import run_abaw

    return run_abaw(ctx, "VA")


def _run_expr(ctx: RecipeRun) -> dict:
    from emofeat_recipes.abaw import run_abaw

    return run_abaw(ctx, "EXPR")


ABAW_VA = Recipe(
    name="abaw_va",
    description="ABAW valence-arousal: temporal + fusion models on stored features (mean CCC)",
    run=_run_va,
    defaults=CONFIGS / "abaw_va.yaml",
    configs={"sun2024": CONFIGS / "sun2024.yaml", "quick": CONFIGS / "quick.yaml"},
    version=VERSION,
)
ABAW_EXPR = Recipe(
    name="abaw_expr",
    description="ABAW expression (8 classes): temporal + fusion models on stored features (F1)",
    run=_run_expr,
    defaults=CONFIGS / "abaw_expr.yaml",
    configs={"sun2024": CONFIGS / "sun2024.yaml", "quick": CONFIGS / "quick.yaml"},
    version=VERSION,
)


@emofeat.hookimpl
def register_recipes(register):
    register(ABAW_VA)
    register(ABAW_EXPR)
