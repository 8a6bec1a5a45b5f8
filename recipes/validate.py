"""Checks of an ABAW recipe config, run when it is resolved: before any data is read.

Each error names the key, what it holds and what it may hold, so a typo in ``window.unit``
or ``loss.name`` stops ``recipe run`` (and ``recipe show``) at once instead of after the data
has loaded.
"""

from __future__ import annotations

from typing import Any

from emofeat import ConfigError, check_stats

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


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def validate_abaw(cfg: dict[str, Any], task: str) -> None:
    """Raise :class:`emofeat.ConfigError` naming the first bad key of an ABAW recipe config."""

    def one_of(key: str, allowed: tuple[str, ...]) -> None:
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}: must be one of {', '.join(allowed)}")

    def positive(key: str, zero: bool = False) -> None:
        value = _get(cfg, key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or value < 0 or (value == 0 and not zero):
            raise ConfigError(f"{key}={value!r}: must be a number {'>=' if zero else '>'} 0")

    def names(key: str, allowed: tuple[str, ...] | None = None) -> None:
        value = _get(cfg, key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}={value!r}: must be a list of names")
        bad = [v for v in value if allowed is not None and v not in allowed]
        if bad:
            raise ConfigError(f"{key}: {bad[0]!r} is not one of {', '.join(allowed or ())}")

    one_of("normalise", NORMALISERS)
    one_of("window.unit", ("frames", "seconds"))
    positive("window.length")
    positive("window.hop")
    positive("fps")
    one_of("model.type", MODEL_TYPES)
    one_of("fusion_model.pool", POOLS)
    one_of("functionals.kernel", KERNELS)
    try:
        check_stats(_get(cfg, "functionals.stats"))
    except ValueError as exc:
        raise ConfigError(f"functionals.stats: {exc}") from None
    names("decision.methods", DECISION_METHODS)
    one_of("smoothing.kind", SMOOTHING)
    one_of("loss.name", LOSSES[task])
    one_of("loss.weight", WEIGHTS)
    one_of("train.optimizer", OPTIMIZERS)
    one_of("train.schedule", SCHEDULES)
    positive("train.lr")
    positive("train.batch_size")
    positive("train.epochs", zero=True)
    for modality in ("video", "audio"):
        names(f"inputs.{modality}")
        names(f"extract.{modality}")
    coverage = cfg["min_coverage"]
    if not isinstance(coverage, (int, float)) or isinstance(coverage, bool):
        raise ConfigError(f"min_coverage={coverage!r}: must be a fraction between 0 and 1")
    if not 0 <= coverage <= 1:
        raise ConfigError(f"min_coverage={coverage!r}: must be a fraction between 0 and 1")
    settings = cfg["extract"]["settings"]
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        raise ConfigError(
            f"extract.settings={settings!r}: must map extractor names to their settings"
        )
