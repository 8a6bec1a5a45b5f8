"""``emofeat render`` and the store's public write path (``FeatureStore.write_item``).

Real media made with PyAV (variable and constant frame rate, AAC and PCM audio); the face
boxes and predictions are stored through ``FeatureStore.write_item`` (what ``emofeat
predict`` uses), read back through the store's reader, and the rendered file is decoded
again: frame count and times, audio, the box's colour where the store says the box is.
"""

from __future__ import annotations

import json

import av
import h5py
import numpy as np
import pytest
from conftest import run_cli

import emofeat
from emofeat.samples import write_video
from emofeat.store import FeatureStore, StoreError

FACE_LABELS = (
    "x1", "y1", "x2", "y2", "score",
    *[f"lm{i}_{a}" for i in range(5) for a in ("x", "y")],
    "track_id", "n_faces",
)  # fmt: skip
EXPR = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
BOX = (100.0, 60.0, 220.0, 180.0)  # x1, y1, x2, y2 in pixels of a 320 x 240 video


def _decode(path):
    """(frame times in seconds, RGB frames, audio duration in seconds or None)."""
    with av.open(str(path)) as c:
        times, frames = [], []
        for f in c.decode(video=0):
            times.append(float(f.time))
            frames.append(f.to_ndarray(format="rgb24"))
    with av.open(str(path)) as c:
        audio = None
        if c.streams.audio:
            n = sum(f.samples for f in c.decode(audio=0))
            audio = n / c.streams.audio[0].codec_context.sample_rate
    order = np.argsort(times, kind="stable")  # AVI decoders may return frames out of order
    return np.asarray(times)[order], [frames[k] for k in order], audio


def _store_boxes(store_path, video, masked: set[int]) -> np.ndarray:
    """A faces item for ``video`` with a fixed box, masked on ``masked`` frames, and a VA
    prediction stream; returns the frame times."""
    grid = emofeat.demux_grid(video)
    n = len(grid)
    frames = np.stack([grid.starts, grid.ends], axis=1)
    face = np.zeros((n, len(FACE_LABELS)), np.float32)
    face[:, :4] = BOX
    valid = np.array([k not in masked for k in range(n)])
    va = np.stack([np.linspace(-1, 1, n), np.linspace(1, -1, n)], axis=1)
    probs = np.full((n, 8), 1 / 8)
    with FeatureStore(store_path, "a") as fs:
        fs.write_item(
            video.stem, "faces", frames, {"face": (face, valid, FACE_LABELS)}, source=video
        )
        fs.write_item(
            video.stem,
            "predict",
            frames,
            {"va": (va, np.ones(n, bool), ("valence", "arousal")),
             "expr": (probs, np.ones(n, bool), EXPR)},
            source=video,
            settings={"runs": {}},
        )  # fmt: skip
    return grid.starts


def test_write_item_commits_a_readable_verified_item(tmp_path):
    video = write_video(tmp_path / "clip.mp4", duration=1.0, fps=25)
    store_path = tmp_path / "s.h5"
    _store_boxes(store_path, video, masked={3, 4})
    store = emofeat.open_store(store_path)
    (item,) = [it for it in store.catalog() if it.extractor == "faces"]
    assert item.source == video.resolve() and item.n_frames == 25
    sd = store.read(item.key, "faces", "face", aligned=True)
    assert sd.labels == list(FACE_LABELS)
    np.testing.assert_array_equal(sd.data[:, :4], np.tile(BOX, (25, 1)))
    assert not sd.mask[3] and not sd.mask[4] and sd.mask.sum() == 23
    assert store.verify() == []
    # plain h5py through the index, and the run log records the write
    with h5py.File(store_path, "r") as f:
        assert f[f"items/{item.key}/predict/va/aligned/data"].shape == (25, 2)
    events = [e["event"] for e in store.log_entries()]
    assert events.count("run-start") == 2 and events.count("item") == 2
    # writing again replaces the item (atomically, through a new commit)
    with FeatureStore(store_path, "a") as fs:
        n = 25
        fs.write_item(
            item.key,
            "faces",
            np.stack([sd.times[:, 0], sd.times[:, 1]], axis=1),
            {"face": (np.ones((n, len(FACE_LABELS))), np.ones(n, bool), FACE_LABELS)},
            source=video,
        )
        with pytest.raises(StoreError, match="labels for 25 frames"):
            fs.write_item(item.key, "x", sd.times, {"s": (np.ones((24, 1)), np.ones(24), ["a"])})
    again = emofeat.open_store(store_path).read(item.key, "faces", "face", aligned=True)
    assert again.mask.all() and (again.data == 1).all()
    with pytest.raises(StoreError, match="read-only"):
        emofeat.open_store(store_path).write_item(item.key, "x", sd.times, {})


@pytest.mark.parametrize(
    "name, kwargs, audio_codec",
    [
        # variable frame rate, AAC audio (copied as it is)
        ("vfr.mp4", {"frame_times": [0.0, 0.04, 0.1, 0.13, 0.2, 0.3, 0.31, 0.4, 0.5, 0.52,
                                     0.6, 0.7, 0.75, 0.8, 0.9, 1.0, 1.1, 1.15, 1.2, 1.3]},
         "aac"),
        # constant 25 fps in AVI with PCM audio (re-encoded to AAC)
        ("cfr.avi", {"duration": 1.2, "fps": 25}, "aac"),
    ],
)  # fmt: skip
def test_render_draws_the_stored_box_and_keeps_frames_and_audio(
    tmp_path, name, kwargs, audio_codec
):
    video = write_video(tmp_path / name, audio_codec=audio_codec, **kwargs)
    store_path = tmp_path / "feats.h5"
    in_times, in_frames, in_audio = _decode(video)
    masked = {2, 3}
    grid_times = _store_boxes(store_path, video, masked)
    assert len(grid_times) == len(in_frames)
    out = tmp_path / "overlay.mp4"
    res = run_cli("render", str(video), "--store", str(store_path), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "box from faces/face" in res.stderr and "va from predict/va" in res.stderr
    times, frames, audio = _decode(out)
    assert len(frames) == len(in_frames)
    # the presentation times are kept (variable frame rate included), up to the muxer's tick
    np.testing.assert_allclose(times - times[0], in_times - in_times[0], atol=2e-3)
    assert audio is not None and in_audio is not None and abs(audio - in_audio) < 0.1
    x1, y1, x2, y2 = (int(v) for v in BOX)
    cy = (y1 + y2) // 2
    for k, frame in enumerate(frames):
        # the outline is 4 px wide from the box edge inwards (unit 2 px at 240 px)
        r, g, b = (int(v) for v in frame[cy, x1 + 2])
        if k in masked:  # no face: no box, the frame's own pixel
            assert np.abs(frame[cy, x1 + 2].astype(int) - in_frames[k][cy, x1 + 2]).max() < 40
        else:
            assert g > 180 and r < 90 and b < 90, (k, (r, g, b))
            r2, g2, b2 = (int(v) for v in frame[y1 + 2, (x1 + x2) // 2])
            assert g2 > 180 and r2 < 90 and b2 < 90
        # far from the box and the panels the picture is the input's
        assert np.abs(frame[cy, 5 + x2].astype(int) - in_frames[k][cy, 5 + x2]).max() < 40


def test_render_without_the_videos_item_is_a_clear_error(tmp_path):
    video = write_video(tmp_path / "clip.mp4", duration=0.5, fps=25)
    other = write_video(tmp_path / "other.mp4", duration=0.5, fps=25)
    store_path = tmp_path / "feats.h5"
    _store_boxes(store_path, other, set())
    res = run_cli("render", str(video), "--store", str(store_path), "-o", str(tmp_path / "o.mp4"))
    assert res.returncode == 1
    assert "holds no item made from" in res.stderr and "other.mp4" in res.stderr
    assert not (tmp_path / "o.mp4").exists()
    res = run_cli("render", str(video), "--store", str(tmp_path / "nope.h5"), "-o", "x.mp4")
    assert res.returncode == 2 and "no such store" in res.stderr


def test_overlay_reads_streams_by_name(tmp_path):
    """What is drawn comes from the store's streams, row k for video frame k."""
    from emofeat.render import load_overlay

    video = write_video(tmp_path / "clip.mp4", duration=0.4, fps=25)
    _store_boxes(tmp_path / "s.h5", video, {1})
    ov = load_overlay(tmp_path / "s.h5", video)
    assert ov.sources == {"box": "faces/face", "expr": "predict/expr", "va": "predict/va"}
    assert np.isnan(ov.box[1]).all() and np.allclose(ov.box[0], BOX)
    assert ov.expr_labels == list(EXPR) and ov.va is not None
    assert ov.va[0].tolist() == pytest.approx([-1.0, 1.0])
    assert json.dumps(ov.sources)
