"""Extractors that require others: shared per-chunk stages (like the face stage)."""

from __future__ import annotations

import numpy as np
import pytest

import emofeat
from emofeat.engine import Job, RunOptions, order_jobs, run
from emofeat.extractor import Rows, StreamSpec
from emofeat.samples import frame_code, write_audio, write_video
from emofeat.store import FeatureStore


class Disc(emofeat.Extractor):
    """Finds the bright disc drawn in sample videos: its bounding box per frame."""

    name = "disc"
    version = "1"
    modality = "video"

    def streams(self):
        return [StreamSpec("box", ("x1", "y1", "x2", "y2"), "frame", "video frames")]

    def process(self, chunk):
        boxes = []
        for img in chunk.frames:
            ys, xs = np.nonzero(img[:, :, 0].astype(int) - img[:, :, 2].astype(int) > 40)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        yield Rows("box", boxes, chunk.times, chunk.times + 0.04)


class Background(emofeat.Extractor):
    """Mean grey level outside the disc: needs the disc's box for the same frames."""

    name = "background"
    version = "1"
    modality = "video"
    requires = ("disc",)

    def streams(self):
        return [StreamSpec("level", ("grey",), "frame", "video frames")]

    def process(self, chunk):
        (boxes,) = chunk.upstream["disc"]
        assert len(boxes) == len(chunk.frames)
        out = []
        for img, (x1, y1, x2, y2) in zip(chunk.frames, boxes.data.astype(int), strict=True):
            mask = np.ones(img.shape[:2], bool)
            mask[y1:y2, x1:x2] = False
            out.append(img[mask].mean())
        yield Rows("level", out, chunk.times, chunk.times + 0.04)


class Broken(emofeat.Extractor):
    name = "broken"
    version = "1"
    modality = "video"

    def streams(self):
        return [StreamSpec("x", ("x",))]

    def process(self, chunk):
        raise RuntimeError("detector crashed")


class NeedsBroken(Background):
    name = "needs_broken"
    requires = ("broken",)


def test_dependent_gets_upstream_rows_of_the_same_frames(tmp_path):
    video = write_video(tmp_path / "v.mp4", duration=2.0, fps=25, size=(128, 96), audio=False)
    jobs = order_jobs([Job("background", Background, {}), Job("disc", Disc, {})])
    assert [j.name for j in jobs] == ["disc", "background"]
    with FeatureStore(tmp_path / "f.h5", mode="a") as store:
        summary = run(store, [video], jobs, RunOptions(video_batch=7))
    assert summary.results[0].status == "done"
    store = emofeat.open_store(tmp_path / "f.h5")
    level = store.read("v", "background").data[:, 0]
    expected = np.array([frame_code(i) for i in range(50)])
    np.testing.assert_allclose(level, expected, atol=4)  # background only, disc excluded
    assert store.read("v", "disc").data.shape == (50, 4)


def test_failed_requirement_fails_dependents_only(tmp_path):
    video = write_video(tmp_path / "v.mp4", duration=1.0, fps=25, size=(64, 48), audio=False)
    jobs = order_jobs(
        [Job("needs_broken", NeedsBroken, {}), Job("broken", Broken, {}), Job("disc", Disc, {})]
    )
    with FeatureStore(tmp_path / "f.h5", mode="a") as store:
        res = run(store, [video], jobs, RunOptions()).results[0]
    outcomes = {o.extractor: (o.status, o.message) for o in res.outcomes}
    assert outcomes["broken"] == ("failed", "RuntimeError: detector crashed")
    assert outcomes["needs_broken"] == ("failed", "requires broken, which failed")
    assert outcomes["disc"][0] == "done"


def test_skipped_requirement_skips_dependents(tmp_path):
    wav = write_audio(tmp_path / "a.wav", duration=1.0)
    jobs = order_jobs([Job("background", Background, {}), Job("disc", Disc, {})])
    with FeatureStore(tmp_path / "f.h5", mode="a") as store:
        res = run(store, [wav], jobs, RunOptions()).results[0]
    outcomes = {o.extractor: (o.status, o.message) for o in res.outcomes}
    assert outcomes["disc"][0] == "skipped"
    assert outcomes["background"][0] == "skipped"
    assert "no video stream" in outcomes["background"][1]


def test_requirement_problems_are_config_errors():
    with pytest.raises(emofeat.ConfigError, match="requires 'disc', which is not in the run"):
        order_jobs([Job("background", Background, {})])

    class A(Background):
        name = "a"
        requires = ("b",)

    class B(Background):
        name = "b"
        requires = ("a",)

    with pytest.raises(emofeat.ConfigError, match="require each other"):
        order_jobs([Job("a", A, {}), Job("b", B, {})])


def test_prefetch_keeps_order_and_raises_producer_errors():
    from emofeat.engine import prefetch

    assert list(prefetch(iter(range(100)), 3)) == list(range(100))
    assert list(prefetch(iter(range(5)), 0)) == list(range(5))

    def broken():
        yield 1
        raise emofeat.MediaError("x.mp4", "decoding failed")

    got = []
    with pytest.raises(emofeat.MediaError, match="x.mp4: decoding failed"):
        for item in prefetch(broken(), 2):
            got.append(item)
    assert got == [1]
    # the consumer stopping early does not leave the producer thread blocked
    import threading

    before = threading.active_count()
    for i in prefetch(iter(range(10_000)), 2):
        if i == 3:
            break
    assert threading.active_count() <= before
