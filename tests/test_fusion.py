"""Decision-level fusion: Dirichlet weight search, entropy gating, random-forest stacking."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import f1_score

from emofeat_recipes.fusion import (
    apply_weights,
    dirichlet_search,
    entropy_gate,
    normalised_entropy,
    rf_stacking,
    search_entropy_threshold,
)


def _ccc(y: np.ndarray, p: np.ndarray) -> float:
    """Reference CCC of two 1-D arrays (the ABAW definition: population variances)."""
    cov = ((y - y.mean()) * (p - p.mean())).mean()
    return float(2 * cov / (y.var() + p.var() + (y.mean() - p.mean()) ** 2))


def _f1(y: np.ndarray, scores: np.ndarray) -> float:
    return float(f1_score(y, scores.argmax(1), average="macro", labels=range(8), zero_division=0))


def test_apply_weights_hand_case():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[10.0, 20.0], [30.0, 40.0]])
    w = np.array([[0.5, 1.0], [0.5, 0.0]])
    np.testing.assert_allclose(apply_weights([a, b], w), [[5.5, 2.0], [16.5, 4.0]])
    np.testing.assert_allclose(apply_weights([a, b], np.array([0.25, 0.75])), 0.25 * a + 0.75 * b)
    with pytest.raises(ValueError, match="do not match"):
        apply_weights([a, b], np.ones((3, 2)))
    with pytest.raises(ValueError, match="one shape"):
        apply_weights([a, b[:1]], np.ones((2, 2)))


def test_dirichlet_per_dimension_beats_single_models_with_complementary_signal():
    rng = np.random.default_rng(0)
    n = 600
    a, b = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    y = a + b  # each model sees half of the signal
    m1 = a + rng.normal(0, 0.3, (n, 2))
    m2 = b + rng.normal(0, 0.3, (n, 2))
    w, score = dirichlet_search([m1, m2], y, _ccc, draws=300, per="dimension")
    assert w.shape == (2, 2)
    np.testing.assert_allclose(w.sum(0), 1.0)
    fused = apply_weights([m1, m2], w)
    per_col = [_ccc(y[:, c], fused[:, c]) for c in range(2)]
    assert score == pytest.approx(np.mean(per_col))
    best_single = max(np.mean([_ccc(y[:, c], m[:, c]) for c in range(2)]) for m in (m1, m2))
    assert score > best_single + 0.1


def test_dirichlet_per_dimension_picks_the_right_model_per_column():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(300, 2))
    noise = rng.normal(size=(300, 2))
    m1 = np.stack([y[:, 0], noise[:, 1]], axis=1)  # perfect valence, useless arousal
    m2 = np.stack([noise[:, 0], y[:, 1]], axis=1)
    w, score = dirichlet_search([m1, m2], y, _ccc, draws=50)
    np.testing.assert_array_equal(w, [[1.0, 0.0], [0.0, 1.0]])  # the one-hot corners
    assert score == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("per", ["dimension", "global"])
def test_dirichlet_never_worse_than_best_single_model(seed, per):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(200, 2))
    models = [y * rng.uniform(0, 1) + rng.normal(0, s, (200, 2)) for s in (0.5, 1.0, 2.0)]

    def va(yt, p):
        return float(np.mean([_ccc(yt[:, c], p[:, c]) for c in range(2)]))

    metric = _ccc if per == "dimension" else va
    _, score = dirichlet_search(models, y, metric, draws=2, seed=seed, per=per)
    assert score >= max(va(y, m) for m in models) - 1e-12


def test_dirichlet_per_class_for_expr():
    rng = np.random.default_rng(2)
    n = 1600
    y = rng.integers(0, 8, n)
    onehot = np.eye(8)[y]
    # model 1 knows classes 0-3, model 2 knows classes 4-7; elsewhere they guess
    p1 = softmax(rng.normal(0, 1, (n, 8)) + 3 * onehot * (y < 4)[:, None], axis=1)
    p2 = softmax(rng.normal(0, 1, (n, 8)) + 3 * onehot * (y >= 4)[:, None], axis=1)
    w, score = dirichlet_search([p1, p2], y, _f1, draws=200, per="class", seed=3)
    assert w.shape == (2, 8)
    np.testing.assert_allclose(w.sum(0), 1.0)
    assert score == pytest.approx(_f1(y, apply_weights([p1, p2], w)))
    assert score > max(_f1(y, p1), _f1(y, p2)) + 0.2
    assert score >= _f1(y, (p1 + p2) / 2)  # the plain average is a candidate
    # same seed, same result; the mask drops frames
    w2, _ = dirichlet_search([p1, p2], y, _f1, draws=200, per="class", seed=3)
    np.testing.assert_array_equal(w, w2)
    _, s_masked = dirichlet_search([p1, p2], y, _f1, draws=20, per="class", mask=y != 0)
    assert 0 < s_masked < 1
    with pytest.raises(ValueError, match="per must be"):
        dirichlet_search([p1, p2], y, _f1, per="frame")


def test_normalised_entropy_against_scipy():
    rng = np.random.default_rng(4)
    p = softmax(rng.normal(size=(50, 8)), axis=1)
    np.testing.assert_allclose(normalised_entropy(p), entropy(p, axis=1) / np.log(8))
    np.testing.assert_allclose(normalised_entropy(np.eye(8)), 0.0)
    np.testing.assert_allclose(normalised_entropy(np.full((1, 8), 1 / 8)), 1.0)
    with pytest.raises(ValueError, match="softmax"):
        normalised_entropy(rng.normal(size=(3, 8)))


def test_entropy_gate_hand_case():
    audio = np.array([[0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3]])
    other = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    out = entropy_gate(audio, other, threshold=0.5)
    np.testing.assert_allclose(out[0], (audio[0] + other[0]) / 2)  # confident audio: mixed in
    np.testing.assert_allclose(out[1], other[1])  # uniform audio: gated off
    np.testing.assert_allclose(entropy_gate(audio, other, 1.0), (audio + other) / 2)
    np.testing.assert_allclose(entropy_gate(audio, other, -1.0), other)
    np.testing.assert_allclose(
        entropy_gate(audio, other, 1.0, audio_weight=0.2), 0.2 * audio + 0.8 * other
    )


def test_entropy_threshold_search_gates_uncertain_audio():
    rng = np.random.default_rng(5)
    n = 2000
    y = rng.integers(0, 8, n)
    onehot = np.eye(8)[y]
    wrong = np.eye(8)[(y + 1 + rng.integers(0, 7, n)) % 8]
    speech = rng.random(n) < 0.5
    other = softmax(rng.normal(0, 0.5, (n, 8)) + 1.2 * onehot, axis=1)
    # audio: confident and right on speech; near-uniform but leaning wrong elsewhere
    audio_logits = np.where(speech[:, None], 5 * onehot, 1.5 * wrong) + rng.normal(0, 0.2, (n, 8))
    audio = softmax(audio_logits, axis=1)
    best, scores = search_entropy_threshold(audio, other, y, _f1)
    assert -1.0 in scores and 1.0 in scores
    assert 0.1 < best < 1.0
    assert scores[best] > scores[1.0] + 0.05  # better than never gating
    assert scores[best] > scores[-1.0] + 0.05  # better than dropping audio
    assert scores[best] == pytest.approx(_f1(y, entropy_gate(audio, other, best)))


def _expected_rf(forest, configs, x, y, seed, oob):
    """The stacker's choice recomputed with sklearn directly."""
    fitted = [
        forest(**cfg, bootstrap=True, oob_score=oob, random_state=seed).fit(x, y) for cfg in configs
    ]
    scores = [m.oob_score_ for m in fitted]
    return int(np.argmax(scores)), scores, fitted


def test_rf_stacking_va_selects_by_oob_score():
    rng = np.random.default_rng(6)
    n = 300
    y = rng.uniform(-1, 1, (n, 2))
    m1 = y + rng.normal(0, 0.3, (n, 2))
    m2 = np.tanh(2 * y) + rng.normal(0, 0.3, (n, 2))  # a non-linear view of the same signal
    configs = [
        {"n_estimators": 15, "max_depth": 2},
        {"n_estimators": 15, "max_depth": 8, "min_samples_leaf": 3},
        {"n_estimators": 15, "max_depth": None},
    ]
    st = rf_stacking([m1, m2], y, "va", configs=configs, seed=0)
    x = np.concatenate([m1, m2], axis=1)
    k, scores, fitted = _expected_rf(RandomForestRegressor, configs, x, y, 0, True)
    np.testing.assert_allclose(st.oob_scores, scores)
    assert st.config == configs[k]
    np.testing.assert_allclose(st.predict([m1, m2]), fitted[k].predict(x))
    assert st.predict([m1, m2]).shape == (n, 2)
    with pytest.raises(ValueError, match="fitted on 2 models"):
        st.predict([m1])


def test_rf_stacking_expr_with_custom_oob_metric():
    rng = np.random.default_rng(7)
    n = 400
    y = rng.integers(0, 7, n)  # class 7 never appears on dev
    onehot = np.eye(8)[y]
    p1 = softmax(rng.normal(0, 1, (n, 8)) + 2 * onehot, axis=1)
    p2 = softmax(rng.normal(0, 1, (n, 8)) + 2 * onehot, axis=1)
    configs = [{"n_estimators": 15, "max_depth": 3}, {"n_estimators": 15, "min_samples_leaf": 2}]

    def macro_f1(yt, yp):
        return f1_score(yt, yp, average="macro")

    st = rf_stacking([p1, p2], y, "expr", configs=configs, seed=1, oob_metric=macro_f1)
    x = np.concatenate([p1, p2], axis=1)
    k, scores, fitted = _expected_rf(RandomForestClassifier, configs, x, y, 1, macro_f1)
    np.testing.assert_allclose(st.oob_scores, scores)
    assert st.config == configs[k]
    np.testing.assert_array_equal(st.predict([p1, p2]), fitted[k].predict(x))
    proba = st.predict_proba([p1, p2])
    assert proba.shape == (n, 8)
    np.testing.assert_allclose(proba[:, 7], 0.0)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    with pytest.raises(ValueError, match="task must be"):
        rf_stacking([p1], y, "au")
