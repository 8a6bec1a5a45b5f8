"""``pdem`` (ONNX backend) and its registry entry, with a tiny PDEM-shaped model built here.

The model has PDEM's interface (input ``signal`` (1, samples) at 16 kHz; outputs
``hidden_states`` and ``logits`` labelled arousal, dominance, valence, through audonnx) but
16 hidden values. References are independent of our code: audinterface's canonical
windowed recipe, hashlib over the zip members, audiofile for decoding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import threading
import zipfile
from fractions import Fraction
from pathlib import Path

import audinterface
import audiofile
import audonnx
import av
import numpy as np
import pytest
from conftest import run_cli

import emofeat
from emofeat.models import (
    LicenseNotAcceptedError,
    ModelCache,
    ModelUnavailableError,
    Source,
    get_model,
)

SR = 16000
LABELS = ["arousal", "dominance", "valence"]
HIDDEN = 16


def build_tiny_pdem(root: Path, dynamic_batch: bool = False, seed: int = 0) -> Path:
    """Export a small PDEM-shaped network to ``root/model.onnx`` + audonnx ``model.yaml``."""
    import torch

    torch.set_num_threads(1)

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            # one 25 ms / 20 ms frame layer like wav2vec 2.0's front end, then mean pooling
            self.conv = torch.nn.Conv1d(1, HIDDEN, 400, stride=320)
            self.mix = torch.nn.Linear(HIDDEN, HIDDEN)
            self.head = torch.nn.Linear(HIDDEN, 3)

        def forward(self, signal):
            x = (signal - signal.mean(-1, keepdim=True)) / (signal.std(-1, keepdim=True) + 1e-7)
            h = torch.tanh(self.mix(torch.tanh(self.conv(x[:, None, :])).transpose(1, 2)))
            pooled = h.mean(1)
            return pooled, torch.sigmoid(self.head(pooled))

    root.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 1: "time"} if dynamic_batch else {1: "time"}
    torch.onnx.export(
        Tiny().eval(),
        torch.zeros(1, SR),
        str(root / "model.onnx"),
        input_names=["signal"],
        output_names=["hidden_states", "logits"],
        dynamic_axes={"signal": axes},
        dynamo=False,
    )
    model = audonnx.Model(str(root / "model.onnx"), labels={"logits": LABELS})
    model.to_yaml(str(root / "model.yaml"))
    return root


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in ("model.onnx", "model.yaml"):
            z.write(folder / name, prefix + name)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_pdem(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tiny_zip(tiny, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("zip") / "w2v2-L-robust-12.6bc4a7fd-1.1.0.zip"
    path.write_bytes(zip_folder(tiny))
    return path


@pytest.fixture(scope="module")
def speech(speech_files) -> np.ndarray:
    """All LibriVox clips one after the other: 24.7 s of real speech at 16 kHz."""
    return np.concatenate([audiofile.read(str(f))[0] for f in speech_files]).astype(np.float32)


def canonical(folder: Path, signal: np.ndarray, sr: int, output: str, win=4.0, hop=2.0):
    """What users run today: audinterface.Feature over the audonnx model."""
    model = audonnx.load(str(folder))
    interface = audinterface.Feature(
        model.labels(output),
        process_func=model,
        process_func_args={"outputs": output},
        sampling_rate=SR,
        resample=True,
        win_dur=win,
        hop_dur=hop,
    )
    return interface.process_signal(signal, sr)


def run_extractor(ex, signal: np.ndarray, chunk: int = 5 * SR):
    """Feed an extractor 16 kHz audio in chunks, as the engine does; rows per stream."""
    from emofeat.media import AudioChunk

    ex.begin(None)
    rows = []
    for a in range(0, len(signal), chunk):
        rows += list(ex.process(AudioChunk(signal[a : a + chunk], SR, a / SR, a)))
    rows += list(ex.end())
    out = {}
    for name in {r.stream for r in rows}:
        parts = [r for r in rows if r.stream == name]
        out[name] = (
            np.concatenate([r.data for r in parts]),
            np.concatenate([r.start for r in parts]),
            np.concatenate([r.end for r in parts]),
            np.concatenate([np.ones(len(r), bool) if r.valid is None else r.valid for r in parts]),
            parts[0].labels,
        )
    return out


# -- parity --------------------------------------------------------------------------------


@pytest.mark.parametrize(("win", "hop"), [(4.0, 2.0), (2.0, 0.5)])
def test_onnx_backend_equals_audinterface_recipe(tiny, speech, win, hop):
    from emofeat_plugins.audio.pdem import Pdem

    ex = Pdem({"model": str(tiny), "win": win, "hop": hop, "threads": 1})
    got = run_extractor(ex, speech)
    for output in ("hidden_states", "logits"):
        ref = canonical(tiny, speech, SR, output, win, hop)
        data, start, end, valid, labels = got[output]
        n = len(ref)
        assert n >= 5
        # every window both produce: same start-aligned spans, values within 1e-5
        ref_start = ref.index.get_level_values("start").total_seconds().to_numpy()
        ref_end = ref.index.get_level_values("end").total_seconds().to_numpy()
        np.testing.assert_allclose(start[:n], ref_start, atol=1e-9)
        np.testing.assert_allclose(end[:n], ref_end, atol=1e-9)
        assert np.abs(data[:n] - ref.to_numpy()).max() <= 1e-5
        assert list(labels) == list(ref.columns)
        # audinterface drops the final partial window; we keep it, zero-padded and invalid
        assert valid[:n].all() and not valid[n:].any() and len(data) == n + 1
        assert end[-1] - start[-1] == pytest.approx(win)
    assert got["logits"][4] == tuple(LABELS)


def test_batched_model_gives_the_same_windows(tmp_path, speech):
    from emofeat_plugins.audio.pdem import OnnxPdem, Pdem

    folder = build_tiny_pdem(tmp_path / "dyn", dynamic_batch=True)
    assert OnnxPdem(folder).max_batch == 0  # a free batch axis: windows are stacked
    one = run_extractor(Pdem({"model": str(folder), "batch": 1, "hop": 1.0}), speech)
    five = run_extractor(Pdem({"model": str(folder), "batch": 5, "hop": 1.0}), speech)
    for name in ("hidden_states", "logits"):
        np.testing.assert_allclose(one[name][0], five[name][0], atol=1e-6)
        np.testing.assert_array_equal(one[name][1], five[name][1])
    # same weights exported with PDEM's fixed batch of 1 (audonnx itself cannot feed a model
    # with two free axes): the canonical recipe on it equals our batched windows
    fixed = build_tiny_pdem(tmp_path / "fixed")
    ref = canonical(fixed, speech, SR, "logits", 4.0, 1.0)
    assert np.abs(five["logits"][0][: len(ref)] - ref.to_numpy()).max() <= 1e-5
    # with a fixed batch of 1 the batch setting is ignored, not an error
    assert OnnxPdem(fixed).max_batch == 1
    fixed_five = run_extractor(Pdem({"model": str(fixed), "batch": 5, "hop": 1.0}), speech)
    np.testing.assert_allclose(fixed_five["logits"][0], five["logits"][0], atol=1e-6)


def test_one_session_per_extractor(tiny, speech):
    from emofeat_plugins.audio.pdem import Pdem

    ex = Pdem({"model": str(tiny)})
    run_extractor(ex, speech[: 9 * SR])
    session = ex._onnx.model.sess
    run_extractor(ex, speech[: 5 * SR])  # a second input
    assert ex._onnx.model.sess is session


# -- the registry entry --------------------------------------------------------------------


def test_registry_entry():
    pdem = get_model("pdem")
    assert pdem.license == "CC-BY-NC-SA-4.0" and not pdem.commercial_use
    assert [s.kind for s in pdem.sources] == ["url", "audmodel"]
    assert pdem.sources[0].location == (
        "https://zenodo.org/record/6221127/files/w2v2-L-robust-12.6bc4a7fd-1.1.0.zip"
    )
    assert pdem.sources[1].location == "6bc4a7fd-1.1.0"
    assert {f.name for f in pdem.files} == {"model.onnx", "model.yaml"}
    from emofeat_plugins.audio.pdem import Pdem

    assert Pdem.license == pdem.license and Pdem.commercial_use is False


class _Server(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        type(self).requests.append(self.path)
        body = type(self).files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server():
    handler = type("H", (_Server,), {"files": {}, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _quiet(*_):
    return lambda n: None


def test_archive_fetch_records_digests_and_checks_the_model(server, tiny, tmp_path):
    handler, base = server
    pdem = get_model("pdem")
    # the published archive unpacks at its root; a copy with a top folder works too
    handler.files["/pdem.zip"] = zip_folder(tiny, prefix="w2v2-L-robust-12/")
    local = dataclasses.replace(
        pdem, sources=(Source("url", base + "/pdem.zip", pdem.sources[0].members),)
    )
    cache = ModelCache(tmp_path / "cache", progress=_quiet)
    with pytest.raises(LicenseNotAcceptedError, match="--accept-license"):
        cache.fetch(local)
    assert handler.requests == []  # nothing downloaded before the opt-in
    folder = cache.fetch(local, accept_license=True)
    expected = {n: hashlib.sha256((tiny / n).read_bytes()).hexdigest() for n in ("model.onnx",)}
    assert cache.recorded(local)["model.onnx"] == expected["model.onnx"]
    assert (folder / "model.yaml").read_bytes() == (tiny / "model.yaml").read_bytes()
    assert len(cache.model_sha256(local)) == 64
    assert not list((tmp_path / "cache" / ".tmp").glob("pdem-*"))  # archive not kept
    assert cache.is_cached(local) and cache.path(local) == folder
    assert len(handler.requests) == 1

    # a zip that is not PDEM-shaped is refused by the model's check, not cached
    other = tmp_path / "other"
    build_tiny_pdem(other)
    import onnx

    proto = onnx.load(str(other / "model.onnx"))
    proto.graph.output[1].name = "scores"
    proto.graph.node[-1].output[0] = "scores"
    onnx.save(proto, str(other / "model.onnx"))
    handler.files["/bad.zip"] = zip_folder(other)
    bad_source = dataclasses.replace(local.sources[0], location=base + "/bad.zip")
    bad = dataclasses.replace(local, sources=(bad_source,))
    cache2 = ModelCache(tmp_path / "cache2", progress=_quiet)
    with pytest.raises(ModelUnavailableError, match="not PDEM-shaped"):
        cache2.fetch(bad, accept_license=True)
    assert not cache2.is_cached(bad)

    # an archive checksum, when known, is verified before unpacking
    good_zip = handler.files["/pdem.zip"]
    right = "sha256:" + hashlib.sha256(good_zip).hexdigest()
    for checksum, ok in (("md5:" + "0" * 32, False), (right, True)):
        src = dataclasses.replace(local.sources[0], checksum=checksum)
        c = ModelCache(tmp_path / f"c-{ok}", progress=_quiet)
        m = dataclasses.replace(local, sources=(src,))
        if ok:
            assert c.fetch(m, accept_license=True).is_dir()
        else:
            with pytest.raises(ModelUnavailableError, match="checksum mismatch for"):
                c.fetch(m, accept_license=True)


def test_audmodel_source_without_the_package(tmp_path):
    import importlib.util

    assert importlib.util.find_spec("audmodel") is None  # not installed here
    pdem = get_model("pdem")
    only = dataclasses.replace(pdem, sources=(pdem.sources[1],))
    with pytest.raises(ModelUnavailableError) as err:
        ModelCache(tmp_path / "c").fetch(only, accept_license=True)
    msg = str(err.value)
    assert "audmodel uid 6bc4a7fd-1.1.0" in msg
    assert "the audmodel package is not installed" in msg and "pip install audmodel" in msg


# -- the CLI -------------------------------------------------------------------------------


def write_talk(path: Path, signal: np.ndarray, fps=Fraction(25)) -> Path:
    """A generated video with real speech as its (lossless PCM) audio track."""
    n_frames = int(len(signal) / SR * fps)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        ast = out.add_stream("pcm_s16le", rate=SR)
        ast.layout = "mono"
        for i in range(n_frames):
            img = np.full((48, 64, 3), (i * 7) % 256, np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        pcm = (np.clip(signal, -1, 1) * 32767).round().astype(np.int16)
        for a in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[None, a : a + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SR, a, Fraction(1, SR)
            for p in ast.encode(frame):
                out.mux(p)
        for p in ast.encode():
            out.mux(p)
    return path


def test_offline_fetch_error_names_files_and_how_to_provide(tmp_path):
    # a proxy nobody listens on: offline on any machine, whatever its network
    env = {
        "EMOFEAT_CACHE_DIR": str(tmp_path / "cache"),
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
    }
    res = run_cli("models", "fetch", "pdem", "--accept-license", env=env)
    assert res.returncode != 0
    err = " ".join(res.stderr.split())
    assert "model.onnx" in err and "model.yaml" in err
    assert "w2v2-L-robust-12.6bc4a7fd-1.1.0.zip" in err
    assert "emofeat models import pdem" in err
    assert "audmodel package is not installed" in err
    assert str(tmp_path / "cache") in err  # where the files must go


def test_cli_import_opt_in_and_extract_video_with_speech(tiny_zip, tiny, speech, tmp_path):
    env = {"EMOFEAT_CACHE_DIR": str(tmp_path / "cache")}
    imported = run_cli("models", "import", "pdem", str(tiny_zip), env=env)
    assert imported.returncode == 0, imported.stderr
    talk = write_talk(tmp_path / "talk.mkv", speech[: int(9.5 * SR)])
    out = tmp_path / "feats.h5"

    # (3) no opt-in: one clear usage error before any input, nothing computed or written
    res = run_cli("extract", "-q", "--plugin", "pdem", str(talk), "-o", str(out), env=env)
    assert res.returncode == 2
    assert "CC-BY-NC-SA-4.0" in res.stderr and "--accept-license" in res.stderr
    assert res.stderr.count("--accept-license") == 1 and not out.exists()

    accepted = run_cli("models", "fetch", "pdem", "--accept-license", env=env)
    assert accepted.returncode == 0, accepted.stderr  # already imported: nothing to download
    silent = tmp_path / "silent.mp4"
    emofeat.samples.write_video(silent, duration=1.0, fps=25, audio=False)
    res = run_cli(
        "extract", "-q", "--plugin", "pdem", str(talk), str(silent), "-o", str(out), env=env
    )
    assert res.returncode == 0, res.stderr
    assert "skipped" in res.stderr and "no audio track" in " ".join(res.stderr.split())

    store = emofeat.open_store(out)
    logits = store.read("talk", "pdem", "logits")
    hidden = store.read("talk", "pdem", "hidden_states")
    assert logits.labels == LABELS and hidden.data.shape == (4, HIDDEN)
    # windows [0,4) [2,6) [4,8) full; [6,10) reaches past the 9.5 s of audio: kept, padded
    np.testing.assert_allclose(logits.times[:, 0], [0, 2, 4, 6])
    np.testing.assert_allclose(logits.times[:, 1], [4, 6, 8, 10])
    np.testing.assert_array_equal(logits.mask, [True, True, True, False])
    ref = canonical(tiny, speech[: int(9.5 * SR)], SR, "logits")
    assert len(ref) == 3 and np.abs(logits.data[:3] - ref.to_numpy()).max() <= 1e-5

    # frame-aligned view: a 25 fps frame takes the window centred nearest to it
    aligned = store.read("talk", "pdem", "logits", aligned=True)
    centres = aligned.times.mean(1)
    assert len(centres) == 237  # 9.48 s of video at 25 fps
    expect_row = np.clip(np.floor((centres - 2.0 + 1.0) / 2.0).astype(int), 0, 3)
    np.testing.assert_array_equal(aligned.row, expect_row)
    # frames whose nearest window is padded (row 3: centres from 7 s on) are masked
    np.testing.assert_array_equal(aligned.mask, expect_row < 3)

    attrs = store.item_attrs("talk", "pdem")
    assert attrs["license"] == "CC-BY-NC-SA-4.0"
    assert attrs["model_id"] == "pdem@w2v2-L-robust-12.6bc4a7fd-1.1.0"
    onnx_digest = hashlib.sha256((tiny / "model.onnx").read_bytes()).hexdigest()
    record = json.loads(
        (tmp_path / "cache/pdem/w2v2-L-robust-12.6bc4a7fd-1.1.0/.complete").read_text()
    )
    assert record["files"]["model.onnx"] == onnx_digest
    assert len(attrs["model_sha256"]) == 64
    log = store.run_log()
    skipped = log[(log.get("status") == "skipped")]
    assert any("no audio track" in str(m) for m in skipped["message"])


def test_resampled_input_measured_against_audinterface(tiny, speech, tmp_path):
    """Our engine resamples with PyAV (FFmpeg's swr), audinterface with audresample (soxr):
    the signals differ slightly, so outputs are compared with a measured tolerance."""
    import audresample

    env = {"EMOFEAT_CACHE_DIR": str(tmp_path / "cache")}
    sig = speech[: 12 * SR]
    worst = {}
    for rate in (44100, 48000):
        hi = audresample.resample(sig, SR, rate)[0].astype(np.float32)
        wav = tmp_path / f"speech{rate}.wav"
        audiofile.write(str(wav), hi, rate, bit_depth=32)
        out = tmp_path / f"f{rate}.h5"
        res = run_cli(
            "extract", "-q", "-p", "pdem", "--set", f"pdem.model={tiny}",
            str(wav), "-o", str(out), env=env,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        got = emofeat.open_store(out).read(wav.stem, "pdem", "hidden_states")
        ref = canonical(tiny, hi, rate, "hidden_states")
        n = len(ref)
        diff = np.abs(got.data[:n] - ref.to_numpy()).max()
        worst[rate] = diff
        # same windows; values agree closely (the tiny model's outputs are O(0.1-1))
        # measured: 1.9e-5 at both rates (tiny model, 12 s of LibriVox speech)
        assert got.mask[:n].all() and diff < 1e-4, (rate, diff)
    print("max |ours - audinterface| after resampling:", worst)


# -- INT8 ----------------------------------------------------------------------------------


def test_int8_cached_beside_the_model_and_close_to_fp32(tmp_path, speech):
    import shutil

    from emofeat_plugins.audio.pdem import Pdem

    folder = tmp_path / "m"
    shutil.copytree(build_tiny_pdem(tmp_path / "src", seed=1), folder)
    fp32 = run_extractor(Pdem({"model": str(folder), "hop": 1.0}), speech)
    ex = Pdem({"model": str(folder), "hop": 1.0, "int8": True})
    int8 = run_extractor(ex, speech)
    made = folder / "model.int8.onnx"
    assert made.is_file() and (folder / "model.int8.yaml").is_file()
    record = json.loads((folder / "model.int8.json").read_text())
    assert (
        record["source_sha256"] == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    )
    assert ex.model().id.endswith("+int8-dynamic") and ex.model().sha256 == record["sha256"]
    assert record["op_types"] == ["MatMul", "Gemm"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(made)).graph.node}
    assert "MatMulInteger" in ops and "ConvInteger" not in ops  # the front end stays fp32
    mtime = made.stat().st_mtime_ns
    again = run_extractor(Pdem({"model": str(folder), "hop": 1.0, "int8": True}), speech)
    assert made.stat().st_mtime_ns == mtime  # reused, not quantised again
    np.testing.assert_array_equal(again["logits"][0], int8["logits"][0])
    # the quantised model really is another model, and close to fp32 (CCC per dimension)
    a, b = fp32["hidden_states"][0], int8["hidden_states"][0]
    assert not np.array_equal(a, b)
    for j in range(a.shape[1]):
        x, y = a[:, j], b[:, j]
        ccc = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
        assert ccc >= 0.99, (j, ccc)  # measured: 0.999 at worst


# -- settings ------------------------------------------------------------------------------


def test_bad_settings_are_clear(tmp_path):
    from emofeat_plugins.audio.pdem import Pdem

    with pytest.raises(emofeat.ConfigError, match="level=frames needs the torch backend"):
        Pdem({"level": "frames"})
    with pytest.raises(emofeat.ConfigError, match="int8 applies to the onnx backend"):
        Pdem({"backend": "torch", "int8": True})
    with pytest.raises(emofeat.ConfigError, match="must be positive seconds"):
        Pdem({"hop": 0.0})
    with pytest.raises(emofeat.ConfigError, match="no model.yaml there"):
        Pdem({"model": str(tmp_path)}).begin(None)
    (tmp_path / "model.yaml").write_text("just: text\n")
    with pytest.raises(emofeat.ConfigError, match="model.yaml.*not an audonnx model file"):
        Pdem({"model": str(tmp_path)}).begin(None)


# -- the torch backend, wired through the extractor -----------------------------------------


@pytest.fixture(scope="module")
def tiny_torch(tmp_path_factory):
    """A tiny random Wav2Vec2 PDEM network: an emofeat checkpoint and its ONNX export."""
    import torch

    from emofeat_plugins.audio.pdem_torch import PdemNetwork, save_checkpoint, tiny_config

    torch.manual_seed(3)
    net = PdemNetwork(tiny_config()).eval()
    root = tmp_path_factory.mktemp("torchpdem")
    ckpt = save_checkpoint(net, root / "ckpt")
    onnx_dir = root / "onnx"
    onnx_dir.mkdir()
    torch.onnx.export(
        net,
        torch.randn(1, SR),
        str(onnx_dir / "model.onnx"),
        input_names=["signal"],
        output_names=["hidden_states", "logits"],
        dynamic_axes={"signal": {1: "time"}},
        dynamo=False,
    )
    audonnx.Model(str(onnx_dir / "model.onnx"), labels={"logits": LABELS}).to_yaml(
        str(onnx_dir / "model.yaml")
    )
    return net, ckpt, onnx_dir


def test_torch_windows_equal_onnx_windows(tiny_torch, speech):
    from emofeat_plugins.audio.pdem import Pdem

    _, ckpt, onnx_dir = tiny_torch
    sig = speech[: 11 * SR]
    by_onnx = run_extractor(Pdem({"model": str(onnx_dir), "hop": 1.0}), sig)
    by_torch = run_extractor(
        Pdem({"backend": "torch", "model": str(ckpt), "hop": 1.0, "batch": 4}), sig
    )
    for name in ("hidden_states", "logits"):
        assert np.abs(by_onnx[name][0] - by_torch[name][0]).max() <= 1e-4
        np.testing.assert_array_equal(by_onnx[name][1], by_torch[name][1])
        np.testing.assert_array_equal(by_onnx[name][3], by_torch[name][3])
    assert by_torch["logits"][4] == tuple(LABELS)
    assert len(by_torch["hidden_states"][4]) == 32


def test_torch_frames_of_layers_with_true_times(tiny_torch, speech):
    import torch

    from emofeat_plugins.audio.pdem import Pdem

    net, ckpt, _ = tiny_torch
    sig = speech[: 10 * SR]
    n = (len(sig) - 400) // 320 + 1  # wav2vec 2.0 frames: 25 ms every 20 ms
    with torch.inference_mode():
        whole = net.frames(torch.from_numpy(sig)[None], [1, 2])
    # chunk longer than the input: one pass, the same frames as the network on the whole
    # signal; short chunks: stitched, close to it (the chunk-size bound on real PDEM-sized
    # models is tested with the stitcher itself, tests/test_pdem_torch.py)
    for chunk, context, tol in ((30.0, 2.0, None), (3.0, 1.0, 0.98)):
        ex = Pdem(
            {"backend": "torch", "model": str(ckpt), "level": "frames", "layers": ["1", "2"],
             "chunk": chunk, "context": context}
        )  # fmt: skip
        assert [s.name for s in ex.streams()] == ["layer1", "layer2"]
        got = run_extractor(ex, sig, chunk=SR)
        for layer in (1, 2):
            data, start, end, valid, labels = got[f"layer{layer}"]
            assert data.shape == (n, 32) and valid.all() and len(labels) == 32
            np.testing.assert_allclose(start, np.arange(n) * 0.02, atol=1e-9)
            np.testing.assert_allclose(end - start, 0.025, atol=1e-9)
            ref = whole[layer][0].numpy()
            if tol is None:
                np.testing.assert_allclose(data, ref, atol=1e-4)
            else:
                assert np.corrcoef(data.ravel(), ref.ravel())[0, 1] >= tol


def test_torch_registry_default_needs_the_licence_opt_in(tmp_path):
    from emofeat_plugins.audio.pdem import Pdem

    ex = Pdem({"backend": "torch", "cache_dir": str(tmp_path / "c")})
    with pytest.raises(LicenseNotAcceptedError, match="--accept-license"):
        ex.begin(None)


def test_cli_torch_frames(tiny_torch, speech, tmp_path):
    _, ckpt, _ = tiny_torch
    talk = write_talk(tmp_path / "talk.mkv", speech[: 5 * SR])
    out = tmp_path / "f.h5"
    res = run_cli(
        "extract", "-q", "--plugin", "pdem", "--set", "pdem.backend=torch",
        "--set", "pdem.layers=1,2", "--set", "pdem.level=frames",
        "--set", f"pdem.model={ckpt}", str(talk), "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(out)
    assert store.streams("talk", "pdem") == ["layer1", "layer2"]
    layer = store.read("talk", "pdem", "layer2")
    assert layer.data.shape == ((5 * SR - 400) // 320 + 1, 32) and layer.mask.all()
    assert store.read("talk", "pdem", "layer2", aligned=True).data.shape[0] == 125  # 25 fps


def test_pdem_masked_by_vad_on_a_video_with_a_silent_stretch(tiny, speech, tmp_path):
    """``--plugin vad --plugin pdem --set pdem.mask=vad``: windows and frames in silence are
    masked, windows on speech stay valid (the issue's third command)."""
    sig = np.concatenate(
        [speech[: 4 * SR], np.zeros(6 * SR, np.float32), speech[4 * SR : 8 * SR]]
    ).astype(np.float32)
    talk = write_talk(tmp_path / "talk.mkv", sig)
    out = tmp_path / "feats.h5"
    res = run_cli(
        "extract", "-q", "--plugin", "vad", "--plugin", "pdem",
        "--set", f"pdem.model={tiny}", "--set", "pdem.hop=1.0", "--set", "pdem.mask=vad",
        str(talk), "-o", str(out),
        env={"EMOFEAT_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(out)
    logits = store.read("talk", "pdem", "logits")
    starts = logits.times[:, 0]
    valid = dict(zip(starts.round(1), logits.mask, strict=True))
    assert valid[0.0] and valid[10.0]  # [0, 4) and [10, 14): speech
    assert not valid[5.0] and not valid[6.0]  # [5, 9) and [6, 10): silence
    speech_flag = store.read("talk", "vad", "speech", aligned=True)
    aligned = store.read("talk", "pdem", "logits", aligned=True)
    centres = aligned.times.mean(axis=1)
    silent = (centres > 5.5) & (centres < 9.5)
    assert not aligned.mask[silent].any()
    # a frame is kept only where the vad stream says speech
    assert not (aligned.mask & (speech_flag.data[:, 0] < 0.5)).any()
    assert aligned.mask[centres < 3.5].mean() > 0.9
    attrs = store.item_attrs("talk", "pdem")
    assert attrs["mask"]["extractor"] == "vad" and attrs["mask"]["stream"] == "speech"
