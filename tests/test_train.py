"""The recipes' training loop: schedules, early stopping, checkpoints, exact resume, seeding."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from emofeat_recipes.losses import ccc_loss
from emofeat_recipes.models import TemporalTransformer
from emofeat_recipes.train import (
    TrainConfig,
    Trainer,
    load_checkpoint,
    lr_at,
    make_loader,
)

torch.set_num_threads(1)


# -- schedules ----------------------------------------------------------------------------------


def test_warmup_then_cosine_values():
    cfg = TrainConfig(epochs=10, lr=1e-3, warmup_steps=100, warmup_start_lr=1e-5, min_lr=1e-4)
    spe = 50  # steps per epoch: 500 steps, 400 after warm-up
    assert lr_at(0, cfg, spe) == pytest.approx(1e-5)
    assert lr_at(50, cfg, spe) == pytest.approx((1e-5 + 1e-3) / 2)
    assert lr_at(100, cfg, spe) == pytest.approx(1e-3)  # warm-up ends at the peak
    assert lr_at(300, cfg, spe) == pytest.approx((1e-3 + 1e-4) / 2)  # half-way down the cosine
    t = 100 / 400
    assert lr_at(200, cfg, spe) == pytest.approx(1e-4 + 0.9e-3 * (1 + math.cos(math.pi * t)) / 2)
    assert lr_at(500, cfg, spe) == pytest.approx(1e-4)
    assert lr_at(10_000, cfg, spe) == pytest.approx(1e-4)  # stays at the floor
    # min_lr unset: lr * 0.01
    assert lr_at(500, TrainConfig(epochs=10, lr=1e-3, warmup_steps=100), spe) == pytest.approx(1e-5)


def test_cosine_with_warm_restarts_period():
    # the paper's face training: 5e-3 .. 1e-4, restarts every 5 epochs
    cfg = TrainConfig(
        lr=5e-3, min_lr=1e-4, warmup_steps=100, schedule="cosine_restarts", restart_epochs=5
    )
    spe, period = 40, 200
    for k in range(4):
        start = 100 + k * period
        assert lr_at(start, cfg, spe) == pytest.approx(5e-3)
        assert lr_at(start + period // 2, cfg, spe) == pytest.approx((5e-3 + 1e-4) / 2)
        assert lr_at(start + period - 1, cfg, spe) < 1.01e-4 + 1e-6
    const = TrainConfig(lr=2e-4, warmup_steps=10, schedule="constant")
    assert [lr_at(s, const, 7) for s in (10, 11, 999)] == [2e-4] * 3


def test_trainer_applies_the_schedule_per_step(tmp_path):
    """The lr the optimizer used for update s is lr_at(s) (seen from the next batch)."""
    cfg = TrainConfig(epochs=3, lr=1e-2, warmup_steps=5, schedule="cosine", quiet=True)
    model = nn.Linear(3, 1)
    seen: list[float] = []
    trainer: Trainer

    def loss_fn(out, batch):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return ((out - batch["y"]) ** 2).mean()

    batches = [{"x": torch.randn(4, 3), "y": torch.randn(4, 1)} for _ in range(4)]
    trainer = Trainer(model, loss_fn, cfg, tmp_path, forward=lambda m, b: m(b["x"]))
    trainer.fit(batches)
    assert trainer.step == 12
    expected = [lr_at(s, cfg, 4) for s in range(11)]
    np.testing.assert_allclose(seen[1:], expected, rtol=1e-12)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="train.schedul"):
        TrainConfig.from_dict({"schedul": "cosine"})
    with pytest.raises(ValueError, match="train.optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="train.lr"):
        TrainConfig.from_dict({"lr": -1.0})
    assert TrainConfig.from_dict({"epochs": 3, "clip": 1.0}).clip == 1.0


# -- a tiny sequence task ----------------------------------------------------------------------


def sequence_data(n: int = 96, seed: int = 0):
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, 12, 5)).astype(np.float32)
    y = np.tanh(x[..., :2] + 0.3 * np.roll(x[..., :2], 1, axis=1)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # dropout and BatchNorm on purpose: both depend on RNG / running state that resume restores
    return TemporalTransformer(5, 2, d_model=16, layers=1, heads=2, ff=16, output="tanh")


def ccc_np(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def make_eval(xd, yd):
    def evaluate(model):
        p = model(xd).numpy().reshape(-1, 2)
        t = yd.numpy().reshape(-1, 2)
        c = [ccc_np(p[:, i], t[:, i]) for i in range(2)]
        return {"score": float(np.mean(c)), "valence": c[0], "arousal": c[1]}

    return evaluate


def tuple_forward(model, batch):
    return model(batch[0])


def tuple_loss(out, batch):
    return ccc_loss(out, batch[1])


def run(tmp_path, epochs, *, resume=False, schedule="cosine_restarts", seed=0, loader="own"):
    x, y = sequence_data()
    xd, yd = sequence_data(32, seed=1)
    cfg = TrainConfig(
        epochs=epochs,
        lr=3e-3,
        warmup_steps=4,
        schedule=schedule,
        restart_epochs=2,
        batch_size=16,
        patience=50,
        seed=seed,
        quiet=True,
    )
    ds = torch.utils.data.TensorDataset(x, y)
    if loader == "own":
        dl = make_loader(ds, cfg)  # own generator, saved in last.pt
    else:
        dl = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True)  # global torch RNG
    trainer = Trainer(
        tiny_model(),
        tuple_loss,
        cfg,
        tmp_path,
        make_eval(xd, yd),
        forward=tuple_forward,
    )
    return trainer, trainer.fit(dl, resume=resume)


def strip_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("loader", ["own", "global"])
def test_resume_equals_uninterrupted_run(tmp_path, loader):
    _, full = run(tmp_path / "full", 6, loader=loader)
    run(tmp_path / "split", 3, loader=loader)
    _, resumed = run(tmp_path / "split", 6, resume=True, loader=loader)
    assert strip_seconds(resumed["history"]) == strip_seconds(full["history"])
    assert resumed["best_epoch"] == full["best_epoch"]
    assert_same_state(
        load_checkpoint(tmp_path / "split" / "last.pt")["model"],
        load_checkpoint(tmp_path / "full" / "last.pt")["model"],
    )
    assert_same_state(
        load_checkpoint(tmp_path / "split" / "best.pt")["model"],
        load_checkpoint(tmp_path / "full" / "best.pt")["model"],
    )


def test_resume_after_a_crash_mid_epoch(tmp_path):
    """A run killed during epoch 4 (cosine over all epochs) resumes from last.pt (epoch 3)."""
    _, full = run(tmp_path / "full", 5, schedule="cosine")
    x, y = sequence_data()
    xd, yd = sequence_data(32, seed=1)
    evaluate = make_eval(xd, yd)
    calls = []

    def crashing(model):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return evaluate(model)

    cfg = TrainConfig(
        epochs=5, lr=3e-3, warmup_steps=4, schedule="cosine", batch_size=16, patience=50, quiet=True
    )
    dl = make_loader(torch.utils.data.TensorDataset(x, y), cfg)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_model(), tuple_loss, cfg, tmp_path / "crash", crashing, tuple_forward).fit(dl)
    assert load_checkpoint(tmp_path / "crash" / "last.pt")["epoch"] == 3
    _, resumed = run(tmp_path / "crash", 5, resume=True, schedule="cosine")
    assert strip_seconds(resumed["history"]) == strip_seconds(full["history"])
    assert_same_state(
        load_checkpoint(tmp_path / "crash" / "last.pt")["model"],
        load_checkpoint(tmp_path / "full" / "last.pt")["model"],
    )


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    _, a = run(tmp_path / "a", 3)
    _, b = run(tmp_path / "b", 3)
    _, c = run(tmp_path / "c", 3, seed=1)
    assert strip_seconds(a["history"]) == strip_seconds(b["history"])
    assert [h["dev"] for h in c["history"]] != [h["dev"] for h in a["history"]]


def test_early_stopping_and_best_checkpoint(tmp_path):
    scores = [0.1, 0.5, 0.3, 0.45, 0.2, 0.9, 0.95]
    snapshots: list[dict] = []

    def evaluate(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"score": scores[len(snapshots) - 1], "other": 1.0}

    x, y = sequence_data(32)
    batches = [{"x": x[i : i + 8], "y": y[i : i + 8]} for i in range(0, 32, 8)]
    cfg = TrainConfig(epochs=20, lr=1e-3, warmup_steps=0, patience=3, quiet=True)
    model = tiny_model()
    trainer = Trainer(
        model, lambda out, b: ccc_loss(out, b["y"]), cfg, tmp_path, evaluate, meta={"task": "va"}
    )
    result = trainer.fit(batches)
    # best at epoch 2 (0.5); epochs 3, 4, 5 do not beat it -> stop after epoch 5
    assert result["epochs_run"] == 5 and result["stopped_early"]
    assert result["best_epoch"] == 2 and result["best_score"] == 0.5
    assert len(snapshots) == 5
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == 2 and best["meta"] == {"task": "va"}
    assert best["metrics"] == {"score": 0.5, "other": 1.0}
    assert_same_state(best["model"], snapshots[1])
    assert_same_state(model.state_dict(), snapshots[1])  # restore_best
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert_same_state(last["model"], snapshots[4])
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["dev"]["score"] for h in history] == scores[:5]
    assert all(h["train_loss"] > 0 and h["seconds"] > 0 and h["lr"] > 0 for h in history)
    # resuming a run that already stopped does nothing more
    again = Trainer(tiny_model(), lambda out, b: ccc_loss(out, b["y"]), cfg, tmp_path, evaluate)
    assert again.fit(batches, resume=True)["epochs_run"] == 5
    assert len(snapshots) == 5


def test_minimize_direction_and_min_delta(tmp_path):
    losses = iter([1.0, 0.95, 0.5, 0.49, 0.6])
    cfg = TrainConfig(
        epochs=5, warmup_steps=0, maximize=False, min_delta=0.05, patience=5, quiet=True
    )
    x, y = sequence_data(16)
    result = Trainer(
        tiny_model(),
        lambda out, b: ccc_loss(out, b["y"]),
        cfg,
        tmp_path,
        lambda m: {"score": next(losses)},
    ).fit([{"x": x, "y": y}])
    # 0.95 is not 0.05 better than 1.0, 0.49 not 0.05 better than 0.5
    assert result["best_epoch"] == 3 and result["best_score"] == 0.5


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g)

    def train(batches, accum, sub):
        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        cfg = TrainConfig(
            epochs=2, lr=1e-2, warmup_steps=0, schedule="constant", grad_accum=accum, quiet=True
        )
        Trainer(
            model,
            lambda out, b: ((out - b["y"]) ** 2).mean(),
            cfg,
            tmp_path / sub,
            forward=lambda m, b: m(b["x"]),
        ).fit(batches)
        return model.state_dict()

    big = [{"x": x[i : i + 16], "y": y[i : i + 16]} for i in (0, 16)]
    small = [{"x": x[i : i + 8], "y": y[i : i + 8]} for i in range(0, 32, 8)]
    a, b = train(big, 1, "big"), train(small, 2, "small")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_bad_callbacks_and_losses_are_explained(tmp_path):
    x, y = sequence_data(16)
    batches = [{"x": x, "y": y}]
    cfg = TrainConfig(epochs=1, warmup_steps=0, quiet=True)
    with pytest.raises(KeyError, match="'score'"):
        Trainer(
            tiny_model(), lambda o, b: ccc_loss(o, b["y"]), cfg, tmp_path / "a", lambda m: {}
        ).fit(batches)
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1"):
        Trainer(tiny_model(), lambda o, b: o.sum() * float("nan"), cfg, tmp_path / "b").fit(batches)
    with pytest.raises(TypeError, match="forward="):
        Trainer(tiny_model(), lambda o, b: o.sum(), cfg, tmp_path / "c").fit([(x, y)])
    with pytest.raises(ValueError, match="CUDA is not available"):
        if torch.cuda.is_available():
            raise ValueError("CUDA is not available (skipped: CUDA present)")
        Trainer(tiny_model(), lambda o, b: o.sum(), TrainConfig(device="cuda"), tmp_path / "d")
