"""Kernel ELM, its C search, window functionals and the sklearn baselines."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import Pipeline

from emofeat_recipes.kelm import STATS, KernelELM, baseline, search_c, window_functionals


def _ccc(y: np.ndarray, p: np.ndarray) -> float:
    """Reference CCC (the ABAW definition), mean over columns."""
    y, p = np.asarray(y, float).reshape(len(y), -1), np.asarray(p, float).reshape(len(p), -1)
    out = []
    for c in range(y.shape[1]):
        a, b = y[:, c], p[:, c]
        cov = ((a - a.mean()) * (b - b.mean())).mean()
        out.append(2 * cov / (a.var() + b.var() + (a.mean() - b.mean()) ** 2))
    return float(np.mean(out))


def _rbf(a, b, g):
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-g * d)


def test_kelm_equals_closed_form_and_kernel_ridge():
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(40, 3)), rng.normal(size=(15, 3))
    y = np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    for c in (0.1, 10.0):
        m = KernelELM(C=c, kernel="rbf", gamma=0.5).fit(x, y)
        beta = np.linalg.solve(np.eye(40) / c + _rbf(x, x, 0.5), y)  # the closed form, directly
        np.testing.assert_allclose(m.beta_, beta, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(m.predict(xt), _rbf(xt, x, 0.5) @ beta, rtol=1e-8, atol=1e-10)
        kr = KernelRidge(alpha=1 / c, kernel="rbf", gamma=0.5).fit(x, y)
        np.testing.assert_allclose(m.predict(xt), kr.predict(xt), rtol=1e-7, atol=1e-9)
        lin = KernelELM(C=c, kernel="linear").fit(x, y[:, 0])
        krl = KernelRidge(alpha=1 / c, kernel="linear").fit(x, y[:, 0])
        assert lin.predict(xt).shape == (15,)
        np.testing.assert_allclose(lin.predict(xt), krl.predict(xt), rtol=1e-7, atol=1e-9)
    # default gamma is 1 / D
    assert KernelELM().fit(x, y).gamma_ == pytest.approx(1 / 3)


def test_kelm_classification_one_hot_and_argmax():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [4, 0], [0, 4]])
    labels = np.repeat(np.array([2, 5, 7]), 30)  # class ids need not be 0..k-1
    x = centres[np.repeat(np.arange(3), 30)] + rng.normal(0, 0.7, size=(90, 2))
    m = KernelELM(C=10.0, gamma="median").fit(x, labels)
    assert m.task_ == "classification"
    np.testing.assert_array_equal(m.classes_, [2, 5, 7])
    t = np.zeros((90, 3))
    t[np.arange(90), np.repeat(np.arange(3), 30)] = 1
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    g = 1 / np.median(d2[np.triu_indices(90, 1)])  # median heuristic, computed independently
    assert m.gamma_ == pytest.approx(g)
    beta = np.linalg.solve(np.eye(90) / 10 + _rbf(x, x, g), t)
    xt = centres + 0.1
    np.testing.assert_allclose(m.decision_function(xt), _rbf(xt, x, g) @ beta, rtol=1e-7)
    np.testing.assert_array_equal(m.predict(xt), [2, 5, 7])
    assert accuracy_score(labels, m.predict(x)) > 0.95


def test_kelm_errors_and_memory_guard():
    x = np.ones((10, 2))
    with pytest.raises(MemoryError, match="GiB kernel matrix"):
        KernelELM(max_memory_gb=1e-7).fit(x, np.ones(10))
    with pytest.raises(ValueError, match="NaN"):
        KernelELM().fit(np.full((3, 2), np.nan), np.ones(3))
    with pytest.raises(ValueError, match="unknown kernel"):
        KernelELM(kernel="poly").fit(x, np.arange(10.0))
    with pytest.raises(ValueError, match="C must be positive"):
        KernelELM(C=0).fit(x, np.arange(10.0))
    with pytest.raises(ValueError, match="fitted on 2-d"):
        KernelELM().fit(x, np.arange(10.0)).predict(np.ones((2, 3)))


def test_search_c_on_a_noisy_planted_problem():
    rng = np.random.default_rng(2)

    def sample(n):
        x = rng.uniform(-3, 3, size=(n, 1))
        return x, np.sin(2 * x[:, 0]) + rng.normal(0, 0.5, n)

    xtr, ytr = sample(150)
    xdv, ydv = sample(300)
    cs = 10.0 ** np.arange(-3, 5)
    model, scores = search_c(xtr, ytr, xdv, ydv, _ccc, Cs=cs, gamma=50.0)
    # every C's score equals fitting that C directly (sklearn KernelRidge, alpha = 1/C)
    for c in cs:
        kr = KernelRidge(alpha=1 / c, kernel="rbf", gamma=50.0).fit(xtr, ytr)
        assert scores[c] == pytest.approx(_ccc(ydv, kr.predict(xdv)), abs=1e-6)
    # tiny C underfits, huge C fits the noise: a middle C wins, near the noise ceiling
    assert model.C == max(scores, key=scores.get)
    assert cs[0] < model.C < cs[-1]
    assert scores[model.C] > max(scores[cs[0]], scores[cs[-1]]) + 0.05
    ceiling = _ccc(ydv, np.sin(2 * xdv[:, 0]))
    assert scores[model.C] > ceiling - 0.08
    assert _ccc(ydv, model.predict(xdv)) == pytest.approx(scores[model.C], abs=1e-6)


def test_search_c_classification():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model, scores = search_c(x[:80], y[:80], x[80:], y[80:], accuracy_score, kernel="linear")
    assert model.task_ == "classification" and scores[model.C] >= 0.85


def _reference(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Every statistic of STATS written out independently, for one window's valid frames."""
    p = {q: np.percentile(x, q, axis=0) for q in (10, 25, 50, 75, 90)}
    tc = t - t.mean()
    slope = (
        (tc[:, None] * (x - x.mean(0))).sum(0) / (tc**2).sum()
        if len(x) > 1
        else np.zeros(x.shape[1])
    )
    by = {
        "mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0),
        "range": x.max(0) - x.min(0), "median": p[50], "p10": p[10], "p25": p[25],
        "p75": p[75], "p90": p[90], "iqr": p[75] - p[25], "slope": slope,
        "first": x[0], "last": x[-1],
    }  # fmt: skip
    return np.concatenate([by[s] for s in STATS])


def test_window_functionals_and_the_extractor_share_the_definitions():
    from emofeat_plugins.functionals import window_stats

    rng = np.random.default_rng(4)
    w = rng.normal(size=(6, 10, 3))
    valid = rng.random((6, 10)) > 0.3
    valid[0] = False  # no valid frame
    valid[1] = False
    valid[1, 4] = True  # one valid frame: slope 0
    rate = 5.0
    f = window_functionals(w, valid, STATS, rate=rate)
    assert f.shape == (6, 3 * len(STATS))
    assert np.isnan(f[0]).all()
    t = np.arange(10) / rate
    for i in range(1, 6):
        ref = _reference(w[i][valid[i]], t[valid[i]])
        np.testing.assert_allclose(f[i], ref, rtol=1e-9, atol=1e-12)
        # the extractor's per-window form gives the same numbers (float32)
        one = window_stats(w[i][valid[i]], t[valid[i]], list(STATS))
        np.testing.assert_allclose(one, ref, rtol=1e-5, atol=1e-6)
    # all frames valid: the dense path, same definitions
    dense = window_functionals(w, None, STATS, rate=rate)
    for i in range(6):
        np.testing.assert_allclose(dense[i], _reference(w[i], t), rtol=1e-9, atol=1e-12)
    # default stats: mean, std, min, max (the paper's), stat-major order
    f = window_functionals(w[2:3], valid[2:3])
    x = w[2][valid[2]]
    np.testing.assert_allclose(f[0], np.concatenate([x.mean(0), x.std(0), x.min(0), x.max(0)]))
    with pytest.raises(ValueError, match="unknown statistic"):
        window_functionals(w, valid, ("kurtosis",))


def test_baselines_are_the_named_sklearn_estimators():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 4))
    y = np.stack([x[:, 0], -x[:, 1]], axis=1)
    svr = baseline("svr", C=1.0)
    assert isinstance(svr, Pipeline) and isinstance(svr[-1], MultiOutputRegressor)
    assert _ccc(y, svr.fit(x, y).predict(x)) > 0.8
    assert isinstance(baseline("linear", scale=False), Ridge)
    lin = baseline("linear", alpha=0.1).fit(x, y)
    assert _ccc(y, lin.predict(x)) > 0.95
    logit = baseline("logistic", C=1.0)
    assert isinstance(logit[-1], LogisticRegression) and logit[-1].max_iter == 1000
    assert accuracy_score(y[:, 0] > 0, logit.fit(x, y[:, 0] > 0).predict(x)) > 0.9
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline("xgboost")
