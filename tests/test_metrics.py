"""ABAW metrics against independent references: a direct CCC formula, scikit-learn, hand cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score

from emofeat_recipes.metrics import ccc, confusion, expr_f1, va_score


def reference_ccc(x, y) -> float:
    """Lin's CCC written out term by term (population moments), independent of emofeat."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x) / n
    syy = sum((b - my) ** 2 for b in y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / n
    return 2 * sxy / (sxx + syy + (mx - my) ** 2)


def test_ccc_hand_cases():
    assert ccc([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert ccc([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # a shift of 1: cov = var = 2/3, so 2(2/3) / (2/3 + 2/3 + 1) = 4/7
    assert ccc([1, 2, 3], [2, 3, 4]) == pytest.approx(4 / 7)
    # a scale of 2 around the same mean: cov = 4/3, var 2/3 and 8/3 -> (8/3)/(10/3) = 0.8
    assert ccc([1, 2, 3], [0, 2, 4]) == pytest.approx(0.8)


def test_ccc_matches_the_formula_and_uses_population_variances():
    rng = np.random.default_rng(1)
    y = rng.uniform(-1, 1, 500)
    x = 0.6 * y + 0.3 * rng.standard_normal(500) + 0.1
    assert ccc(x, y) == pytest.approx(reference_ccc(x, y), rel=1e-12)
    # the sample-variance (ddof=1) variant gives a different number on small sets
    x3, y3 = [0.1, 0.5, 0.2], [0.3, 0.4, 0.0]
    sample = (
        2
        * np.cov(x3, y3)[0, 1]
        / (np.var(x3, ddof=1) + np.var(y3, ddof=1) + (np.mean(x3) - np.mean(y3)) ** 2)
    )
    assert ccc(x3, y3) == pytest.approx(reference_ccc(x3, y3))
    assert ccc(x3, y3) != pytest.approx(sample)


def test_ccc_mask_removes_invalid_frames():
    y = np.array([0.1, -5.0, 0.4, 0.9, -5.0, -0.3])
    x = np.array([0.0, np.nan, 0.5, 0.7, 3.0, -0.2])
    keep = y != -5
    assert ccc(x, y, keep) == pytest.approx(reference_ccc(x[keep], y[keep]))
    with pytest.raises(ValueError, match="non-finite"):
        ccc(x, y)
    with pytest.raises(ValueError, match="no frames left"):
        ccc(x, y, np.zeros(6, bool))
    with pytest.raises(ValueError, match="differ in length"):
        ccc([1, 2], [1, 2, 3])
    assert np.isnan(ccc([0.5, 0.5], [0.5, 0.5]))  # 0 / 0


def test_pooled_ccc_is_not_the_mean_of_per_video_cccs():
    rng = np.random.default_rng(2)
    y1, y2 = rng.uniform(-1, 0, 100), rng.uniform(0, 1, 100)
    x1, x2 = y1 + 0.3, y2 - 0.3
    pooled = ccc(np.r_[x1, x2], np.r_[y1, y2])
    assert pooled == pytest.approx(reference_ccc(np.r_[x1, x2], np.r_[y1, y2]))
    assert pooled != pytest.approx((ccc(x1, y1) + ccc(x2, y2)) / 2, abs=1e-3)


def test_va_score_with_frame_and_dimension_masks():
    rng = np.random.default_rng(3)
    true = rng.uniform(-1, 1, (300, 2))
    pred = true * [0.8, 0.5] + 0.2 * rng.standard_normal((300, 2))
    true[::7] = -5  # invalid frames
    keep = (true != -5).all(axis=1)
    s = va_score(pred, true, keep)
    v = reference_ccc(pred[keep, 0], true[keep, 0])
    a = reference_ccc(pred[keep, 1], true[keep, 1])
    assert s["valence"] == pytest.approx(v)
    assert s["arousal"] == pytest.approx(a)
    assert s["mean"] == pytest.approx((v + a) / 2)
    per_dim = va_score(pred, true, np.stack([keep, keep], axis=1))
    assert per_dim == pytest.approx(s)
    with pytest.raises(ValueError, match=r"expected \(n, 2\)"):
        va_score(pred[:, 0], true[:, 0])


def test_expr_f1_hand_case():
    # class 0: P = 1, R = 1/2 -> F1 2/3; class 1: P = 2/3, R = 1 -> 0.8; classes 2-7: 0
    s = expr_f1([0, 1, 1, 1], [0, 0, 1, 1])
    assert s["f1"] == pytest.approx((2 / 3 + 0.8) / 8)
    assert s["per_class"][:2] == pytest.approx([2 / 3, 0.8])
    assert s["per_class"][2:] == [0.0] * 6
    assert s["accuracy"] == pytest.approx(0.75)


def test_expr_f1_matches_sklearn_with_masks_and_scores():
    rng = np.random.default_rng(4)
    true = rng.choice(8, 1000, p=[0.3, 0.03, 0.02, 0.02, 0.16, 0.13, 0.06, 0.28])
    pred = np.where(rng.random(1000) < 0.6, true, rng.integers(0, 8, 1000))
    true[rng.random(1000) < 0.1] = -1
    keep = true != -1
    ref = f1_score(true[keep], pred[keep], labels=range(8), average="macro", zero_division=0)
    s = expr_f1(pred, true, keep)
    assert s["f1"] == pytest.approx(ref)
    assert s["accuracy"] == pytest.approx(np.mean(pred[keep] == true[keep]))
    scores = np.eye(8)[pred] + 0.01 * rng.random((1000, 8))
    assert expr_f1(scores, true, keep)["f1"] == pytest.approx(ref)
    with pytest.raises(ValueError, match="labels outside 0..7"):
        expr_f1(pred, true)


def test_confusion_matches_sklearn():
    true = np.array([0, 0, 7, 3, 3, -1, 5])
    pred = np.array([0, 7, 7, 3, 4, 2, 5])
    keep = true >= 0
    c = confusion(pred, true, keep)
    assert c.shape == (8, 8)
    np.testing.assert_array_equal(
        c, confusion_matrix(true[keep], pred[keep], labels=list(range(8)))
    )
    assert c[0, 7] == 1 and c[3, 4] == 1 and c.sum() == 6
