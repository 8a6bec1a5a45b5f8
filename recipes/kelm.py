"""The functionals family: window statistics fed to a Kernel ELM, and sklearn baselines.

The paper's second temporal family (arXiv 2403.12609): statistics (mean, std, min, max)
of the frame embeddings over each window, one prediction per window from a Kernel Extreme
Learning Machine, regularisation ``C`` searched on dev. A Kernel ELM is closed-form kernel
ridge regression: with the training kernel matrix ``K`` and targets ``T`` (one-hot rows for
classification), ``beta = (I / C + K)^-1 T`` and ``f(x) = k(x, X_train) beta``.

Memory: ``K`` is ``N x N`` float64 (``8 N^2`` bytes: 20,000 training windows = 3.2 GB), and
the solve is ``O(N^3)``. Aff-Wild2 at 5 fps with hop 15 gives about 15,000 VA training
windows, which fits; for more, subsample windows or raise the hop. :class:`KernelELM`
refuses to build a matrix above ``max_memory_gb``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator

from emofeat import STATS, window_statistics

__all__ = ["STATS", "KernelELM", "baseline", "search_c", "window_functionals"]


def window_functionals(
    windows: np.ndarray,
    valid: np.ndarray | None = None,
    stats: Sequence[str] = ("mean", "std", "min", "max"),
    rate: float = 1.0,
) -> np.ndarray:
    """Statistics over the valid frames of each window: ``(W, L, D)`` -> ``(W, D * len(stats))``.

    The core's :func:`emofeat.window_statistics` (the same definitions as the ``functionals``
    extractor) with frames ``1 / rate`` s apart (``slope`` per second; ``rate=1``: per frame).
    A window with no valid frame gives a row of NaN: drop those rows before fitting
    (``np.isfinite(F).all(1)``).
    """
    x = np.asarray(windows)
    length = x.shape[1] if x.ndim == 3 else 0
    return window_statistics(x, valid, stats, times=np.arange(length) / float(rate))


class KernelELM(BaseEstimator):
    """Kernel Extreme Learning Machine (closed-form kernel ridge), sklearn-style.

    Parameters
    ----------
    C : regularisation; larger C fits the training data more closely (ridge ``alpha = 1/C``).
    kernel : ``"rbf"`` (``exp(-gamma ||x - y||^2)``) or ``"linear"`` (``x . y``).
    gamma : RBF width: ``None`` = ``1 / D`` (D = input dimension), ``"median"`` = one over
        the median squared distance between training rows (on up to 2,000 of them), or a
        positive float.
    task : ``"regression"`` (targets used as given, 1-D or ``(N, k)``), ``"classification"``
        (targets are labels, one-hot encoded; :meth:`predict` returns the arg-max class) or
        ``"auto"`` (classification for integer, bool or string targets).
    max_memory_gb : refuse to build a training kernel matrix larger than this.

    Fitted attributes: ``X_fit_``, ``beta_`` ``(N, k)``, ``gamma_``, ``classes_``
    (classification), ``task_``.
    """

    def __init__(
        self,
        C: float = 1.0,  # noqa: N803 (the ELM literature's and sklearn's name)
        kernel: str = "rbf",
        gamma: float | str | None = None,
        task: str = "auto",
        max_memory_gb: float = 4.0,
    ) -> None:
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.task = task
        self.max_memory_gb = max_memory_gb

    # -- kernel
    def _resolve_gamma(self, x: np.ndarray) -> float:
        if self.gamma is None:
            return 1.0 / x.shape[1]
        if isinstance(self.gamma, str):
            if self.gamma != "median":
                raise ValueError(
                    f"KernelELM: gamma must be a number, None or 'median', got {self.gamma!r}"
                )
            sub = x[np.random.default_rng(0).permutation(len(x))[:2000]]
            d2 = _sq_dists(sub, sub)[np.triu_indices(len(sub), 1)]
            med = float(np.median(d2)) if len(d2) else 0.0
            return 1.0 / med if med > 0 else 1.0 / x.shape[1]
        g = float(self.gamma)
        if not g > 0:
            raise ValueError(f"KernelELM: gamma must be positive, got {self.gamma}")
        return g

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.kernel == "linear":
            return a @ b.T
        if self.kernel == "rbf":
            return np.exp(-self.gamma_ * _sq_dists(a, b))
        raise ValueError(f"KernelELM: unknown kernel {self.kernel!r}; choose 'rbf' or 'linear'")

    def _prepare(self, X, y) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
        x = _as_matrix(X, "X")
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"KernelELM.fit: X has {len(x)} rows but y has {len(y)}")
        if not self.C > 0:
            raise ValueError(f"KernelELM: C must be positive, got {self.C}")
        if self.task not in ("auto", "regression", "classification"):
            raise ValueError(f"KernelELM: unknown task {self.task!r}")
        gib = 8 * len(x) ** 2 / 2**30
        if gib > self.max_memory_gb:
            raise MemoryError(
                f"KernelELM: {len(x)} training rows need a {gib:.1f} GiB kernel matrix "
                f"(limit max_memory_gb={self.max_memory_gb}); subsample windows or raise the hop"
            )
        task = self.task
        if task == "auto":
            task = "classification" if y.dtype.kind in "iubUSO" and y.ndim == 1 else "regression"
        self.task_ = task
        if task == "classification":
            if y.ndim != 1:
                raise ValueError("KernelELM: classification needs 1-D labels")
            self.classes_, codes = np.unique(y, return_inverse=True)
            t = np.zeros((len(y), len(self.classes_)))
            t[np.arange(len(y)), codes] = 1.0
        else:
            t = y.astype(np.float64)
            if not np.isfinite(t).all():
                raise ValueError(
                    "KernelELM.fit: regression targets contain NaN/inf; drop those rows"
                )
            self._y_1d = t.ndim == 1
            t = t.reshape(len(t), -1)
        self.gamma_ = self._resolve_gamma(x) if self.kernel == "rbf" else None
        return x, t

    def fit(self, X: np.ndarray, y: np.ndarray) -> KernelELM:  # noqa: N803
        """Fit on ``X`` ``(N, D)`` and targets ``y`` (labels, or values ``(N,)``/``(N, k)``)."""
        x, t = self._prepare(X, y)
        k = self._kernel(x, x)
        k[np.diag_indices_from(k)] += 1.0 / self.C
        # I/C + K is symmetric positive definite: Cholesky is exact and fastest
        self.beta_ = linalg.solve(k, t, assume_a="pos", overwrite_a=True)
        self.X_fit_ = x
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Raw outputs ``k(X, X_train) beta``: ``(n, k)`` (class scores for classification)."""
        x = _as_matrix(X, "X")
        if x.shape[1] != self.X_fit_.shape[1]:
            raise ValueError(
                f"KernelELM: fitted on {self.X_fit_.shape[1]}-d input, got {x.shape[1]}-d"
            )
        return self._kernel(x, self.X_fit_) @ self.beta_

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Class labels (classification) or values (regression, the shape ``y`` had)."""
        f = self.decision_function(X)
        if self.task_ == "classification":
            return self.classes_[f.argmax(axis=1)]
        return f[:, 0] if self._y_1d else f


def _as_matrix(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"KernelELM: {what} must be (rows, features), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"KernelELM: {what} contains NaN/inf (windows with no valid frame?)")
    return x


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)  # rounding can make tiny negatives


def search_c(
    X_train: np.ndarray,  # noqa: N803 (sklearn naming)
    Y_train: np.ndarray,  # noqa: N803 (sklearn naming)
    X_dev: np.ndarray,  # noqa: N803 (sklearn naming)
    Y_dev: np.ndarray,  # noqa: N803 (sklearn naming)
    metric: Callable[[np.ndarray, np.ndarray], float],
    Cs: Sequence[float] = tuple(10.0 ** np.arange(-3, 4)),  # noqa: N803 (sklearn naming)
    kernel: str = "rbf",
    gamma: float | str | None = None,
    task: str = "auto",
) -> tuple[KernelELM, dict[float, float]]:
    """Search the Kernel ELM's ``C`` on dev: ``metric(Y_dev, model.predict(X_dev))``, higher wins.

    The training kernel is eigendecomposed once (``K = U diag(l) U^T``), so every ``C`` costs
    only ``beta = U diag(1 / (l + 1/C)) U^T T``; the winner is refitted with the direct solve.
    Returns ``(fitted best model, {C: dev score})``; ties go to the smaller ``C`` (smoother).
    """
    base = KernelELM(C=1.0, kernel=kernel, gamma=gamma, task=task)
    x, t = base._prepare(X_train, Y_train)
    k = base._kernel(x, x)
    lam, u = linalg.eigh(k, overwrite_a=True)
    lam = np.maximum(lam, 0.0)
    ut_t = u.T @ t
    k_dev = base._kernel(_as_matrix(X_dev, "X_dev"), x) @ u
    scores: dict[float, float] = {}
    for c in Cs:
        if not c > 0:
            raise ValueError(f"search_c: C must be positive, got {c}")
        f = k_dev @ (ut_t / (lam + 1.0 / c)[:, None])
        if base.task_ == "classification":
            pred = base.classes_[f.argmax(axis=1)]
        else:
            pred = f[:, 0] if base._y_1d else f
        scores[float(c)] = float(metric(np.asarray(Y_dev), pred))
    best = max(scores, key=lambda c: (scores[c], -c))
    model = KernelELM(C=best, kernel=kernel, gamma=gamma, task=task).fit(X_train, Y_train)
    return model, scores


def baseline(kind: str, scale: bool = True, **params):
    """An sklearn baseline for window functionals: ``"svr"``, ``"linear"`` or ``"logistic"``.

    ``svr``: ``MultiOutputRegressor(SVR(**params))`` (one SVR per VA dimension); ``linear``:
    ``Ridge(**params)`` (multi-output natively); ``logistic``: ``LogisticRegression`` for EXPR
    (``max_iter=1000`` unless given). With ``scale`` the estimator is preceded by a
    ``StandardScaler`` fitted on the training rows (SVR and logistic regression need it).
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multioutput import MultiOutputRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    if kind == "svr":
        est = MultiOutputRegressor(SVR(**params))
    elif kind == "linear":
        est = Ridge(**params)
    elif kind == "logistic":
        est = LogisticRegression(**{"max_iter": 1000, **params})
    else:
        raise ValueError(f"unknown baseline {kind!r}; choose 'svr', 'linear' or 'logistic'")
    return make_pipeline(StandardScaler(), est) if scale else est


def expand_classes(probs: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class scores ``(n, len(classes))`` of a classifier fitted on the labels
    ``classes`` as ``(n, n_classes)``: column ``c`` for class ``c``, 0 for classes the
    training labels lacked (a KELM has no output for them)."""
    probs = np.asarray(probs, dtype=np.float64)
    out = np.zeros((len(probs), n_classes))
    out[:, np.asarray(classes, dtype=np.int64)] = probs
    return out


def window_predictions(
    model: KernelELM, feats: np.ndarray, task: str, n_classes: int
) -> np.ndarray:
    """A fitted KELM's predictions for window functionals ``feats``: VA values clipped to
    [-1, 1], or EXPR class probabilities (softmax of the decision values) with a column per
    class, 0 for classes absent from the training windows."""
    if task == "VA":
        return np.clip(model.predict(feats), -1, 1)
    z = model.decision_function(feats)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return expand_classes(z / z.sum(axis=1, keepdims=True), model.classes_, n_classes)
