"""Windowing, normalisation, spreading back and smoothing, checked on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from emofeat_recipes.postprocess import default_windows, expr_argmax, search_smoothing, smooth
from emofeat_recipes.windows import (
    Normaliser,
    fit_normaliser,
    make_windows,
    resample_indices,
    seconds_to_frames,
    spread_back,
    stack_windows,
    to_label_frames,
)

# ----------------------------------------------------------------------------- resampling


@pytest.mark.parametrize(
    "fps, step",
    [(30.0, 6), (30000 / 1001, 6), (25.0, 5), (15.0, 3), (7.5, 2), (6.0, 1), (4.0, 1)],
)
def test_resample_every_round_fps_over_target_frame(fps, step):
    np.testing.assert_array_equal(resample_indices(20, fps, 5.0), np.arange(0, 20, step))


def test_resample_edge_cases():
    assert resample_indices(0, 30, 5).shape == (0,)
    # low-fps video (below the target): every frame is kept, none invented
    np.testing.assert_array_equal(resample_indices(4, 3.0, 5.0), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="frame rates"):
        resample_indices(10, 0.0, 5.0)
    with pytest.raises(ValueError, match="n_frames"):
        resample_indices(-1, 30.0, 5.0)
    assert seconds_to_frames(6.0, 5.0) == 30 and seconds_to_frames(4.0, 5.0) == 20


# ----------------------------------------------------------------------------- windows


def test_make_windows_hand_case():
    np.testing.assert_array_equal(
        make_windows(100, 30, 15),
        [[0, 30], [15, 45], [30, 60], [45, 75], [60, 90], [70, 100]],  # last shifted to end at n
    )
    np.testing.assert_array_equal(make_windows(60, 30, 15), [[0, 30], [15, 45], [30, 60]])
    np.testing.assert_array_equal(make_windows(30, 30, 15), [[0, 30]])
    np.testing.assert_array_equal(make_windows(7, 30, 15), [[0, 30]])  # short: one padded window
    assert make_windows(0, 30, 15).shape == (0, 2)
    with pytest.raises(ValueError, match="length and hop"):
        make_windows(10, 0, 1)
    with pytest.raises(ValueError, match="uncovered"):
        make_windows(10, 4, 9)


@pytest.mark.parametrize("length, hop", [(30, 15), (20, 10), (7, 3), (5, 5), (1, 1)])
def test_make_windows_cover_every_frame(length, hop):
    for n in range(1, 120):
        w = make_windows(n, length, hop)
        assert ((w[:, 1] - w[:, 0]) == length).all()
        covered = np.zeros(n, bool)
        for a, b in w:
            covered[a:b] = True
        assert covered.all(), (n, length, hop)
        assert w[:, 0].min() == 0 and (w[:, 0] >= 0).all()
        if n >= length:
            assert w[:, 1].max() == n  # no window runs past the end of a long sequence


def test_stack_windows_pads_and_masks():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)  # frame k = [2k, 2k+1]
    mask = np.array([True, True, False, True, True])
    w = make_windows(5, 3, 2)
    np.testing.assert_array_equal(w, [[0, 3], [2, 5]])
    data, valid = stack_windows(x, mask, w, 3)
    np.testing.assert_array_equal(data[1], [[4, 5], [6, 7], [8, 9]])
    np.testing.assert_array_equal(valid, [[True, True, False], [False, True, True]])
    # a short sequence: one window, padding is 0 and invalid
    data, valid = stack_windows(x[:2], None, make_windows(2, 4, 2), 4)
    np.testing.assert_array_equal(data[0], [[0, 1], [2, 3], [0, 0], [0, 0]])
    np.testing.assert_array_equal(valid[0], [True, True, False, False])


def test_spread_back_averages_overlaps_hand_case():
    w = np.array([[0, 3], [2, 5]])
    preds = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])[:, :, None]
    out = spread_back(preds, w, 5)
    np.testing.assert_allclose(out[:, 0], [1.0, 2.0, 6.5, 20.0, 30.0])
    # one value per window (Kernel ELM): covers the whole span
    out = spread_back(np.array([[1.0, -1.0], [3.0, 1.0]]), w, 5)
    np.testing.assert_allclose(out, [[1, -1], [1, -1], [2, 0], [3, 1], [3, 1]])
    # uncovered frames are NaN; padding past n is ignored; valid excludes positions
    out = spread_back(np.ones((1, 2, 1)), np.array([[0, 2]]), 4)
    np.testing.assert_array_equal(np.isnan(out[:, 0]), [False, False, True, True])
    out = spread_back(preds, w, 5, valid=np.array([[True, True, False], [True, True, True]]))
    np.testing.assert_allclose(out[:, 0], [1.0, 2.0, 10.0, 20.0, 30.0])
    out = spread_back(np.arange(4.0)[None, :, None], np.array([[0, 4]]), 2)
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0])


def test_to_label_frames_interpolates_and_repeats():
    idx = np.array([0, 6, 12])
    pred = np.array([[0.0, 1.0], [3.0, 1.0], [6.0, -1.0]])
    out = to_label_frames(pred, idx, 16)
    np.testing.assert_allclose(out[:13, 0], np.arange(13) / 2)
    np.testing.assert_allclose(out[13:, 0], 6.0)  # past the last prediction: repeat it
    np.testing.assert_allclose(out[6:13, 1], 1 - (np.arange(6, 13) - 6) / 3)
    # NaN samples take the nearest sample's value (tie -> earlier), then interpolation
    pred = np.array([0.0, np.nan, 6.0, np.nan])
    out = to_label_frames(pred, np.array([0, 6, 12, 18]), 20)
    expected = np.interp(np.arange(20), [0, 6, 12, 18], [0.0, 0.0, 6.0, 6.0])
    np.testing.assert_allclose(out, expected)
    # samples starting after frame 0: earlier frames take the first value
    np.testing.assert_allclose(
        to_label_frames(np.array([2.0, 4.0]), np.array([3, 5]), 7), [2, 2, 2, 2, 3, 4, 4]
    )
    with pytest.raises(ValueError, match="no finite"):
        to_label_frames(np.full(3, np.nan), np.arange(3), 5)
    with pytest.raises(ValueError, match="increasing"):
        to_label_frames(np.ones(3), np.array([0, 2, 2]), 5)


def test_window_pipeline_recovers_a_linear_signal():
    """resample -> window -> identity model -> spread back -> label frames is lossless here."""
    n, fps = 301, 30000 / 1001
    signal = np.stack([np.linspace(-1, 1, n), np.linspace(1, 0, n)], axis=1)
    idx = resample_indices(n, fps, 5.0)
    x = signal[idx]
    w = make_windows(len(x), 30, 15)
    data, valid = stack_windows(x, None, w, 30)
    per_frame = spread_back(data, w, len(x), valid)
    out = to_label_frames(per_frame, idx, n + 2)  # label file 2 frames longer than the video
    np.testing.assert_allclose(out[: idx[-1] + 1], signal[: idx[-1] + 1], atol=1e-12)
    np.testing.assert_allclose(out[idx[-1] :], np.repeat(signal[idx[-1]][None], n + 2 - idx[-1], 0))


# ----------------------------------------------------------------------------- normalisation


def test_per_video_minmax_hand_case_and_mask():
    x = np.array([[0.0, 5.0], [5.0, 5.0], [100.0, 9.0], [10.0, 5.0]])
    mask = np.array([True, True, False, True])
    out = Normaliser("minmax").apply(x, mask)  # alias of per_video_minmax
    np.testing.assert_allclose(out, [[0, 0], [0.5, 0], [0, 0], [1, 0]])  # constant dim -> 0
    z = Normaliser("per_video_zscore").apply(x, mask)
    ref = (x[mask, 0] - x[mask, 0].mean()) / x[mask, 0].std()
    np.testing.assert_allclose(z[mask, 0], ref, rtol=1e-6)
    x_nan = x.copy()
    x_nan[1, 0] = np.nan
    out = Normaliser("per_video_minmax").apply(x_nan, None)
    assert np.isfinite(out).all() and out[1, 0] == 0.0


@pytest.mark.parametrize(
    "kind, scaler", [("global_zscore", StandardScaler), ("global_minmax", MinMaxScaler)]
)
def test_global_normaliser_matches_sklearn(kind, scaler):
    rng = np.random.default_rng(0)
    train = [rng.normal(i, 1 + i, size=(50 + 10 * i, 3)) for i in range(3)]
    masks = [rng.random(len(a)) > 0.2 for a in train]
    norm = fit_normaliser(train, masks, kind)
    ref = scaler().fit(np.concatenate([a[m] for a, m in zip(train, masks, strict=True)]))
    test = rng.normal(0, 2, size=(20, 3))
    np.testing.assert_allclose(norm.apply(test), ref.transform(test), rtol=1e-5, atol=1e-6)


def test_normaliser_errors():
    with pytest.raises(ValueError, match="unknown normalisation"):
        Normaliser("l2")
    with pytest.raises(ValueError, match="fit_normaliser"):
        Normaliser("global_zscore").apply(np.ones((3, 2)))
    with pytest.raises(ValueError, match="differ in dimension"):
        fit_normaliser([np.ones((3, 2)), np.ones((3, 4))], kind="global_minmax")
    np.testing.assert_array_equal(
        Normaliser("none").apply(np.ones((2, 2)), [True, False]), [[1, 1], [0, 0]]
    )


# ----------------------------------------------------------------------------- smoothing


@pytest.mark.parametrize("window", [3, 4, 7, 15])
def test_smooth_equals_normalised_hamming_convolution(window):
    rng = np.random.default_rng(window)
    x = rng.normal(size=(80, 2))
    out = smooth(x, window, "hamming")
    w = np.hamming(window) / np.hamming(window).sum()
    half = window // 2 + 1  # frames whose kernel lies fully inside the sequence
    for c in range(2):
        ref = np.convolve(x[:, c], w, mode="same")
        np.testing.assert_allclose(out[half:-half, c], ref[half:-half], rtol=1e-12)
    # edges: the kernel part on existing frames is renormalised (a constant stays constant)
    np.testing.assert_allclose(smooth(np.full((20, 1), 3.0), window), 3.0)
    ref0 = (x[: window - window // 2, 0] * w[window // 2 :]).sum() / w[window // 2 :].sum()
    np.testing.assert_allclose(out[0, 0], ref0)


def test_smooth_mean_nan_and_identity():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    np.testing.assert_allclose(smooth(x, 3, "mean"), [1.5, 1.5, 3.0, 4.5, 4.5])
    np.testing.assert_array_equal(smooth(x, 1), x)
    assert np.isnan(smooth(np.array([np.nan, np.nan, np.nan, 1.0]), 3, "mean")[0])
    with pytest.raises(ValueError, match="unknown smoothing"):
        smooth(x, 3, "gauss")


def _ccc(y: np.ndarray, p: np.ndarray) -> float:
    """Reference CCC (the ABAW definition): population variances, pooled frames."""
    y, p = np.ravel(y), np.ravel(p)
    cov = ((y - y.mean()) * (p - p.mean())).mean()
    return float(2 * cov / (y.var() + p.var() + (y.mean() - p.mean()) ** 2))


def test_search_smoothing_finds_a_useful_window():
    rng = np.random.default_rng(1)
    preds, labels = {}, {}
    for i in range(3):
        t = np.arange(400 + 50 * i)
        y = np.sin(t / 25.0 + i)[:, None]  # slow label, fast prediction noise
        labels[f"v{i}"] = y
        preds[f"v{i}"] = y + rng.normal(0, 0.6, size=y.shape)
    best, scores = search_smoothing(preds, labels, _ccc, fps=30)
    assert set(scores) == set(default_windows(30)) and 1 in scores
    assert best > 5 and scores[best] > scores[1] + 0.1
    assert scores[best] == max(scores.values())
    with pytest.raises(ValueError, match="no dev labels"):
        search_smoothing({"x": np.ones((3, 1))}, {}, _ccc)


def test_expr_argmax():
    s = np.array([[0.1, 0.7, 0.2], [np.nan, 0.1, 0.3], [5.0, -1.0, 0.0]])
    np.testing.assert_array_equal(expr_argmax(s), [1, 2, 0])
    with pytest.raises(ValueError, match="no finite score"):
        expr_argmax(np.array([[np.nan, np.nan]]))
