"""face_finetune: stage-1 face training on the synthetic Aff-Wild2 tree, and the checkpoint's
round trip through the real ``emofeat extract --plugin face_cnn`` CLI.

A tiny timm backbone (``test_efficientnet``, 48 px, random initialisation) learns the planted
expression classes and valence from the synthetic crops within a few epochs on a CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image
from sklearn.metrics import f1_score

import emofeat
from emofeat import ConfigError
from emofeat.recipes import RecipeError, resolve_config, run_recipe
from emofeat_recipes import FACE_FINETUNE as RECIPE
from emofeat_recipes.datasets.affwild2 import AffWild2
from emofeat_recipes.face_finetune import (
    FaceFrames,
    balanced_weights,
    build_face_model,
    collect_frames,
)

torch.set_num_threads(2)

# tiny but learnable: 48 px crops, every 3rd frame, short warm-up, no restarts
QUICK = [
    "backbone=test_efficientnet",
    "weights=none",
    "input_size=48",
    "frame_step=3",
    "train.batch_size=32",
    "train.warmup_steps=10",
    "train.lr=0.003",
    "train.restart_epochs=100",
    "train.num_workers=0",
]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from emofeat_recipes.datasets.synth import generate

    root = tmp_path_factory.mktemp("ff") / "affwild2"
    # 14 videos of 6 s: 9 training and 4 validation tracks holding every expression class
    generate(root, videos=14, duration=6.0, seed=1, workers=1)
    return root


def _run(synth: Path, out: Path, *sets: str, run_dir: Path | None = None):
    cfg = resolve_config(RECIPE, sets=[f"data={synth}", *QUICK, *sets])
    return run_recipe(RECIPE, cfg, out, run_dir=run_dir, quiet=True)


def _label_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


# -- frames ------------------------------------------------------------------------------------


def test_frames_are_every_kth_label_frame_with_a_crop(synth):
    data = AffWild2(synth)
    frames = collect_frames(data, "train", ("EXPR",), 4)
    for track in data.tracks("EXPR", "train"):
        lines = _label_lines(track.annotation)
        crops = {int(p.stem) for p in (synth / "cropped_aligned" / track.name).glob("*.jpg")}
        want = [
            k
            for k in range(1, len(lines) + 1, 4)
            if k in crops and int(lines[k - 1]) != -1  # a crop and a valid label
        ]
        got = frames.frame[frames.track == track.name]
        assert got.tolist() == want, track.name
        assert frames.expr[frames.track == track.name].tolist() == [int(lines[k - 1]) for k in want]
    # both tasks: VA-only tracks keep their frames with the class marked invalid
    both = collect_frames(data, "train", ("VA", "EXPR"), 4)
    va_only = set(both.track[both.expr < 0]) - set(frames.track)
    assert va_only, "the synthetic tree has a VA-only track"
    sel = both.track == sorted(va_only)[0]
    assert both.va_valid[sel].all() and (both.expr[sel] == -1).all()


def test_balanced_sampling_draws_classes_equally():
    expr = np.array([0] * 300 + [4] * 60 + [7] * 6 + [-1] * 20)
    w = balanced_weights(expr)
    gen = torch.Generator().manual_seed(0)
    draws = torch.multinomial(torch.as_tensor(w), 30_000, replacement=True, generator=gen).numpy()
    classes = expr[draws]
    freq = np.array([np.mean(classes == c) for c in (0, 4, 7)])
    # three present classes drawn about equally; unlabelled frames at the mean weight
    assert np.allclose(freq, freq.mean(), rtol=0.1)
    assert 0.01 < np.mean(classes == -1) < 0.1


def test_bad_configs_fail_with_clear_errors(synth, tmp_path):
    with pytest.raises(RecipeError, match="efficientnet_lite0"):
        _run(synth, tmp_path, "weights=lite0-imagenet")
    with pytest.raises(RecipeError, match="nothere.pt"):
        _run(synth, tmp_path, f"weights={tmp_path / 'nothere.pt'}")


@pytest.mark.parametrize(
    ("sets", "msg"),
    [
        (["task=arousal"], r"task='arousal': must be one of va, expr, both"),
        (["task=va", "sampling=balanced"], r"sampling=balanced .* needs task=expr or task=both"),
    ],
)
def test_config_errors_come_when_the_config_is_resolved(tmp_path, sets, msg):
    # the data root does not exist: the config is refused before any data is looked at
    data = f"data={tmp_path / 'nothere'}"
    with pytest.raises(ConfigError, match=msg):
        resolve_config(RECIPE, sets=[data, *QUICK, *sets])
    sets_args = [a for s in [data, *sets] for a in ("--set", s)]
    res = run_cli("recipe", "run", "face_finetune", "-o", str(tmp_path / "runs"), *sets_args)
    assert res.returncode == 2, res.stderr
    assert "task" in res.stderr and not (tmp_path / "runs").exists()
    for task in ("va", "expr", "both"):  # every allowed task resolves
        assert resolve_config(RECIPE, sets=[data, *QUICK, f"task={task}"])["task"] == task
    ok = resolve_config(RECIPE, sets=[data, *QUICK, "task=expr", "sampling=balanced"])
    assert ok["sampling"] == "balanced"


# -- training and the extractor round trip ---------------------------------------------------


def _extract(run_dir: Path, folders: list[Path], out: Path) -> emofeat.FeatureStore:
    res = run_cli(
        "extract",
        "-q",
        "-p",
        "face_cnn",
        "--set",
        f"face_cnn.model={run_dir / 'face_model.pt'}",
        *map(str, folders),
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    return emofeat.open_store(out)


def test_expr_training_learns_and_round_trips_through_face_cnn(synth, tmp_path):
    run_dir, summary = _run(synth, tmp_path, "task=expr", "train.epochs=6")
    for name in ("best.pt", "last.pt", "history.json", "metrics.json", "face_model.pt"):
        assert (run_dir / name).is_file(), name
    assert Image.open(run_dir / "training_curve.png").size[0] > 100
    history = json.loads((run_dir / "history.json").read_text())
    losses = [h["train_loss"] for h in history]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert losses[-1] < 0.6 * losses[0], (losses, metrics["dev"])
    check_expr_run(synth, run_dir, metrics, tmp_path)


def check_expr_run(synth: Path, run_dir: Path, metrics: dict, tmp_path: Path) -> None:
    """Dev score and outputs of the written checkpoint, through the real extractor CLI."""
    # the checkpoint through the real extractor, on the validation crop folders
    data = AffWild2(synth)
    tracks = data.tracks("EXPR", "validation")
    store = _extract(run_dir, [data.crop_dirs[t.name] for t in tracks], tmp_path / "f.h5")
    assert store.streams(tracks[0].name, "face_cnn") == ["embedding", "expr"]
    # the dev score recomputed independently (sklearn) from the extractor's output on the
    # frames the recipe scored: every 3rd label frame with a crop and a valid label
    preds, truth = [], []
    for t in tracks:
        probs = store.read(t.name, "face_cnn", "expr", aligned=True)  # row k-1 = frame k
        lines = _label_lines(t.annotation)
        for k in range(1, len(lines) + 1, 3):
            if int(lines[k - 1]) >= 0 and (data.crop_dirs[t.name] / f"{k:05d}.jpg").is_file():
                preds.append(int(np.argmax(probs.data[k - 1])))
                truth.append(int(lines[k - 1]))
    f1 = f1_score(truth, preds, labels=range(8), average="macro", zero_division=0)
    assert f1 == pytest.approx(metrics["dev"]["f1"], abs=1e-9)
    # chance: the majority class everywhere, or classes drawn at random with the label shares
    majority = f1_score(
        truth, [np.bincount(truth).argmax()] * len(truth), labels=range(8), average="macro"
    )
    print(f"dev macro-F1 {f1:.3f} (majority-class {majority:.3f}, random about 0.11)")
    assert f1 > max(0.25, 3 * majority)

    # outputs identical to the recipe's own model (the Trainer's best.pt) on the same crops,
    # preprocessed by the recipe's training dataset (no augmentation)
    from emofeat_plugins.faces.backbones import FaceModel

    model = FaceModel("test_efficientnet", 256, {"expr": 8})
    model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True)["model"])
    model.eval()
    frames = collect_frames(data, "validation", ("EXPR",), 3)
    ckpt = torch.load(run_dir / "face_model.pt", weights_only=True)
    ds = FaceFrames(frames, 48, ckpt["mean"], ckpt["std"])
    idx = np.arange(0, len(frames), 7)
    with torch.inference_mode():
        ref = model(torch.stack([ds[int(i)]["x"] for i in idx]))
    rows = {t.name: store.read(t.name, "face_cnn", "embedding", aligned=True).data for t in tracks}
    got = np.stack([rows[frames.track[i]][frames.frame[i] - 1] for i in idx])
    np.testing.assert_allclose(got, ref["embedding"].numpy(), atol=1e-5)
    probs = {t.name: store.read(t.name, "face_cnn", "expr", aligned=True).data for t in tracks}
    got = np.stack([probs[frames.track[i]][frames.frame[i] - 1] for i in idx])
    np.testing.assert_allclose(got, torch.softmax(ref["expr"], 1).numpy(), atol=1e-5)
    assert ckpt["format"] == "emofeat-face-checkpoint" and ckpt["input_size"] == 48
    assert (
        ckpt["labels"]["expr"][0] == "Neutral"
        and ckpt["metrics"]["dev"]["f1"] == metrics["dev"]["f1"]
    )


def test_va_training_learns_valence(synth, tmp_path):
    # CCC loss and batches of 16: more updates per epoch, and what the dev metric measures;
    # no colour jitter: the cheeks' colour is one of the two valence cues
    run_dir, _ = _run(
        synth,
        tmp_path,
        "task=va",
        "loss.va=ccc",
        "augment.colour=0",
        "train.batch_size=16",
        "train.epochs=6",
    )
    history = json.loads((run_dir / "history.json").read_text())
    losses = [h["train_loss"] for h in history]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert losses[-1] < 0.8 * losses[0], (losses, metrics["dev"])
    # the face shows valence (mouth, cheeks); arousal is in the voice only (joint mode)
    assert metrics["dev"]["valence"] > 0.3, metrics["dev"]

    # through the extractor: the va stream and the recipe's CCC on the same frames
    data = AffWild2(synth)
    tracks = data.tracks("VA", "validation")
    store = _extract(run_dir, [data.crop_dirs[t.name] for t in tracks], tmp_path / "va.h5")
    assert store.streams(tracks[0].name, "face_cnn") == ["embedding", "va"]
    p, y = [], []
    for t in tracks:
        va = store.read(t.name, "face_cnn", "va", aligned=True).data
        lines = _label_lines(t.annotation)
        for k in range(1, len(lines) + 1, 3):
            v = [float(c) for c in lines[k - 1].split(",")]
            if v[0] != -5 and (data.crop_dirs[t.name] / f"{k:05d}.jpg").is_file():
                p.append(va[k - 1, 0])
                y.append(v[0])
    p, y = np.array(p, np.float64), np.array(y, np.float64)
    ccc = (
        2
        * np.mean((p - p.mean()) * (y - y.mean()))
        / (p.var() + y.var() + (p.mean() - y.mean()) ** 2)
    )
    assert ccc == pytest.approx(metrics["dev"]["valence"], abs=1e-4)


def test_resume_and_seed_give_the_same_run(synth, tmp_path):
    """Two seeded runs agree; 1 epoch + resume to 2 equals 2 epochs (workers and balanced
    sampling on, so their random streams are part of what is restored)."""
    sets = ["task=expr", "frame_step=12", "train.batch_size=16", "train.num_workers=1",
            "sampling=balanced"]  # fmt: skip
    a, _ = _run(synth, tmp_path / "a", *sets, "train.epochs=2")
    b, _ = _run(synth, tmp_path / "b", *sets, "train.epochs=1")
    _run(synth, tmp_path / "b", *sets, "train.epochs=2", "resume=true", run_dir=b)
    ha = json.loads((a / "history.json").read_text())
    hb = json.loads((b / "history.json").read_text())
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert [h["dev"] for h in ha] == [h["dev"] for h in hb]
    wa = torch.load(a / "last.pt", weights_only=True)["model"]
    wb = torch.load(b / "last.pt", weights_only=True)["model"]
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_starts_from_a_face_checkpoint(synth, tmp_path):
    """weights=PATH: the checkpoint's backbone, size and normalisation carry over (and
    task=both trains one model with both heads)."""
    from emofeat_plugins.faces.backbones import FaceModel, save_checkpoint

    torch.manual_seed(3)
    src = FaceModel("test_efficientnet", 256, {"expr": 8})
    path = tmp_path / "start.pt"
    save_checkpoint(path, src, 40, (0.4,) * 3, (0.3,) * 3)
    sets = ["task=both", "frame_step=30", "train.epochs=1", "input_size=0",
            f"weights={path}", "backbone=efficientnet_b1"]  # fmt: skip
    cfg = resolve_config(RECIPE, sets=[f"data={synth}", *QUICK, *sets])
    model, size, mean, std = build_face_model(cfg)
    assert (model.arch, size, mean, std) == ("test_efficientnet", 40, (0.4,) * 3, (0.3,) * 3)
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    run_dir, _ = _run(synth, tmp_path, *sets)
    ckpt = torch.load(run_dir / "face_model.pt", weights_only=True)
    assert (ckpt["arch"], ckpt["input_size"], ckpt["mean"]) == ("test_efficientnet", 40, [0.4] * 3)
    assert ckpt["heads"] == {"expr": 8, "va": 2}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"f1", "ccc", "valence", "arousal", "score"} <= set(metrics["dev"])
    shutil.rmtree(run_dir)
