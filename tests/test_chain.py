"""The multi-stage chain from the CLI (issue 6): fine-tune a face backbone on the synthetic
Aff-Wild2 set, register the checkpoint under a name, extract with it, train a temporal
recipe on the extracted embeddings.

A tiny timm backbone (``test_efficientnet``, 48 px crops) keeps it to a few minutes on
2 CPU cores; every step is the real command a user runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

import emofeat
from emofeat_recipes.datasets.affwild2 import AffWild2

FINETUNE = [
    "backbone=test_efficientnet", "weights=none", "input_size=48", "frame_step=3",
    "train.batch_size=32", "train.warmup_steps=10", "train.lr=0.003",
    "train.restart_epochs=100", "train.num_workers=0", "task=expr", "train.epochs=6",
]  # fmt: skip


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chain") / "affwild2"
    res = run_cli("datasets", "synth", str(root), "--videos", "14", "--duration", "6", "--seed",
                  "1", "-q")  # fmt: skip
    assert res.returncode == 0, res.stderr
    return root


@pytest.mark.slow
def test_finetune_register_extract_and_train_a_temporal_recipe(synth, tmp_path):
    env = {"EMOFEAT_CACHE_DIR": str(tmp_path / "cache")}
    # 1. stage 1: fine-tune the face backbone (EXPR head + 256-d embedding)
    sets = [a for s in FINETUNE for a in ("--set", s)]
    res = run_cli("recipe", "run", "face_finetune", "--data", str(synth), *sets, "-q",
                  "-o", str(tmp_path / "runs"), env=env, timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("face_finetune-*")
    ckpt = run_dir / "face_model.pt"
    assert ckpt.is_file() and json.loads((run_dir / "metrics.json").read_text())["best_score"]

    # 2. register the checkpoint under a name; it is listed with its licence
    res = run_cli("models", "import", "synth-face", str(ckpt), "--license", "MIT (test)",
                  env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    listed = json.loads(run_cli("models", "list", "--json", env=env).stdout)["models"]
    (entry,) = [m for m in listed if m["name"] == "synth-face"]
    assert entry["license"] == "MIT (test)" and entry["cached"]

    # 3. extract with it, by name, from every crop folder
    crops = sorted(str(p) for p in (synth / "cropped_aligned").iterdir())
    feats = tmp_path / "feats.h5"
    res = run_cli("extract", "-q", "-p", "face_cnn", "--set", "face_cnn.model=synth-face",
                  *crops, "-o", str(feats), env=env, timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(feats)
    track = AffWild2(synth).tracks("EXPR", "validation")[0].name
    assert store.streams(track, "face_cnn") == ["embedding", "expr"]
    attrs = store.item_attrs(track, "face_cnn")
    assert str(attrs["model_id"]).startswith("synth-face@")
    assert attrs["license"] == "MIT (test)"

    # 4. stage 2: a temporal model on the fine-tuned embeddings
    res = run_cli(
        "recipe", "run", "abaw_expr", "--data", str(synth), "--features", str(feats),
        "--config", "quick", "--set", "inputs.video=face_cnn.embedding",
        "--set", "models.audio=false", "--set", "models.fusion=false",
        "-o", str(tmp_path / "runs"), "-q", env=env, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (expr_dir,) = (tmp_path / "runs").glob("abaw_expr-*")
    metrics = json.loads((expr_dir / "metrics.json").read_text())
    assert metrics["inputs"]["video"] == ["face_cnn.embedding"]
    f1 = metrics["models"]["video"]["smoothed"]["f1"]
    print(f"\nchain: temporal EXPR model on fine-tuned embeddings, macro-F1 {f1:.3f}")
    assert f1 > 0.3  # chance (random with the label shares) is about 0.11
    assert (expr_dir / "submission/EXPR_predictions.txt").is_file()
