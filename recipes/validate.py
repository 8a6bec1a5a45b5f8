"""The recipes' config schemas: what each key may hold, declared once, checked when resolved.

The core (:func:`emofeat.recipes.resolve_config`) checks every key against its default's
type and the :class:`~emofeat.settings.Key` declared here (allowed values, bounds, the type
of a key whose default is null), then runs the cross-key checks below: all before any data is
read, so a typo in ``window.unit`` or ``loss.name`` stops ``recipe run`` (and ``recipe show``)
at once, naming the key and the values it takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emofeat import ConfigError, check_stats
from emofeat.settings import NUMBER, Key

NORMALISERS = ("per_video_minmax", "per_video_zscore", "global_minmax", "global_zscore", "none")
MODEL_TYPES = ("transformer", "gru")
POOLS = ("mean+std", "mean", "concat")
KERNELS = ("rbf", "linear")
DECISION_METHODS = ("dirichlet", "rf")
SMOOTHING = ("hamming", "mean")
OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("cosine", "cosine_restarts", "constant")
WEIGHTS = ("inverse_frequency", "max_count", "none")
LOSSES = {"VA": ("ccc", "rmse", "mse"), "EXPR": ("focal", "ce")}
WINDOW_UNITS = ("frames", "seconds")
AMP_DTYPES = ("bfloat16", "float16")
FACE_TASKS = ("va", "expr", "both")
AUDIO_TASKS = ("va", "expr")
AUDIO_VARIANTS = ("v1", "v2", "v3")  # the keys of emofeat_recipes.audio_finetune.VARIANTS
#: audio_finetune's output step length in seconds per task: 5 Hz for VA, 1 Hz for EXPR
STEP_SECONDS = {"VA": 0.2, "EXPR": 1.0}

POSITIVE = Key(gt=0)
AT_LEAST_0 = Key(ge=0)
FRACTION = Key(ge=0, le=1)
PATH = Key(type=str)  # a key whose default is null: a path when set
PATHS = Key(type=list, item=str)  # one path or a list of them
DEVICE = Key(type=str)


def _train(defaults: Mapping[str, Any]) -> dict[str, Key]:
    """The declared keys of the ``train`` section, those the recipe's defaults hold (the
    recipes share ``TrainConfig``; each sets the keys it changes)."""
    keys = {
        "optimizer": Key(choices=OPTIMIZERS),
        "schedule": Key(choices=SCHEDULES),
        "lr": POSITIVE,
        "min_lr": Key(type=float, ge=0),
        "batch_size": POSITIVE,
        "epochs": AT_LEAST_0,
        "weight_decay": AT_LEAST_0,
        "warmup_steps": AT_LEAST_0,
        "warmup_start_lr": AT_LEAST_0,
        "restart_epochs": POSITIVE,
        "patience": POSITIVE,
        "grad_accum": POSITIVE,
        "num_workers": AT_LEAST_0,
        "clip": Key(type=float, gt=0),
        "amp_dtype": Key(choices=AMP_DTYPES),
    }
    return {f"train.{k}": v for k, v in keys.items() if k in defaults["train"]}


def abaw_schema(task: str, defaults: Mapping[str, Any]) -> dict[str, Key]:
    """The declared keys of the ``abaw_va`` (``task="VA"``) or ``abaw_expr`` config."""
    return {
        "data": PATH,
        "features": PATHS,
        "min_coverage": FRACTION,
        "device": DEVICE,
        "extract.device": DEVICE,
        "extract.workers": POSITIVE,
        "extract.threads": AT_LEAST_0,
        "inputs.video": Key(item=str),
        "inputs.audio": Key(item=str),
        "extract.video": Key(item=str),
        "extract.audio": Key(item=str),
        "fps": POSITIVE,
        "normalise": Key(choices=NORMALISERS),
        "window.length": Key(type=NUMBER, gt=0),
        "window.hop": Key(type=NUMBER, gt=0),
        "window.unit": Key(choices=WINDOW_UNITS),
        "model.type": Key(choices=MODEL_TYPES),
        "model.layers": POSITIVE,
        "model.d_model": POSITIVE,
        "model.heads": POSITIVE,
        "model.ff": POSITIVE,
        "model.hidden": POSITIVE,
        "model.dropout": FRACTION,
        "fusion_model.d": POSITIVE,
        "fusion_model.heads": POSITIVE,
        "fusion_model.rounds": POSITIVE,
        "fusion_model.pool": Key(choices=POOLS),
        "fusion_model.dropout": FRACTION,
        "functionals.kernel": Key(choices=KERNELS),
        "functionals.stats": Key(item=str),
        "functionals.C": Key(item=float, gt=0),
        "functionals.max_train_windows": POSITIVE,
        "decision.methods": Key(item=str, choices=DECISION_METHODS),
        "decision.draws": POSITIVE,
        "decision.folds": POSITIVE,
        "smoothing.kind": Key(choices=SMOOTHING),
        "smoothing.windows": Key(item=int, gt=0),
        "loss.name": Key(choices=LOSSES[task]),
        "loss.weight": Key(choices=WEIGHTS),
        "loss.gamma": AT_LEAST_0,
        "loss.label_smoothing": FRACTION,
        **_train(defaults),
    }


def validate_abaw(cfg: Mapping[str, Any], task: str) -> None:
    """The cross-key checks of an ABAW recipe config (after the schema's, see
    :func:`abaw_schema`); :class:`emofeat.ConfigError` names the key."""
    del task  # the loss names per task are in the schema
    try:
        check_stats(cfg["functionals"]["stats"])
    except ValueError as exc:
        raise ConfigError(f"functionals.stats: {exc}") from None
    w = cfg["window"]
    if w["unit"] == "frames":
        for k in ("length", "hop"):
            if not float(w[k]).is_integer():
                raise ConfigError(
                    f"window.{k}={w[k]!r}: must be a whole number of frames (window.unit=frames)"
                )
    settings = cfg["extract"]["settings"]
    if not isinstance(settings, Mapping) or not all(
        isinstance(v, Mapping) for v in settings.values()
    ):
        raise ConfigError(
            f"extract.settings={settings!r}: must map extractor names to their settings"
        )


def face_finetune_schema(defaults: Mapping[str, Any]) -> dict[str, Key]:
    """The declared keys of the ``face_finetune`` config."""
    return {
        "data": PATH,
        "device": DEVICE,
        "task": Key(choices=FACE_TASKS),
        "input_size": AT_LEAST_0,
        "embedding_dim": AT_LEAST_0,
        "frame_step": POSITIVE,
        "dev_frame_step": AT_LEAST_0,
        "sampling": Key(choices=("shuffle", "balanced")),
        "augment.degrees": AT_LEAST_0,
        "augment.translate": AT_LEAST_0,
        "augment.scale": AT_LEAST_0,
        "augment.colour": AT_LEAST_0,
        "loss.va": Key(choices=("rmse", "ccc", "mse")),
        "loss.expr": Key(choices=("focal", "ce")),
        "loss.gamma": AT_LEAST_0,
        "loss.weight": Key(choices=WEIGHTS),
        "loss.label_smoothing": FRACTION,
        **_train(defaults),
    }


def validate_face_finetune(cfg: Mapping[str, Any]) -> None:
    """Cross-key checks of the ``face_finetune`` config (after :func:`face_finetune_schema`)."""
    if cfg["sampling"] == "balanced" and cfg["task"] == "va":
        raise ConfigError(
            "sampling=balanced balances expression classes: needs task=expr or task=both (task=va)"
        )


def audio_finetune_schema(defaults: Mapping[str, Any]) -> dict[str, Key]:
    """The declared keys of the ``audio_finetune`` config."""
    return {
        "data": PATH,
        "features": PATHS,
        "device": DEVICE,
        "task": Key(choices=AUDIO_TASKS),
        "variant": Key(choices=AUDIO_VARIANTS),
        "unfreeze": Key(type=int, ge=0),
        "win": POSITIVE,
        "hop": POSITIVE,
        "head.gru_hidden": POSITIVE,
        "head.gru_layers": POSITIVE,
        "head.layers": POSITIVE,
        "head.heads": POSITIVE,
        "head.ff": POSITIVE,
        "head.dropout": FRACTION,
        "loss.weight": Key(choices=("max_count", "none")),
        "loss.label_smoothing": FRACTION,
        "augment.p": FRACTION,
        "augment.kinds": Key(item=str, choices=("polarity", "noise", "gain")),
        "augment.snr_db": Key(item=float),
        "augment.gain_db": Key(item=float),
        "gate.kind": Key(choices=("none", "vad", "mouth_open")),
        "gate.mode": Key(choices=("drop", "mask")),
        "gate.min_active": FRACTION,
        "audio.dtype": Key(choices=("float16", "float32")),
        **_train(defaults),
    }


def validate_audio_finetune(cfg: Mapping[str, Any]) -> None:
    """Cross-key checks of the ``audio_finetune`` config."""
    for k in ("snr_db", "gain_db"):
        value = cfg["augment"][k]
        if len(value) != 2 or value[0] > value[1]:
            raise ConfigError(f"augment.{k}={value!r}: must be a range [low, high]")
    task = cfg["task"]
    step = STEP_SECONDS[task.upper()]
    win, hop = float(cfg["win"]), float(cfg["hop"])
    if abs(round(win / step) * step - win) > 1e-6:
        raise ConfigError(
            f"win={cfg['win']!r}: must be a whole number of the {step} s output steps (task={task})"
        )
    if abs(hop / step - round(hop / step)) > 1e-6:
        raise ConfigError(
            f"hop={cfg['hop']!r}: must be a multiple of the {step} s output step (task={task})"
        )
    kind = cfg["gate"]["kind"]
    if kind != "none" and not cfg["features"]:
        raise ConfigError(
            f"gate.kind={kind} needs the feature store holding the {kind!r} stream: set "
            f"features (--features STORE; make it with 'emofeat extract --plugin {kind} ...')"
        )
