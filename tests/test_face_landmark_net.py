"""The PyTorch port of face-api.js's FaceLandmark68Net against the original JavaScript.

Same reference run as test_face_expression_net.py: tests/fixtures/face_expression_reference.json
holds face-api.js 0.22.2's landmarks (``face_landmarks_68``) for the images in
face_expression_inputs.npz (made by tests/fixtures/make_face_expression_reference.js).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from emofeat.models import ModelCache, get_model
from emofeat_plugins.faces.landmark_net import FaceLandmark68Net, preprocess
from emofeat_plugins.faces.tfjs import TfjsWeightsError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> ModelCache:
    return ModelCache(tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(scope="session")
def landmark_folder(cache) -> Path:
    """The face-landmarks-68 model files, fetched through the registry into a fresh cache."""
    return cache.path(get_model("face-landmarks-68"))


@pytest.fixture(scope="session")
def landmark_net(landmark_folder) -> FaceLandmark68Net:
    return FaceLandmark68Net.from_folder(landmark_folder)


@pytest.fixture(scope="session")
def reference_and_inputs() -> tuple[dict, np.ndarray, list[str]]:
    ref = json.loads((FIXTURES / "face_expression_reference.json").read_text())
    with np.load(FIXTURES / "face_expression_inputs.npz") as npz:
        images, names = npz["images"], [str(n) for n in npz["names"]]
    assert hashlib.sha256(images.tobytes()).hexdigest() == ref["inputs"]["images_sha256"]
    return ref, images, names


def test_matches_javascript_reference(landmark_net, reference_and_inputs):
    ref, images, _ = reference_and_inputs
    with torch.inference_mode():
        points = landmark_net(preprocess(images))
    assert points.shape == (len(images), 68, 2) and points.dtype == torch.float32
    expected = np.array(ref["face_landmarks_68"]["points"], dtype=np.float64)
    # Observed max |diff| vs face-api.js 0.22.2 / tfjs-core 1.7.0 CPU: 1.8e-7.
    np.testing.assert_allclose(points.numpy().reshape(len(images), 136), expected, atol=1e-4)


def test_landmarks_are_where_a_face_has_them(landmark_net, reference_and_inputs):
    _, images, names = reference_and_inputs
    faces = [i for i, n in enumerate(names) if n.endswith(".jpg")]
    assert faces
    pts = landmark_net.predict(images[faces])
    assert pts.shape == (len(faces), 68, 2)
    assert (pts > -0.1).all() and (pts < 1.1).all()
    for p in pts:
        eyes_y, mouth_y = p[36:48, 1].mean(), p[48:68, 1].mean()
        nose_tip_y, brows_y = p[30, 1], p[17:27, 1].mean()
        assert brows_y < eyes_y < nose_tip_y < mouth_y
        assert p[36:42, 0].mean() < p[42:48, 0].mean()  # image-left eye first
        assert p[0, 0] < p[8, 0] < p[16, 0]  # jaw: left to chin to right


def test_parameter_count(landmark_net):
    assert sum(p.numel() for p in landmark_net.parameters()) == 356_840  # 322k + FC 256x136


def test_truncated_bin_is_rejected(landmark_folder, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("face_landmark_68_model-weights_manifest.json", "face_landmark_68_model.bin"):
        shutil.copyfile(landmark_folder / name, folder / name)
    data = (folder / "face_landmark_68_model.bin").read_bytes()
    (folder / "face_landmark_68_model.bin").write_bytes(data[:1000])
    with pytest.raises(TfjsWeightsError, match=r"face_landmark_68_model\.bin.*too short"):
        FaceLandmark68Net.from_folder(folder)


def test_expression_weights_do_not_load_as_landmarks(cache, tmp_path):
    """The same 49 weight names, but a 256x7 head: a clear error, not a silent mix-up."""
    expression = cache.path(get_model("face-expression"))
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copyfile(
        expression / "face_expression_model-weights_manifest.json",
        folder / "face_landmark_68_model-weights_manifest.json",
    )
    shutil.copyfile(expression / "face_expression_model.bin", folder / "face_expression_model.bin")
    with pytest.raises(TfjsWeightsError, match=r"weights_manifest\.json: .*does not fit"):
        FaceLandmark68Net.from_folder(folder)
