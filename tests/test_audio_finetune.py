"""The ``audio_finetune`` recipe: PDEM top-k fine-tuning with the paper's V1/V2/V3 heads.

A tiny random Wav2Vec2 of PDEM's architecture family (``tiny_config``, 5 blocks so that
v3's k = 4 leaves a frozen block) is fine-tuned on a small synthetic Aff-Wild2 set whose
voices carry arousal (pitch and level). The checkpoint folder goes through the real
``emofeat extract --plugin pdem --set pdem.backend=torch`` and must give the recipe
network's hidden states.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_cli

import emofeat
from emofeat import ConfigError
from emofeat.media import Decoder, probe
from emofeat.recipes import RecipeError, resolve_config, run_recipe
from emofeat_plugins.audio.pdem_torch import (
    FrameStitcher,
    PdemNetwork,
    load_network,
    save_checkpoint,
    tiny_config,
)
from emofeat_recipes import AUDIO_FINETUNE as RECIPE
from emofeat_recipes.audio_finetune import (
    VARIANTS,
    AudioFinetuneModel,
    SequenceHead,
    augment,
    build_head,
    build_model,
    step_labels,
    window_starts,
)
from emofeat_recipes.datasets.synth import generate
from emofeat_recipes.metrics import ccc
from emofeat_recipes.train import load_checkpoint
from emofeat_recipes.validate import AUDIO_VARIANTS

SR = 16000
LAYERS = 5
# a head sized for the 32-wide tiny network (PDEM's defaults: 8 heads, ff 1024)
TINY_HEAD = ["head.heads=2", "head.ff=64", "head.gru_hidden=32"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny") / "pdem"
    return save_checkpoint(PdemNetwork(tiny_config(num_hidden_layers=LAYERS)), folder)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "aw2"
    generate(root, videos=6, duration=20, workers=1)
    return root


def _config(data: Path, model: Path, *sets: str) -> dict:
    return resolve_config(RECIPE, None, [f"data={data}", f"model={model}", *TINY_HEAD, *sets])


# ----------------------------------------------------------------------------- pieces


def test_step_labels_va_mean_and_expr_majority():
    # 10 fps, 0.2 s steps: frames (k-1)/10 -> two frames per step
    va = np.array([[0.1, 0.2], [0.3, 0.4], [-5, -5], [0.5, -0.5], [-5, -5], [-5, -5]], np.float32)
    ok = ~(va == -5).any(axis=1)
    y, valid = step_labels(va, ok, 10.0, 4, 0.2, "VA")
    np.testing.assert_allclose(y[0], [0.2, 0.3], atol=1e-6)
    np.testing.assert_allclose(y[1], [0.5, -0.5], atol=1e-6)  # the invalid frame is left out
    assert valid.tolist() == [True, True, False, False]  # step 3: past the labels
    # 5 fps, 1 s steps: five frames per second, majority with invalid frames ignored
    ex = np.array([4, 4, 1, -1, -1, 2, 3, 3, 2, 2, -1, -1, -1, -1, -1])
    y, valid = step_labels(ex, ex >= 0, 5.0, 3, 1.0, "EXPR")
    assert y.tolist() == [4, 2, -1] and valid.tolist() == [True, True, False]


def test_window_starts_cover_the_track():
    assert window_starts(10.0, 4.0, 2.0).tolist() == [0, 2, 4, 6]
    assert window_starts(11.0, 4.0, 2.0).tolist() == [0, 2, 4, 6, 8]  # last one padded
    assert window_starts(3.0, 4.0, 2.0).tolist() == [0]


def test_head_pools_frames_to_steps():
    head = SequenceHead("gru", 8, 2, 20, 0.2, gru_hidden=4)
    n = (4 * SR - 400) // 320 + 1  # 199 frames in 4 s
    w = head.pool_matrix(n, torch.device("cpu"), torch.float64).numpy()
    assert w.shape == (20, n)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    # frame k's centre 0.02 k + 0.0125 s: frames 0..9 are step 0, 190..198 step 19
    assert (w[0, :10] == 0.1).all() and (w[0, 10:] == 0).all()
    assert (w[19, 190:] > 0).all() and np.isclose(w[19, 190], 1 / 9)
    out = head(torch.randn(3, n, 8))
    assert out.shape == (3, 20, 2)


@pytest.mark.parametrize(("variant", "k", "kind"), [("v1", 2, "gru"), ("v2", 2, "transformer"),
                                                    ("v3", 4, "transformer")])  # fmt: skip
def test_only_top_k_blocks_and_head_train(tiny, variant, k, kind):
    net, _ = load_network(tiny)
    cfg = _config(Path("."), tiny, f"variant={variant}")
    model = build_model(cfg, net, "VA")
    assert model.head.kind == kind and model.unfreeze == k
    top = [f"net.wav2vec2.encoder.layers.{i}." for i in range(LAYERS - k, LAYERS)]
    for name, p in model.named_parameters():
        should = name.startswith(("head.", "net.wav2vec2.encoder.layer_norm.", *top))
        assert p.requires_grad == should, name
    # one optimisation step changes exactly the trainable tensors
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    assert not model.net.wav2vec2.feature_extractor.training  # frozen parts: eval mode
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(torch.randn(2, 4 * SR))
    assert out.shape == (2, 20, 2)  # 4 s -> 20 steps of 0.2 s, valence and arousal
    out.square().sum().backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n, p in model.named_parameters() if p.requires_grad}


def test_too_many_blocks_is_a_clear_error(tiny):
    net, _ = load_network(tiny)
    cfg = _config(Path("."), tiny, "unfreeze=9")
    with pytest.raises(RecipeError, match="unfreeze=9.*5 blocks"):
        build_model(cfg, net, "VA")


def test_augmentations():
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(SR) / 10).astype(np.float32)
    base = {"p": 1.0, "snr_db": [10.0, 20.0], "gain_db": [-20.0, -1.0]}
    np.testing.assert_array_equal(augment(x, rng, {**base, "kinds": ["polarity"]}), -x)
    for _ in range(20):
        loud = np.abs(x) > 0.1
        g = augment(x, rng, {**base, "kinds": ["gain"]})[loud] / x[loud]
        db = 20 * np.log10(g)
        assert -20 <= db.min() and db.max() <= -1 and np.ptp(db) < 1e-3
        noisy = augment(x, rng, {**base, "kinds": ["noise"]})
        snr = 10 * np.log10(np.mean(x**2) / np.mean((noisy - x) ** 2))
        assert 9.5 < snr < 20.5
    assert augment(x, rng, {**base, "p": 0.0, "kinds": ["polarity"]}) is x


# ----------------------------------------------------------------------------- the recipe


@pytest.fixture(scope="module")
def va_run(synth, tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    # v1 (GRU head, k = 2); hop 4 s halves the audio per epoch; a higher rate and small
    # batches so that a few epochs suffice (the paper: Adam 1e-4, batch 16, 100 epochs)
    cfg = _config(
        synth, tiny, "task=va", "variant=v1", "hop=4.0", "train.epochs=6", "train.patience=6",
        "train.lr=0.002", "train.batch_size=4", "augment.p=0.0",
    )  # fmt: skip
    run_dir, summary = run_recipe(RECIPE, cfg, out, quiet=True)
    assert summary["checkpoint"] == str(run_dir / "best")
    return run_dir


@pytest.mark.slow
def test_va_training_learns_arousal(va_run):
    hist = json.loads((va_run / "history.json").read_text())
    losses = [e["train_loss"] for e in hist]
    assert min(losses[-2:]) < losses[0] - 0.2, losses  # the loss falls
    metrics = json.loads((va_run / "metrics.json").read_text())
    dev = metrics["validation"]
    # the voice carries arousal (pitch and level), not valence; chance is CCC 0
    assert dev["arousal"] > 0.3, dev
    assert dev["arousal"] > dev["valence"] + 0.2, dev
    assert dev["steps"] >= 90  # one 20 s validation track at 5 Hz
    for name in ("best.pt", "last.pt", "history.json"):
        assert (va_run / name).is_file()


def _trained_model(run_dir: Path, tiny: Path) -> AudioFinetuneModel:
    """The recipe's network as the Trainer saved it (best.pt), rebuilt independently."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    net, _ = load_network(tiny)
    model = build_model(cfg, net, cfg["task"].upper())
    model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
    return model.eval()


def _audio(video: Path) -> np.ndarray:
    info = probe(video)
    parts = [c.samples for c in Decoder(info, audio_rates=(SR,)) if not hasattr(c, "frames")]
    return np.concatenate(parts).astype(np.float32)


@pytest.mark.slow
def test_checkpoint_round_trips_through_the_pdem_extractor(va_run, tiny, synth, tmp_path):
    model = _trained_model(va_run, tiny)
    ckpt = va_run / "best"
    meta = json.loads((ckpt / "emofeat.json").read_text())
    spec = meta["extra_heads"]["va"]
    assert spec["class"] == "SequenceHead" and spec["unfrozen_blocks"] == 2
    assert spec["labels"] == ["valence", "arousal"] and spec["steps"] == 20
    assert meta["training"]["config"]["variant"] == "v1"
    assert "arousal" in meta["metrics"]["validation"]
    # the fine-tuned blocks differ from the starting weights, the frozen ones do not
    start, _ = load_network(tiny)
    tuned, info = load_network(ckpt)
    sd0, sd1 = start.state_dict(), tuned.state_dict()
    assert torch.equal(sd0["wav2vec2.encoder.layers.2.attention.q_proj.weight"],
                       sd1["wav2vec2.encoder.layers.2.attention.q_proj.weight"])  # fmt: skip
    assert not torch.equal(sd0["wav2vec2.encoder.layers.4.attention.q_proj.weight"],
                           sd1["wav2vec2.encoder.layers.4.attention.q_proj.weight"])  # fmt: skip

    video = next((synth / "videos").rglob("video4.avi"))  # the validation track's video
    signal = _audio(video)
    out = tmp_path / "feats.h5"
    res = run_cli(
        "extract", "-q", "--plugin", "pdem", "--set", "pdem.backend=torch",
        "--set", f"pdem.model={ckpt}", "--set", "pdem.outputs=hidden_states",
        str(video), "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(out)
    windows = store.read("video4", "pdem", "hidden_states")
    with torch.no_grad():
        # windowed: the extractor's pooled hidden_states = mean over the window's frames
        for (a, _), row, ok in zip(windows.times, windows.data, windows.mask, strict=True):
            if not ok:
                continue
            x = torch.from_numpy(signal[round(a * SR) : round(a * SR) + 4 * SR])[None]
            ref = model.states(x).mean(dim=1)[0].numpy()
            np.testing.assert_allclose(row, ref, atol=1e-5)
        # the fine-tuned head's predictions, one row per 0.2 s step of each window
        steps = store.read("video4", "pdem", "head_va")
        assert list(steps.labels) == ["valence", "arousal"]
        assert len(steps.data) == 20 * len(windows.data)
        for w, ((a, _), ok) in enumerate(zip(windows.times, windows.mask, strict=True)):
            rows = slice(20 * w, 20 * (w + 1))
            np.testing.assert_allclose(steps.times[rows, 0], a + 0.2 * np.arange(20), atol=1e-6)
            # in the zero-padded final window only the steps that start inside the signal
            inside = a + 0.2 * np.arange(20) < len(signal) / SR - 1e-9
            assert steps.mask[rows].tolist() == (inside if not ok else np.ones(20, bool)).tolist()
            if not ok:
                continue
            x = torch.from_numpy(signal[round(a * SR) : round(a * SR) + 4 * SR])[None]
            np.testing.assert_allclose(steps.data[rows], model(x)[0].numpy(), atol=1e-5)
        # frames (the extractor's level=frames path): one pass over the whole input when
        # the chunk is longer than the input
        stitcher = FrameStitcher(tuned, [LAYERS], chunk=60.0, context=1.0)
        blocks = stitcher.push(signal) + stitcher.flush()
        frames = np.concatenate([b[2][LAYERS] for b in blocks])
        ref = model.states(torch.from_numpy(signal)[None])[0].numpy()
    assert frames.shape == ref.shape
    np.testing.assert_allclose(frames, ref, atol=1e-5)
    # the stored head rebuilds and predicts what the recipe's model predicts
    head = build_head(spec, info["extra_heads"]["va"]["state_dict"])
    x = torch.from_numpy(signal[: 4 * SR])[None]
    with torch.no_grad():
        np.testing.assert_allclose(
            head(tuned.frames(x, [LAYERS])[LAYERS]).numpy(), model(x).numpy(), atol=1e-5
        )


@pytest.mark.slow
def test_expr_and_v1_run(tmp_path_factory, tiny):
    """EXPR at 1 Hz with the weighted, smoothed cross-entropy and the GRU head; the synthetic
    set of 10 videos has EXPR validation tracks."""
    root = tmp_path_factory.mktemp("synth_expr") / "aw2"
    generate(root, videos=10, duration=6, workers=1)
    cfg = _config(root, tiny, "task=expr", "variant=v1", "train.epochs=1", "augment.p=1.0")
    run_dir, summary = run_recipe(RECIPE, cfg, tmp_path_factory.mktemp("runs"), quiet=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["task"] == "EXPR" and 0.0 <= metrics["validation"]["f1"] <= 1.0
    assert metrics["validation"]["steps"] > 0
    spec = json.loads((run_dir / "best" / "emofeat.json").read_text())["extra_heads"]["expr"]
    assert spec["kind"] == "gru" and spec["steps"] == 4 and len(spec["labels"]) == 8
    hist = json.loads((run_dir / "history.json").read_text())
    assert all(np.isfinite(e["train_loss"]) for e in hist)


@pytest.mark.parametrize(
    ("sets", "msg"),
    [
        (["task=both"], r"task='both': must be one of va, expr"),
        (["variant=v9"], r"variant='v9': must be one of v1, v2, v3"),
        (["gate.kind=vad"], r"gate.kind=vad needs .* features \(--features"),
        (["hop=1.5"], r"hop=1.5: must be a multiple of the 0.2 s output step"),
        (["task=expr", "hop=0.6"], r"hop=0.6: must be a multiple of the 1.0 s output step"),
        (["task=expr", "win=2.5"], r"win=2.5: must be a whole number of the 1.0 s"),
    ],
)
def test_bad_config_errors(tmp_path, sets, msg):
    # neither the data root nor the model exists: the config is refused before either is read
    missing = tmp_path / "nothere"
    with pytest.raises(ConfigError, match=msg):
        _config(missing, missing, *sets)
    args = [a for s in [f"data={missing}", f"model={missing}", *sets] for a in ("--set", s)]
    res = run_cli("recipe", "run", "audio_finetune", "-o", str(tmp_path / "runs"), *args)
    assert res.returncode == 2, res.stderr


def test_config_checks_accept_what_runs(tmp_path):
    missing = tmp_path / "nothere"
    assert set(VARIANTS) == set(AUDIO_VARIANTS)
    for variant in VARIANTS:
        assert _config(missing, missing, f"variant={variant}")["variant"] == variant
    cfg = _config(missing, missing, "task=expr", "win=3", "hop=1")
    assert (cfg["task"], cfg["win"], cfg["hop"]) == ("expr", 3.0, 1.0)
    cfg = _config(missing, missing, "hop=0.4", f"features={missing}", "gate.kind=mouth_open")
    assert cfg["gate"]["kind"] == "mouth_open" and cfg["hop"] == 0.4


@pytest.mark.slow
def test_cli_recipe_run(synth, tiny, tmp_path):
    res = run_cli(
        "recipe", "run", "audio_finetune", "--data", str(synth), "-o", str(tmp_path),
        "--set", f"model={tiny}", "--set", "variant=v2", "--set", "train.epochs=1",
        *[a for s in TINY_HEAD for a in ("--set", s)],
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    (run_dir,) = tmp_path.glob("audio_finetune-*")
    assert (run_dir / "best" / "model.safetensors").is_file()


def test_ccc_reference_is_independent():
    # sanity of the metric the assertions rely on (perfect and inverted predictions)
    y = np.linspace(-1, 1, 50)
    assert ccc(y, y) == pytest.approx(1.0) and ccc(-y, y) == pytest.approx(-1.0)


def test_vad_gate_masks_steps_and_drops_windows(synth, tiny, tmp_path):
    """gate.kind=vad with a store made by the real ``vad`` extractor: ``mask`` invalidates
    the label steps that are less than half speech, ``drop`` leaves out such windows."""
    from emofeat_recipes.audio_finetune import load_tracks
    from emofeat_recipes.datasets.affwild2 import AffWild2
    from emofeat_recipes.datasets.join import FeatureIndex

    store_path = tmp_path / "vad.h5"
    res = run_cli("extract", "-q", "--plugin", "vad", str(synth / "videos"), "-o", str(store_path))
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(store_path)
    ds = AffWild2(synth)
    tracks = ds.tracks("VA", "validation")
    plain = load_tracks(ds, tracks, "VA", _config(synth, tiny), tmp_path / "cache")
    sets = [f"features={store_path}", "gate.kind=vad", "gate.mode=mask"]
    index = FeatureIndex([store])  # tracks find their vad items by identity
    masked = load_tracks(ds, tracks, "VA", _config(synth, tiny, *sets), tmp_path / "cache", index)
    rows = store.read(tracks[0].video_name, "vad", "speech")
    on = rows.times[rows.mask & (rows.data[:, 0] >= 0.5)]
    # independent reference: the speech fraction of each 0.2 s step on a 0.1 ms raster
    for j, (was, now) in enumerate(zip(plain[0].y_valid, masked[0].y_valid, strict=True)):
        t = 0.2 * j + (np.arange(2000) + 0.5) * 1e-4
        frac = ((t[:, None] >= on[:, 0]) & (t[:, None] < on[:, 1])).any(axis=1).mean()
        if abs(frac - 0.5) > 0.01:
            assert now == (was and frac >= 0.5), (j, frac)
    assert masked[0].keep.all()
    drop = [*sets[:2], "gate.mode=drop", "gate.min_active=0.5"]
    dropped = load_tracks(ds, tracks, "VA", _config(synth, tiny, *drop), tmp_path / "cache", index)
    for s, k in zip(dropped[0].starts, dropped[0].keep, strict=True):
        t = s + (np.arange(4000) + 0.5) * 1e-3
        frac = ((t[:, None] >= on[:, 0]) & (t[:, None] < on[:, 1])).any(axis=1).mean()
        if abs(frac - 0.5) > 0.01:
            assert k == (frac >= 0.5), (s, frac)
