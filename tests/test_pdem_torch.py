"""The PDEM torch network: layers, frames, stitching, loading, checkpoints, ONNX parity.

Real read speech (LibriVox, 16 kHz) through a tiny randomly initialised network of PDEM's
architecture family (fixed seed). References are independent of the code under test:
transformers' own Wav2Vec2Model and Wav2Vec2FeatureExtractor, onnxruntime, and the conv
stack probed sample by sample.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import save_file
from torch import nn

from emofeat.models import ModelUnavailableError
from emofeat_plugins.audio.pdem_torch import (
    HUB_ID,
    PDEM_CONFIG,
    FrameStitcher,
    PdemLoadError,
    PdemNetwork,
    load_network,
    num_frames,
    save_checkpoint,
    tiny_config,
)

SR = 16000


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono PCM WAV -> float32 in [-1, 1) (stdlib reader, independent of emofeat)."""
    with wave.open(str(path)) as w:
        assert w.getframerate() == SR and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


@pytest.fixture(scope="module")
def speech(speech_files) -> np.ndarray:
    """All LibriVox clips back to back: about 25 s of real speech."""
    return np.concatenate([read_wav(p) for p in speech_files])


@pytest.fixture(scope="module")
def net() -> PdemNetwork:
    torch.set_num_threads(2)
    torch.manual_seed(1234)
    return PdemNetwork(tiny_config()).eval()


def hf_reference(model: transformers.Wav2Vec2Model, signal: np.ndarray):
    """transformers' own pipeline: feature extractor normalisation, then the model."""
    fe = transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True
    )
    x = fe(signal, sampling_rate=SR, return_tensors="pt").input_values
    with torch.no_grad():
        return model(x, output_hidden_states=True)


# -- the network ----------------------------------------------------------------------


def test_pdem_config_builds_pdem_sized_network():
    cfg = transformers.Wav2Vec2Config(**PDEM_CONFIG)
    assert cfg.do_stable_layer_norm and cfg.feat_extract_norm == "layer"
    # the conv stack of wav2vec2-large-robust: 400-sample receptive field, 320-sample stride
    assert int(np.prod(cfg.conv_stride)) == 320
    with torch.device("meta"):  # no memory, no init time: just the parameter count
        n = sum(p.numel() for p in PdemNetwork(cfg).parameters())
    # wav2vec2-large-robust pruned to 12 layers + head: 165 M (its ONNX file is ~650 MB)
    assert 160e6 < n < 170e6


def test_frame_geometry_is_400_samples_every_320(net):
    """Probe the conv stack: frame k depends on samples [320 k, 320 k + 400) and no others."""
    fe = net.wav2vec2.feature_extractor
    for k in (0, 1, 4):
        x = torch.randn(1, 2400, requires_grad=True)
        fe(x)[0, :, k].sum().backward()
        touched = torch.nonzero(x.grad[0]).flatten()
        assert touched.min() == 320 * k and touched.max() == 320 * k + 399
        assert len(touched) == 400
    for t in (399, 400, 719, 720, 16000, 16000 * 4 + 123):
        with torch.no_grad():
            hf = net.wav2vec2._get_feat_extract_output_lengths(torch.tensor(t)).item()
        assert num_frames(t) == hf == (t - 400) // 320 + 1


def test_frames_layers_follow_documented_semantics(net, speech):
    sig = speech[: 3 * SR]
    ref = hf_reference(net.wav2vec2, sig)
    with torch.no_grad():
        frames = net.frames(torch.from_numpy(sig)[None], [0, 1, 2])
        pooled, logits = net(torch.from_numpy(sig)[None])
    n_layers = net.num_layers
    assert set(frames) == {0, 1, 2} and frames[0].shape == (1, num_frames(len(sig)), 32)
    # layers 0 .. N-1: transformers' hidden_states tuple
    for k in range(n_layers):
        torch.testing.assert_close(frames[k], ref.hidden_states[k], atol=1e-5, rtol=1e-5)
    # layer N: last_hidden_state (after the final LayerNorm), whose mean is the pooled output
    torch.testing.assert_close(frames[n_layers], ref.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, ref.last_hidden_state.mean(1), atol=1e-5, rtol=1e-5)
    # head: dropout -> dense -> tanh -> dropout -> out_proj (no dropout in eval)
    head = net.classifier
    want = head.out_proj(torch.tanh(head.dense(ref.last_hidden_state.mean(1))))
    torch.testing.assert_close(logits, want.detach(), atol=1e-5, rtol=1e-5)
    # only the layers asked for are returned
    with torch.no_grad():
        only = net.frames(torch.from_numpy(sig)[None], [1])
    assert set(only) == {1}
    torch.testing.assert_close(only[1], frames[1])


def test_bad_inputs_are_named(net):
    with pytest.raises(ValueError, match="out of range"):
        net.frames(torch.zeros(1, 16000), [3])
    with pytest.raises(ValueError, match="shorter than one frame"):
        net(torch.zeros(1, 399))
    with pytest.raises(ValueError, match="16000 Hz"):
        FrameStitcher(net, [1], sampling_rate=8000)


# -- stitching ------------------------------------------------------------------------


def stitch(net, signal, chunk, context, piece=0.37):
    st = FrameStitcher(net, [0, 1, 2], chunk=chunk, context=context)
    blocks = []
    step = int(piece * SR)
    for i in range(0, len(signal), step):
        blocks += st.push(signal[i : i + step])
        assert st.buffered <= st.capacity
    blocks += st.flush()
    starts = np.concatenate([b[0] for b in blocks])
    ends = np.concatenate([b[1] for b in blocks])
    data = {k: np.concatenate([b[2][k] for b in blocks]) for k in (0, 1, 2)}
    return starts, ends, data, st


def mean_dim_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over dimensions of the Pearson correlation over time."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    r = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return float(r.mean())


def test_stitched_frames_match_whole_pass(net, speech, capsys):
    sig = speech[: 20 * SR + 1234]  # a length that is not a multiple of the hop
    with torch.no_grad():
        whole = net.frames(torch.from_numpy(sig)[None], [0, 1, 2])
    n = num_frames(len(sig))
    s2, e2, d2, _ = stitch(net, sig, chunk=2.0, context=1.0)
    s5, e5, d5, _ = stitch(net, sig, chunk=5.0, context=1.0)
    k = np.arange(n)
    for starts, ends in ((s2, e2), (s5, e5)):
        assert len(starts) == n
        np.testing.assert_allclose(starts, k * 0.02, atol=1e-9)
        np.testing.assert_allclose(ends, k * 0.02 + 0.025, atol=1e-9)
    report = {}
    for layer in (0, 1, 2):
        w = whole[layer][0].numpy()
        assert d2[layer].shape == d5[layer].shape == w.shape
        assert d2[layer].dtype == np.float32
        r25 = mean_dim_corr(d2[layer], d5[layer])
        r2w = mean_dim_corr(d2[layer], w)
        r5w = mean_dim_corr(d5[layer], w)
        report[layer] = (round(r25, 5), round(r2w, 5), round(r5w, 5))
        # measured: 0.9955, 0.990, 0.993 (each segment is z-normalised on its own; with
        # the whole signal's statistics instead, 2 s chunks give 0.999 against the whole)
        assert r25 >= 0.99 and r2w >= 0.985 and r5w >= 0.99, report
    with capsys.disabled():
        print(f"\nstitching corr (2s vs 5s, 2s vs whole, 5s vs whole) per layer: {report}")


def test_one_segment_equals_whole_pass(net, speech):
    """A signal within one chunk plus context is one segment: exactly the whole pass."""
    sig = speech[: 6 * SR + 500]
    starts, ends, data, _ = stitch(net, sig, chunk=30.0, context=5.0)
    with torch.no_grad():
        whole = net.frames(torch.from_numpy(sig)[None], [0, 1, 2])
    for k in (0, 1, 2):
        np.testing.assert_allclose(data[k], whole[k][0].numpy(), atol=1e-6, rtol=0)


def test_stitcher_memory_is_bounded(net, speech):
    sig = speech[: 12 * SR]
    for pieces in (len(sig), SR, 777):  # all at once, 1 s pieces, odd small pieces
        st = FrameStitcher(net, [2], chunk=2.0, context=0.5)
        assert st.capacity == (2.0 + 2 * 0.5) * SR
        total = 0
        for i in range(0, len(sig), pieces):
            for starts, _, data in st.push(sig[i : i + pieces]):
                total += len(starts)
                assert data[2].shape == (len(starts), 32)
            assert st.buffered <= st.capacity
        total += sum(len(b[0]) for b in st.flush())
        assert st.max_buffered <= st.capacity
        assert total == num_frames(len(sig))


def test_stitcher_short_and_exact_inputs(net, speech):
    for n in (0, 399, 400, 720, SR * 2, SR * 2 + 80, SR * 3):
        st = FrameStitcher(net, [1], chunk=1.0, context=0.5)
        blocks = st.push(speech[:n]) + st.flush()
        got = sum(len(b[0]) for b in blocks)
        assert got == num_frames(n), n


# -- loading --------------------------------------------------------------------------


class HubHead(nn.Module):
    """The head as the public checkpoint names it (written here, not imported)."""

    def __init__(self, h: int) -> None:
        super().__init__()
        self.dense = nn.Linear(h, h)
        self.out_proj = nn.Linear(h, 3)


def write_hf_folder(folder: Path, fmt: str = "safetensors") -> tuple[nn.Module, nn.Module]:
    """An HF-layout PDEM folder written from transformers' own Wav2Vec2Model."""
    torch.manual_seed(7)
    cfg = tiny_config()
    cfg.id2label = {0: "arousal", 1: "dominance", 2: "valence"}
    w2v = transformers.Wav2Vec2Model(cfg).eval()
    head = HubHead(cfg.hidden_size)
    sd = {f"wav2vec2.{k}": v for k, v in w2v.state_dict().items()}
    sd.update({f"classifier.{k}": v for k, v in head.state_dict().items()})
    # the public checkpoint predates parametrized weight norm: weight_g / weight_v names
    sd = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v.contiguous()
        for k, v in sd.items()
    }
    assert "wav2vec2.encoder.pos_conv_embed.conv.weight_g" in sd
    folder.mkdir(parents=True, exist_ok=True)
    cfg.to_json_file(str(folder / "config.json"))
    if fmt == "safetensors":
        save_file(sd, str(folder / "model.safetensors"))
    else:
        torch.save(sd, folder / "pytorch_model.bin")
    (folder / "README.md").write_text("---\nlicense: cc-by-nc-sa-4.0\n---\n# model\n")
    return w2v, head


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_hf_folder_loads_with_identical_outputs(tmp_path, speech, fmt):
    w2v, head = write_hf_folder(tmp_path / "pdem", fmt)
    loaded, info = load_network(tmp_path / "pdem")
    assert info["labels"] == ["arousal", "dominance", "valence"]
    assert info["license"] == "CC-BY-NC-SA-4.0" and info["format"] == "huggingface"
    assert len(info["sha256"]) == 64 and info["id"] == "pdem"
    sig = speech[SR : 5 * SR]
    ref = hf_reference(w2v, sig).last_hidden_state.mean(1)
    with torch.no_grad():
        ref_logits = head.out_proj(torch.tanh(head.dense(ref)))
        pooled, logits = loaded(torch.from_numpy(sig)[None])
    torch.testing.assert_close(pooled, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)


def test_emofeat_checkpoint_round_trip(tmp_path, net, speech):
    gru = nn.GRU(32, 8, num_layers=2, batch_first=True)
    folder = save_checkpoint(
        net,
        tmp_path / "best",
        training={"variant": "v3", "unfrozen": 4},
        metrics={"dev_ccc": 0.41},
        extra_heads={"v1": gru, "lin": {"state_dict": {"w": torch.ones(2, 3)}, "dims": 3}},
    )
    assert json.loads((folder / "emofeat.json").read_text())["format"] == "emofeat-pdem-checkpoint"
    loaded, info = load_network(folder)
    assert info["format"] == "emofeat" and info["training"]["variant"] == "v3"
    assert info["metrics"] == {"dev_ccc": 0.41} and info["license"] == "CC-BY-NC-SA-4.0"
    assert info["extra_heads"]["lin"]["spec"] == {"dims": 3}
    assert info["extra_heads"]["v1"]["spec"] == {"class": "GRU"}
    for k, v in gru.state_dict().items():
        assert torch.equal(info["extra_heads"]["v1"]["state_dict"][k], v)
    x = torch.from_numpy(speech[: 4 * SR])[None]
    with torch.no_grad():
        for a, b in zip(net(x), loaded(x), strict=True):
            assert torch.equal(a, b)
        fa, fb = net.frames(x, [1, 2]), loaded.frames(x, [1, 2])
    assert all(torch.equal(fa[k], fb[k]) for k in (1, 2))


def test_load_errors_name_the_file(tmp_path, monkeypatch):
    with pytest.raises(PdemLoadError, match="no such model folder"):
        load_network(tmp_path / "nothing")
    write_hf_folder(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(PdemLoadError, match=r"m: no model.safetensors or pytorch_model.bin"):
        load_network(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text('{"hidden_size": 32,\n oops}')
    with pytest.raises(PdemLoadError, match=r"config.json: line 2"):
        load_network(tmp_path / "m")
    # weights of another size than config.json says
    write_hf_folder(tmp_path / "w")
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())
    cfg["intermediate_size"] = 48
    (tmp_path / "w" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PdemLoadError, match=r"model.safetensors: .*feed_forward.* shape"):
        load_network(tmp_path / "w")


def test_hub_id_offline_gives_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    # offline and an empty cache: no network waits, no cached copy
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelUnavailableError) as err:
        load_network(HUB_ID)
    msg = str(err.value)
    assert HUB_ID in msg and "HF_HUB_OFFLINE" in msg
    assert "--local-dir" in msg and "pass the folder" in msg


# -- ONNX parity ----------------------------------------------------------------------


def test_onnx_export_matches_forward(tmp_path, net, speech):
    import onnxruntime as ort

    path = tmp_path / "pdem_tiny.onnx"
    example = torch.from_numpy(speech[: 4 * SR])[None]
    torch.onnx.export(
        net,
        (example,),
        str(path),
        input_names=["signal"],
        output_names=["hidden_states", "logits"],
        dynamic_axes={"signal": {1: "time"}},
        dynamo=False,
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    win, hop = 4 * SR, 2 * SR
    starts = range(0, len(speech) - win + 1, hop)
    worst = 0.0
    for s in starts:
        w = speech[s : s + win][None]
        hs, lg = sess.run(None, {"signal": w})
        with torch.no_grad():
            p, lo = net(torch.from_numpy(w))
        worst = max(worst, np.abs(hs - p.numpy()).max(), np.abs(lg - lo.numpy()).max())
    assert len(starts) >= 10
    assert worst < 1e-4, worst
    # a window of another length runs through the dynamic time axis
    hs, _ = sess.run(None, {"signal": speech[: 3 * SR + 17][None]})
    assert hs.shape == (1, 32)
