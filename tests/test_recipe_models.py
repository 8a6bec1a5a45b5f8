"""Recipe models (Transformer, GRU, cross-attention fusion) and losses, on CPU.

References are independent: the CCC formula and the focal/label-smoothed cross-entropy written
here in NumPy, torch's own F.cross_entropy, hand-counted class weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from emofeat_recipes.losses import (
    FocalLoss,
    build_loss,
    ccc_loss,
    inverse_frequency_weights,
    max_count_weights,
    weighted_ce,
)
from emofeat_recipes.models import (
    CrossAttentionFusion,
    SinusoidalPositions,
    TemporalGRU,
    TemporalTransformer,
    build_model,
)
from emofeat_recipes.train import TrainConfig, Trainer

torch.set_num_threads(1)


def ccc_np(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient, population statistics."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def pad_with_garbage(x: torch.Tensor, extra: int, fill: float = float("nan")) -> torch.Tensor:
    tail = torch.full((x.shape[0], extra, x.shape[2]), fill)
    return torch.cat([x, tail], dim=1)


# -- models: shapes and masks ------------------------------------------------------------------


def test_sinusoidal_positions_match_formula():
    pos = SinusoidalPositions(6)
    out = pos(torch.zeros(1, 50, 6))[0].numpy()
    p = np.arange(50)[:, None]
    for i in range(3):
        angle = p[:, 0] / 10000 ** (2 * i / 6)
        np.testing.assert_allclose(out[:, 2 * i], np.sin(angle), atol=1e-6)
        np.testing.assert_allclose(out[:, 2 * i + 1], np.cos(angle), atol=1e-6)
    # a longer sequence later extends the table without changing the first positions
    longer = pos(torch.zeros(1, 80, 6))[0].numpy()
    np.testing.assert_allclose(longer[:50], out, atol=1e-7)


@pytest.mark.parametrize("output", ["linear", "tanh"])
def test_transformer_shapes_and_padding_does_not_change_valid_frames(output):
    torch.manual_seed(0)
    model = TemporalTransformer(10, 3, d_model=32, layers=2, heads=4, ff=64, output=output).eval()
    x = torch.randn(4, 12, 10)
    y = model(x)
    assert y.shape == (4, 12, 3)
    if output == "tanh":
        assert y.abs().max() <= 1
    # the same windows padded with 7 NaN frames (as the store marks missing features)
    mask = torch.zeros(4, 19, dtype=torch.bool)
    mask[:, :12] = True
    y_pad = model(pad_with_garbage(x, 7), mask)
    assert torch.isfinite(y_pad).all()
    torch.testing.assert_close(y_pad[:, :12], y, atol=1e-5, rtol=1e-5)


def test_transformer_invalid_frames_inside_window_are_ignored():
    torch.manual_seed(1)
    model = TemporalTransformer(5, 2, d_model=16, layers=1, heads=2, ff=16).eval()
    x = torch.randn(2, 10, 5)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[:, 3:5] = False
    a = model(x, mask)
    x2 = x.clone()
    x2[:, 3:5] = 1e3  # whatever sits in invalid frames must not leak into valid ones
    b = model(x2, mask)
    torch.testing.assert_close(a[mask], b[mask])


def test_masked_batchnorm_statistics_ignore_padding_in_training():
    """In train mode BatchNorm statistics come from valid frames only (dropout off)."""
    torch.manual_seed(2)
    model = TemporalTransformer(6, 2, d_model=16, layers=1, heads=2, ff=16, dropout=0.0).train()
    x = torch.randn(3, 8, 6) * 5 + 3
    y = model(x)
    mask = torch.zeros(3, 14, dtype=torch.bool)
    mask[:, :8] = True
    y_pad = model(pad_with_garbage(x, 6, fill=100.0), mask)
    torch.testing.assert_close(y_pad[:, :8], y, atol=1e-5, rtol=1e-5)


def test_fully_masked_window_gives_finite_outputs_and_gradients():
    model = TemporalTransformer(4, 2, d_model=16, layers=1, heads=2, ff=16)
    x = torch.randn(2, 6, 4)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1] = False
    y = model(x, mask)
    assert torch.isfinite(y).all()
    ccc_loss(y, torch.rand(2, 6, 2), mask).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gru_shapes_and_trailing_padding(bidirectional):
    torch.manual_seed(3)
    model = TemporalGRU(7, 8, hidden=16, layers=2, bidirectional=bidirectional).eval()
    x = torch.randn(3, 9, 7)
    y = model(x)
    assert y.shape == (3, 9, 8)
    mask = torch.zeros(3, 15, dtype=torch.bool)
    mask[:, :9] = True
    y_pad = model(pad_with_garbage(x, 6), mask)
    torch.testing.assert_close(y_pad[:, :9], y, atol=1e-6, rtol=1e-5)
    # windows of different valid lengths in one batch: each equals its own unpadded run
    mask2 = torch.ones(3, 9, dtype=torch.bool)
    mask2[0, 5:] = False
    y_var = model(x, mask2)
    torch.testing.assert_close(y_var[0, :5], model(x[:1, :5])[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(("pool", "heads"), [("mean+std", 8), ("mean", 16), ("concat", 8)])
def test_fusion_shapes_pools_and_padding(pool, heads):
    torch.manual_seed(4)
    dims = {"pdem": 24, "face_cnn": 12, "face.expr": 5}
    model = CrossAttentionFusion(dims, "pdem", d=32, heads=heads, pool=pool, out_dim=8).eval()
    xs = {k: torch.randn(2, 10, d) for k, d in dims.items()}
    y = model(xs)
    assert y.shape == (2, 10, 8)
    mask = torch.zeros(2, 13, dtype=torch.bool)
    mask[:, :10] = True
    y_pad = model({k: pad_with_garbage(v, 3) for k, v in xs.items()}, mask)
    torch.testing.assert_close(y_pad[:, :10], y, atol=1e-5, rtol=1e-5)


def test_fusion_per_stream_masks():
    """A video stream missing on some frames (no face) is left out of attention and pooling."""
    torch.manual_seed(5)
    dims = {"audio": 6, "face": 4}
    model = CrossAttentionFusion(dims, "audio", d=16, heads=2, out_dim=2).eval()
    xs = {k: torch.randn(1, 8, d) for k, d in dims.items()}
    face_mask = torch.ones(1, 8, dtype=torch.bool)
    face_mask[0, 2:4] = False
    masks = {"audio": torch.ones(1, 8, dtype=torch.bool), "face": face_mask}
    a = model(xs, masks)
    xs2 = {"audio": xs["audio"], "face": xs["face"].clone()}
    xs2["face"][0, 2:4] = float("nan")
    b = model(xs2, masks)
    torch.testing.assert_close(a, b)


def test_build_model_specs_and_errors():
    dims = {"a": 5, "b": 3}
    xs = {"a": torch.randn(2, 4, 5), "b": torch.randn(2, 4, 3)}
    for spec in (
        {"type": "transformer", "layers": 1, "d_model": 16, "heads": 2, "ff": 16},
        {"type": "gru", "hidden": 8, "bidirectional": True},
        {"type": "fusion", "audio": "a", "d": 16, "heads": 4, "pool": "mean"},
    ):
        assert build_model(spec, dims, 8, "linear")(xs, None).shape == (2, 4, 8)
    with pytest.raises(ValueError, match="'dropuot'"):
        build_model({"type": "transformer", "dropuot": 0.1}, dims, 2, "tanh")
    with pytest.raises(ValueError, match="model type"):
        build_model({"type": "lstm"}, dims, 2)
    with pytest.raises(ValueError, match="'layers'.*integer"):
        build_model({"type": "gru", "layers": "two"}, dims, 2)
    with pytest.raises(ValueError, match="audio"):
        build_model({"type": "fusion"}, dims, 2)
    with pytest.raises(ValueError, match="'pdem' is not among"):
        build_model({"type": "fusion", "audio": "pdem"}, dims, 2)
    with pytest.raises(ValueError, match="output"):
        build_model({"type": "gru"}, dims, 2, output="sigmoid")
    with pytest.raises(ValueError, match=r"lacks streams \['b'\]"):
        build_model({"type": "gru"}, dims, 2)({"a": xs["a"]}, None)


# -- models learn a planted task --------------------------------------------------------------


def planted(n: int, seed: int, frames: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs: white noise (n, frames, 6); targets: tanh of 5-frame moving averages of two
    input features (so the model must look at neighbouring frames)."""
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, frames, 6)).astype(np.float32)
    kernel = np.ones(5) / 5
    s = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, x[..., :2])
    y = np.tanh(np.stack([1.5 * s[..., 0] + 0.5 * s[..., 1], 1.5 * s[..., 1]], axis=-1))
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))


@pytest.mark.parametrize(
    ("spec", "lr"),
    [
        (
            {
                "type": "transformer",
                "layers": 1,
                "d_model": 32,
                "heads": 4,
                "ff": 64,
                "dropout": 0.0,
            },
            1e-2,
        ),
        ({"type": "gru", "layers": 1, "hidden": 32, "bidirectional": True}, 3e-3),
    ],
)
def test_temporal_models_learn_planted_task(tmp_path, spec, lr):
    xt, yt = planted(256, seed=0)
    xd, yd = planted(64, seed=1)
    batches = [{"x": {"f": xt[i : i + 32]}, "y": yt[i : i + 32]} for i in range(0, 256, 32)]
    torch.manual_seed(0)
    model = build_model(spec, {"f": 6}, 2, "tanh")

    def evaluate(m):
        p = m({"f": xd}, None).numpy().reshape(-1, 2)
        t = yd.numpy().reshape(-1, 2)
        return {"score": float(np.mean([ccc_np(p[:, i], t[:, i]) for i in range(2)]))}

    cfg = TrainConfig(epochs=30, lr=lr, warmup_steps=10, patience=30, quiet=True)
    result = Trainer(model, lambda out, b: ccc_loss(out, b["y"]), cfg, tmp_path, evaluate).fit(
        batches
    )
    assert result["best_score"] > 0.9, result["history"][-1]
    # fit() leaves the best epoch's weights in the model, in eval mode
    assert not model.training
    with torch.no_grad():
        assert evaluate(model)["score"] == pytest.approx(result["best_score"], abs=1e-6)


def test_fusion_learns_signal_split_between_streams(tmp_path):
    """Valence in the 'video' stream, arousal in the 'audio' stream: fusion needs both."""
    g = np.random.default_rng(7)

    def make(n):
        audio = g.normal(size=(n, 20, 8)).astype(np.float32)
        video = g.normal(size=(n, 20, 4)).astype(np.float32)
        y = np.tanh(np.stack([video[..., 0] + 0.5 * video[..., 1], audio[..., 0]], -1))
        return {"audio": torch.from_numpy(audio), "video": torch.from_numpy(video)}, (
            torch.from_numpy(y.astype(np.float32))
        )

    xt, yt = make(192)
    xd, yd = make(48)
    batches = [
        {"x": {k: v[i : i + 32] for k, v in xt.items()}, "y": yt[i : i + 32]}
        for i in range(0, 192, 32)
    ]
    torch.manual_seed(0)
    model = build_model(
        {"type": "fusion", "audio": "audio", "d": 32, "heads": 4, "rounds": 1, "dropout": 0.0},
        {"audio": 8, "video": 4},
        2,
        "tanh",
    )

    def evaluate(m):
        p = m(xd, None).numpy().reshape(-1, 2)
        t = yd.numpy().reshape(-1, 2)
        c = [ccc_np(p[:, i], t[:, i]) for i in range(2)]
        return {"score": float(np.mean(c)), "valence": c[0], "arousal": c[1]}

    cfg = TrainConfig(epochs=20, lr=3e-3, warmup_steps=10, patience=20, quiet=True)
    result = Trainer(model, lambda out, b: ccc_loss(out, b["y"]), cfg, tmp_path, evaluate).fit(
        batches
    )
    best = result["best_metrics"]
    assert best["valence"] > 0.85 and best["arousal"] > 0.85, best


# -- losses -------------------------------------------------------------------------------------


def test_ccc_loss_equals_numpy_formula_per_dimension():
    g = np.random.default_rng(0)
    target = g.uniform(-1, 1, size=(3, 40, 2))
    pred = 0.6 * target + g.normal(0, 0.3, size=target.shape) + 0.1
    mask = g.random((3, 40)) > 0.2
    got = ccc_loss(torch.tensor(pred), torch.tensor(target), torch.tensor(mask)).item()
    p, t = pred[mask], target[mask]
    expected = sum(1 - ccc_np(p[:, d], t[:, d]) for d in range(2))
    assert got == pytest.approx(expected, rel=1e-6)
    # (N, 2) input with no mask: pooled over all frames
    got_flat = ccc_loss(torch.tensor(p), torch.tensor(t)).item()
    assert got_flat == pytest.approx(expected, rel=1e-6)
    assert ccc_loss(torch.tensor(t), torch.tensor(t)).item() == pytest.approx(0, abs=1e-6)


def test_ccc_loss_is_differentiable():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(30, 2, dtype=torch.float64, generator=g, requires_grad=True)
    target = torch.randn(30, 2, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda p: ccc_loss(p, target), (pred,))


def test_focal_gamma_zero_equals_weighted_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 25, 8, generator=g)
    target = torch.randint(0, 8, (4, 25), generator=g)
    target[0, :5] = -1
    weight = torch.rand(8, generator=g) + 0.1
    got = FocalLoss(gamma=0.0, weight=weight)(logits, target)
    ref = F.cross_entropy(logits.reshape(-1, 8), target.reshape(-1), weight=weight, ignore_index=-1)
    torch.testing.assert_close(got, ref)


def test_focal_loss_matches_numpy_formula():
    g = np.random.default_rng(1)
    logits = g.normal(size=(50, 8))
    target = g.integers(0, 8, 50)
    weight = g.uniform(0.2, 2.0, 8)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pt = p[np.arange(50), target]
    w = weight[target]
    expected = np.sum(-w * (1 - pt) ** 2 * np.log(pt)) / w.sum()
    got = FocalLoss(2.0, weight)(torch.tensor(logits), torch.tensor(target)).item()
    assert got == pytest.approx(expected, rel=1e-5)
    # a mask drops frames like ignore_index does
    mask = torch.ones(50, dtype=torch.bool)
    mask[:10] = False
    masked = FocalLoss(2.0, weight)(torch.tensor(logits), torch.tensor(target), mask).item()
    sel = slice(10, None)
    expected_masked = np.sum(-(w * (1 - pt) ** 2 * np.log(pt))[sel]) / w[sel].sum()
    assert masked == pytest.approx(expected_masked, rel=1e-5)


def test_label_smoothing_equals_torch_and_formula():
    g = np.random.default_rng(2)
    logits = g.normal(size=(60, 8))
    target = g.integers(-1, 8, 60)
    weight = g.uniform(0.5, 3.0, 8)
    got = weighted_ce(weight, 0.2)(torch.tensor(logits), torch.tensor(target)).item()
    ref = F.cross_entropy(
        torch.tensor(logits),
        torch.tensor(target),
        weight=torch.tensor(weight),
        ignore_index=-1,
        label_smoothing=0.2,
    ).item()
    assert got == pytest.approx(ref, rel=1e-5)
    # the same by hand: torch mixes (1 - eps) * weighted NLL and eps * weighted uniform term,
    # both normalised by the weights of the true classes
    v = target >= 0
    logp = logits[v] - np.log(np.exp(logits[v]).sum(1, keepdims=True))
    y = target[v]
    norm = weight[y].sum()
    nll = -(weight[y] * logp[np.arange(len(y)), y]).sum() / norm
    smooth = -(logp * weight).sum() / 8 / norm
    assert got == pytest.approx(0.8 * nll + 0.2 * smooth, rel=1e-5)


def test_class_weights_by_hand():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1 + [-1] * 4)  # classes 3..7 absent
    inv = inverse_frequency_weights(labels, classes=8)
    # N = 10 valid frames, K = 3 present classes: w_c = 10 / (3 n_c)
    np.testing.assert_allclose(inv, [10 / 18, 10 / 9, 10 / 3, 0, 0, 0, 0, 0], rtol=1e-6)
    assert (inv[labels[labels >= 0]]).mean() == pytest.approx(1.0)
    np.testing.assert_allclose(max_count_weights(labels), [1, 2, 6, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(inverse_frequency_weights(np.array([-1, -1])), np.ones(8))
    with pytest.raises(ValueError, match="below 8"):
        max_count_weights(np.array([0, 9]))


def test_build_loss():
    pred = torch.randn(10, 2)
    target = torch.randn(10, 2)
    assert build_loss("mse")(pred, target).item() == pytest.approx(
        ((pred - target) ** 2).mean().item(), rel=1e-6
    )
    assert build_loss("rmse")(pred, target).item() == pytest.approx(
        ((pred - target) ** 2).mean().sqrt().item(), rel=1e-5
    )
    labels = np.array([0, 0, 0, 1])
    focal = build_loss("focal", weight="inverse_frequency", labels=labels, classes=2)
    np.testing.assert_allclose(focal.weight.numpy(), [4 / 6, 4 / 2], rtol=1e-6)
    ce = build_loss("ce", weight="max_count", labels=labels, classes=2, label_smoothing=0.0)
    np.testing.assert_allclose(ce.weight.numpy(), [1, 3])
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        build_loss("l1")
    with pytest.raises(ValueError, match="loss 'ccc'"):
        build_loss("ccc", gamma=2)
    with pytest.raises(ValueError, match="class labels must be in 0..7"):
        build_loss("focal")(torch.randn(3, 8), torch.tensor([0, 8, -1]))
