"""Decision-level fusion of trained models' per-frame outputs (the SUN team's ABAW6
submissions, arXiv 2403.12609).

Three ways, all fitted on the dev set:

* :func:`dirichlet_search`: weights over the models drawn at random from a flat Dirichlet
  distribution (1,000-2,000 draws in the paper), keeping the draw with the best dev metric;
  separate weights per output column (VA: valence, arousal), per class (EXPR) or one set
  for everything. The single models (one-hot weights) and the plain average are always among
  the candidates, so on dev the fusion is never worse than the best single model.
* :func:`entropy_gate`: the audio model's vote is dropped on frames where its class
  distribution is too uncertain (normalised entropy above a threshold searched on dev).
* :func:`rf_stacking`: a random forest on the models' concatenated outputs, its settings
  chosen by out-of-bag score.

Every model's predictions for a set are an ``(n, C)`` array over the same ``n`` frames (VA:
``C = 2`` values; EXPR: ``C = 8`` class probabilities, so models are on one scale). Metrics are
callables ``metric(y_true, y_pred) -> float``, higher is better.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "RFStacker",
    "apply_weights",
    "dirichlet_search",
    "entropy_gate",
    "normalised_entropy",
    "rf_stacking",
    "search_entropy_threshold",
]

Metric = Callable[[np.ndarray, np.ndarray], float]


def _stack(preds: Sequence[np.ndarray], what: str) -> np.ndarray:
    """``M`` arrays ``(n, C)`` -> ``(M, n, C)``, checking they agree."""
    if len(preds) == 0:
        raise ValueError(f"{what}: no model predictions given")
    arrs = [np.asarray(p, dtype=np.float64) for p in preds]
    arrs = [a[:, None] if a.ndim == 1 else a for a in arrs]
    shapes = {a.shape for a in arrs}
    if len(shapes) != 1 or arrs[0].ndim != 2:
        raise ValueError(
            f"{what}: every model's predictions must be (frames, columns) of one shape; "
            f"got {[a.shape for a in arrs]}"
        )
    return np.stack(arrs)


def _subset(p: np.ndarray, y: np.ndarray, mask, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    if len(y) != p.shape[1]:
        raise ValueError(f"{what}: {p.shape[1]} prediction frames but {len(y)} labels")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(y),):
            raise ValueError(f"{what}: mask has shape {mask.shape}, expected ({len(y)},)")
        p, y = p[:, mask], y[mask]
    return p, y


def apply_weights(preds: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Weighted sum of ``M`` models' ``(n, C)`` predictions.

    Column ``c`` of the result is ``sum_m weights[m, c] * preds[m][:, c]``.

    ``weights`` is ``(M, C)`` (per column) or ``(M,)`` (the same for every column).
    """
    p = _stack(preds, "apply_weights")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = np.repeat(w[:, None], p.shape[2], axis=1)
    if w.shape != (p.shape[0], p.shape[2]):
        raise ValueError(
            f"apply_weights: weights {w.shape} do not match {p.shape[0]} models x "
            f"{p.shape[2]} columns"
        )
    return np.einsum("mnc,mc->nc", p, w)


def _candidates(m: int, draws: int, rng: np.random.Generator, alpha: float) -> np.ndarray:
    """``(K, M)`` weight vectors: one-hot corners, uniform average, then Dirichlet draws."""
    fixed = np.vstack([np.eye(m), np.full((1, m), 1.0 / m)]) if m > 1 else np.ones((1, 1))
    n_random = max(0, int(draws) - len(fixed))
    return np.vstack([fixed, rng.dirichlet(np.full(m, alpha), size=n_random)])


def dirichlet_search(
    dev_preds: Sequence[np.ndarray],
    dev_true: np.ndarray,
    metric: Metric,
    draws: int = 1000,
    seed: int = 0,
    per: str = "dimension",
    alpha: float = 1.0,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Random Dirichlet search for fusion weights on dev; returns ``(weights (M, C), score)``.

    ``per`` decides what gets its own weight vector over the ``M`` models:

    * ``"dimension"`` (VA): each output column separately. ``metric`` then scores **one
      column**: ``metric(dev_true[:, c], fused[:, c])`` on 1-D arrays (e.g. a CCC), and the
      returned score is the mean over columns (the VA score when ``metric`` is CCC).
    * ``"class"`` (EXPR): one weight vector per class column, drawn jointly (each draw is an
      ``(M, C)`` matrix); ``metric(dev_true, fused)`` scores the fused ``(n, C)`` scores, e.g.
      ``lambda y, s: macro_f1(y, s.argmax(1))``.
    * ``"global"``: one weight vector for all columns, scored like ``"class"``.

    ``draws`` candidates in all, of which the first are the ``M`` single models (one-hot
    weights) and the uniform average; the rest come from ``Dirichlet(alpha)``, seeded by
    ``seed``. Ties keep the earlier candidate, so a single model wins over an equal mixture.
    ``mask`` ``(n,)`` restricts the search to valid frames (the metric may also mask).
    """
    p = _stack(dev_preds, "dirichlet_search")
    p, y = _subset(p, dev_true, mask, "dirichlet_search")
    m, _, c = p.shape
    rng = np.random.default_rng(seed)
    if per == "dimension":
        if y.ndim == 1:
            y = y[:, None]
        if y.shape[1] != c:
            raise ValueError(f"dirichlet_search: labels have {y.shape[1]} columns, predictions {c}")
        cand = _candidates(m, draws, rng, alpha)
        weights = np.zeros((m, c))
        best_scores = []
        for col in range(c):
            pc = p[:, :, col]
            # one candidate at a time: (K, n) at once would not fit for a million frames
            scores = [float(metric(y[:, col], w @ pc)) for w in cand]
            k = int(np.argmax(scores))  # first maximum: the earlier (simpler) candidate
            weights[:, col] = cand[k]
            best_scores.append(scores[k])
        return weights, float(np.mean(best_scores))
    if per == "global":
        cand = _candidates(m, draws, rng, alpha)
        mats = np.repeat(cand[:, :, None], c, axis=2)
    elif per == "class":
        base = _candidates(m, min(draws, m + 1), rng, alpha)  # corners + average, same for all
        n_random = max(0, int(draws) - len(base))
        rand = rng.dirichlet(np.full(m, alpha), size=(n_random, c)).transpose(0, 2, 1)
        mats = np.concatenate([np.repeat(base[:, :, None], c, axis=2), rand])
    else:
        raise ValueError(
            f"dirichlet_search: per must be 'dimension', 'class' or 'global', got {per!r}"
        )
    best_k, best = 0, -np.inf
    for k, w in enumerate(mats):
        s = float(metric(y, np.einsum("mnc,mc->nc", p, w)))
        if s > best:
            best_k, best = k, s
    return mats[best_k], best


# --------------------------------------------------------------------------- entropy gating


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of each row's class distribution divided by ``log(C)``: 0 = certain, 1 = uniform.

    Rows must be probabilities (non-negative, summing to 1 within 1e-3); pass logits through
    a softmax first (``scipy.special.softmax(logits, axis=1)``).
    """
    q = np.asarray(probs, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] < 2:
        raise ValueError(f"normalised_entropy: expected (frames, classes >= 2), got {q.shape}")
    if (q < -1e-9).any() or not np.allclose(q.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(
            "normalised_entropy: rows are not probability distributions (negative values or "
            "sums != 1); apply a softmax to logits first"
        )
    q = np.clip(q, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)
    return h / np.log(q.shape[1])


def entropy_gate(
    audio_probs: np.ndarray,
    other: np.ndarray,
    threshold: float,
    audio_weight: float = 0.5,
) -> np.ndarray:
    """Fuse audio class probabilities into ``other`` only where audio is confident.

    Where the audio's :func:`normalised_entropy` is at most ``threshold`` the result is
    ``audio_weight * audio + (1 - audio_weight) * other``; where it is higher (silence,
    music, another speaker) audio is gated off and ``other`` is kept. ``threshold >= 1``
    never gates; ``threshold < 0`` always gates. Both inputs are ``(n, C)`` probabilities.
    """
    a = np.asarray(audio_probs, dtype=np.float64)
    o = np.asarray(other, dtype=np.float64)
    if a.shape != o.shape:
        raise ValueError(f"entropy_gate: audio {a.shape} and other {o.shape} differ in shape")
    keep = normalised_entropy(a) <= threshold
    mixed = audio_weight * a + (1.0 - audio_weight) * o
    return np.where(keep[:, None], mixed, o)


def search_entropy_threshold(
    audio_probs: np.ndarray,
    other: np.ndarray,
    dev_true: np.ndarray,
    metric: Metric,
    thresholds: Sequence[float] | None = None,
    audio_weight: float = 0.5,
) -> tuple[float, dict[float, float]]:
    """Entropy threshold for :func:`entropy_gate` maximising ``metric(dev_true, fused)`` on dev.

    ``thresholds`` default to -1 (always gate: ``other`` alone), 0.05 ... 0.95 and 1 (never
    gate). Returns ``(best threshold, {threshold: score})``; ties keep the lower threshold.
    """
    ts = (
        [-1.0, *np.round(np.arange(0.05, 1.0, 0.05), 2).tolist(), 1.0]
        if thresholds is None
        else sorted(float(t) for t in thresholds)
    )
    y = np.asarray(dev_true)
    scores = {
        float(t): float(metric(y, entropy_gate(audio_probs, other, t, audio_weight))) for t in ts
    }
    best = max(scores, key=lambda t: (scores[t], -t))
    return best, scores


# --------------------------------------------------------------------------- RF stacking

DEFAULT_RF_CONFIGS: tuple[dict[str, Any], ...] = tuple(
    {"n_estimators": 100, "max_depth": depth, "min_samples_leaf": leaf, "max_features": feats}
    for depth in (None, 12)
    for leaf in (1, 10)
    for feats in ("sqrt", 1.0)
)


@dataclass
class RFStacker:
    """A random forest over the models' concatenated outputs, chosen by out-of-bag score.

    ``model`` is the fitted sklearn forest, ``config`` its settings, ``oob_scores`` the OOB
    score of every config tried (in order), ``task`` ``"va"`` or ``"expr"``, ``n_classes`` the
    number of columns of each model's predictions.
    """

    model: Any
    config: dict[str, Any]
    task: str
    n_models: int
    n_classes: int
    oob_scores: list[float] = field(default_factory=list)

    def _features(self, preds: Sequence[np.ndarray]) -> np.ndarray:
        p = _stack(preds, "RFStacker.predict")
        if p.shape[0] != self.n_models or p.shape[2] != self.n_classes:
            raise ValueError(
                f"RFStacker: fitted on {self.n_models} models x {self.n_classes} columns, "
                f"got {p.shape[0]} x {p.shape[2]}"
            )
        return np.concatenate(list(p), axis=1)

    def predict(self, preds: Sequence[np.ndarray]) -> np.ndarray:
        """VA: ``(n, C)`` values; EXPR: ``(n,)`` class indices."""
        f = self.model.predict(self._features(preds))
        return f.reshape(len(f), -1) if self.task == "va" else f

    def predict_proba(self, preds: Sequence[np.ndarray]) -> np.ndarray:
        """EXPR: ``(n, C)`` class probabilities, one column per class index ``0 .. C-1``
        (classes absent from the dev labels get 0)."""
        if self.task != "expr":
            raise ValueError("RFStacker.predict_proba is for the EXPR task")
        proba = self.model.predict_proba(self._features(preds))
        out = np.zeros((len(proba), self.n_classes))
        out[:, self.model.classes_.astype(int)] = proba
        return out


def rf_stacking(
    dev_preds: Sequence[np.ndarray],
    dev_true: np.ndarray,
    task: str,
    configs: Sequence[dict[str, Any]] | None = None,
    seed: int = 0,
    oob_metric: Metric | None = None,
    mask: np.ndarray | None = None,
    n_jobs: int | None = None,
) -> RFStacker:
    """Fit a random-forest stacker on dev, choosing its config by out-of-bag score.

    Features are the ``M`` models' ``(n, C)`` outputs side by side (``(n, M * C)``). ``task``
    ``"va"`` fits a multi-output ``RandomForestRegressor`` on ``(n, 2)`` targets; ``"expr"`` a
    ``RandomForestClassifier`` on class indices. Every config in ``configs`` (keyword
    arguments of the forest; default :data:`DEFAULT_RF_CONFIGS`) is fitted with bootstrap and
    ``oob_score`` and the highest ``oob_score_`` wins (ties: the first). The OOB score is
    sklearn's default (R^2 averaged over outputs for VA, accuracy for EXPR) unless
    ``oob_metric(y_true, y_pred)`` is given, e.g. macro-F1. ``mask`` ``(n,)`` drops invalid
    frames. On about a million frames, pass ``max_samples`` (a fraction) in the configs.
    """
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    if task not in ("va", "expr"):
        raise ValueError(f"rf_stacking: task must be 'va' or 'expr', got {task!r}")
    p = _stack(dev_preds, "rf_stacking")
    p, y = _subset(p, dev_true, mask, "rf_stacking")
    x = np.concatenate(list(p), axis=1)
    if task == "expr":
        y = np.asarray(y).astype(int).ravel()
        forest = RandomForestClassifier
    else:
        y = np.asarray(y, dtype=np.float64)
        forest = RandomForestRegressor
    configs = list(DEFAULT_RF_CONFIGS if configs is None else configs)
    if not configs:
        raise ValueError("rf_stacking: no configs to try")
    best: tuple[float, int, Any] | None = None
    scores = []
    for i, cfg in enumerate(configs):
        model = forest(
            **{
                **cfg,
                "bootstrap": True,
                "oob_score": oob_metric if oob_metric is not None else True,
                "random_state": seed,
                "n_jobs": n_jobs,
            }
        )
        model.fit(x, y)
        s = float(model.oob_score_)
        scores.append(s)
        if best is None or s > best[0]:
            best = (s, i, model)
    assert best is not None
    return RFStacker(
        model=best[2],
        config=dict(configs[best[1]]),
        task=task,
        n_models=p.shape[0],
        n_classes=p.shape[2],
        oob_scores=scores,
    )
