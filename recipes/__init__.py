"""emofeat recipes: temporal and fusion predictors trained on stored features.

Registered through the ``emofeat`` entry-point group like any plugin (hook
``register_recipes``); the core never imports this package. Heavy modules (torch, the
models) are imported only when a recipe runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import emofeat
from emofeat.recipes import PredictRequest, PredictResult, Recipe, RecipeConfig, RecipeRun
from emofeat.settings import load_yaml
from emofeat_recipes.validate import (
    abaw_schema,
    audio_finetune_schema,
    face_finetune_schema,
    validate_abaw,
    validate_audio_finetune,
    validate_face_finetune,
)

CONFIGS = Path(__file__).parent / "configs"
VERSION = "1"


def _defaults(name: str) -> dict[str, Any]:
    return load_yaml(CONFIGS / name, "recipe defaults")


def _abaw(task: str, name: str, description: str) -> Recipe:
    """The ABAW recipe of ``task`` (``"VA"`` or ``"EXPR"``): defaults ``<name>.yaml``."""
    defaults = f"{name}.yaml"

    def run(ctx: RecipeRun) -> dict:
        from emofeat_recipes.abaw import run_abaw

        return run_abaw(ctx, task)

    def validate(config: RecipeConfig) -> None:
        validate_abaw(config, task)

    def predict(request: PredictRequest) -> PredictResult:
        from emofeat_recipes.predict import predict_abaw

        return predict_abaw(request, task)

    return Recipe(
        name=name,
        description=description,
        run=run,
        defaults=CONFIGS / defaults,
        configs={
            "sun2024": CONFIGS / f"sun2024_{task.lower()}.yaml",
            "quick": CONFIGS / "quick.yaml",
        },
        version=VERSION,
        open_sections=("extract.settings",),
        validate=validate,
        schema=abaw_schema(task, _defaults(defaults)),
        predict=predict,
    )


ABAW_VA = _abaw(
    "VA",
    "abaw_va",
    "ABAW valence-arousal: temporal + fusion models on stored features (mean CCC)",
)
ABAW_EXPR = _abaw(
    "EXPR",
    "abaw_expr",
    "ABAW expression (8 classes): temporal + fusion models on stored features (F1)",
)


def _run_face_finetune(ctx: RecipeRun) -> dict:
    from emofeat_recipes.face_finetune import run_face_finetune

    return run_face_finetune(ctx)


def _run_audio_finetune(ctx: RecipeRun) -> dict:
    from emofeat_recipes.audio_finetune import run_audio_finetune

    return run_audio_finetune(ctx)


FACE_FINETUNE = Recipe(
    name="face_finetune",
    description="stage 1: fine-tune a timm face backbone (256-d embedding + EXPR/VA heads) "
    "on Aff-Wild2 crops; writes a face_cnn/vit checkpoint",
    run=_run_face_finetune,
    defaults=CONFIGS / "face_finetune.yaml",
    configs={
        "paper_va": {"backbone": "efficientnet_b1", "task": "va"},
        "paper_expr": {"backbone": "vit_base_patch16_224", "task": "expr"},
        "offline": {"backbone": "efficientnet_lite0", "weights": "lite0-imagenet"},
    },
    version=VERSION,
    schema=face_finetune_schema(_defaults("face_finetune.yaml")),
    validate=validate_face_finetune,
)
AUDIO_FINETUNE = Recipe(
    name="audio_finetune",
    description="stage 1: fine-tune PDEM's top encoder blocks + the paper's V1/V2/V3 head "
    "on the videos' audio (VA/EXPR); writes a pdem torch checkpoint",
    run=_run_audio_finetune,
    defaults=CONFIGS / "audio_finetune.yaml",
    version=VERSION,
    schema=audio_finetune_schema(_defaults("audio_finetune.yaml")),
    validate=validate_audio_finetune,
)


@emofeat.hookimpl
def register_recipes(register):
    for recipe in (ABAW_VA, ABAW_EXPR, FACE_FINETUNE, AUDIO_FINETUNE):
        register(recipe)


@emofeat.hookimpl
def register_commands(cli):
    """``emofeat datasets synth|info|check`` (imported when the command line lists its
    commands or runs one that is not built in)."""
    from emofeat_recipes.cli import register

    register(cli)
