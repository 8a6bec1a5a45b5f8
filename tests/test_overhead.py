"""The per-input fast paths give the same results as the slow ones they replace.

Short clips pay a fixed cost per input; these paths cut it (see docs/benchmarks.md, "Fixed
cost per input"): WAV files opened without FFmpeg's read-ahead and read in 8 KiB packets, the
probe's container handed to the decoding, audio already at the wanted rate converted without
the resampler, the item writer's own description instead of reading the file back, one group
sync of the store instead of an fsync per file, and provenance as one attribute. Each is
checked here against the path it replaces.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import run_cli
from test_reliability import assert_same_data

import emofeat
from emofeat import faults
from emofeat.itemfile import describe_item, plain_dataset, scalar_attr
from emofeat.media import Decoder, probe
from emofeat.media.probing import _take_probed, open_container
from emofeat.samples import write_audio
from emofeat.store import FeatureStore

RATE = 16000


def _write_wav(path: Path, fmt: str, layout: str, rate: int = RATE, seconds: float = 2.3) -> Path:
    """A WAV of a chirp plus noise in the sample format ``fmt`` (PyAV encodes it)."""
    codec = {"s16": "pcm_s16le", "s32": "pcm_s32le", "flt": "pcm_f32le"}[fmt]
    n = int(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(7)
    mono = 0.5 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(n)
    channels = 1 if layout == "mono" else 2
    planes = np.stack([mono * (0.9 - 0.3 * c) for c in range(channels)])
    with av.open(str(path), "w") as out:
        st = out.add_stream(codec, rate=rate, layout=layout)
        for start in range(0, n, 4096):
            block = planes[:, start : start + 4096]
            if fmt == "flt":
                data, src = block.astype(np.float32), "fltp"
            elif fmt == "s16":
                data, src = np.round(block * 32767).astype(np.int16), "s16p"
            else:
                data, src = np.round(block * 2**31 * 0.99).astype(np.int32), "s32p"
            frame = av.AudioFrame.from_ndarray(data, format=src, layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for p in st.encode(frame):
                out.mux(p)
        for p in st.encode():
            out.mux(p)
    return path


def _reference(path: Path, rate: int) -> np.ndarray:
    """Mono float32 samples at ``rate`` the way the decoder made them before the fast
    path: FFmpeg's default open, FFmpeg's resampler on every frame, channels averaged."""
    resampler = av.AudioResampler(format="fltp", layout=None, rate=rate)
    parts = []
    with av.open(str(path)) as c:
        for frame in c.decode(audio=0):
            for out in resampler.resample(frame):
                planes = out.to_ndarray()
                parts.append(planes[0] if planes.shape[0] == 1 else planes.mean(axis=0))
        for out in resampler.resample(None):
            planes = out.to_ndarray()
            parts.append(planes[0] if planes.shape[0] == 1 else planes.mean(axis=0))
    return np.concatenate(parts).astype(np.float32)


def _decoded(path: Path, rate: int) -> np.ndarray:
    info = probe(path, keep=True)
    chunks = list(Decoder(info, audio_rates=[rate]))
    return np.concatenate([c.samples for c in chunks])


@pytest.mark.parametrize(
    ("fmt", "layout", "rate"),
    [
        ("s16", "mono", RATE),
        ("s16", "stereo", RATE),
        ("s32", "stereo", RATE),
        ("flt", "mono", RATE),
        ("s16", "mono", 44100),  # another rate: through the resampler, as before
    ],
)
def test_wav_samples_equal_ffmpeg_resampler_output(tmp_path, fmt, layout, rate):
    path = _write_wav(tmp_path / f"{fmt}_{layout}_{rate}.wav", fmt, layout, rate)
    ours = _decoded(path, RATE)
    ref = _reference(path, RATE)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)


def test_wav_probe_without_read_ahead_reads_the_same_header(tmp_path, speech_files):
    for path in [*speech_files[:2], _write_wav(tmp_path / "st.wav", "s32", "stereo", 22050)]:
        info = probe(path)
        with av.open(str(path)) as c:  # FFmpeg's default: reads ahead to learn the streams
            st = c.streams.audio[0]
            assert info.audio_rate == st.codec_context.sample_rate
            assert info.audio_channels == st.codec_context.channels
            assert info.audio_codec == st.codec_context.name
            assert info.duration == pytest.approx(c.duration / 1e6)


def test_the_probe_hands_its_container_to_the_decoding_only_if_the_file_is_unchanged(
    tmp_path,
):
    path = write_audio(tmp_path / "a.wav", duration=1.0)
    probe(path, keep=True)
    kept = _take_probed(path)
    assert kept is not None and _take_probed(path) is None  # taken once
    kept.close()
    probe(path, keep=True)
    c = open_container(path)  # the kept one, positioned at the start
    assert len(np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])) == RATE
    c.close()
    probe(path, keep=True)
    write_audio(path, duration=2.0)  # changed since the probe: a fresh container
    assert _take_probed(path) is None
    assert _decoded(path, RATE).shape == (2 * RATE,)


def test_the_catalog_holds_what_reading_each_item_file_gives(tmp_path, speech_files):
    """The engine hands over the writer's description (masked items are read again):
    it must equal describe_item on the finished file, for every item."""
    out = tmp_path / "feats.h5"
    video = tmp_path / "v.mp4"
    emofeat.samples.write_video(video, duration=2.0)
    args = ["extract", "-q", "-p", "egemaps", "-p", "functionals", "-p", "vad"]
    args += ["--set", "egemaps.mask=vad", *map(str, speech_files[:2]), str(video), "-o", str(out)]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    store = FeatureStore(out)
    n = 0
    for key in store.items():
        for ex in store.extractors(key):
            meta = store.item_meta(key, ex)
            assert meta == describe_item(Path(store.item_ref(key, ex))), (key, ex)
            n += 1
    assert n == 9


def test_low_level_datasets_and_attributes_have_the_high_level_layout(tmp_path):
    """A small item's datasets and attributes are made through h5py's low-level calls:
    they must come out as ``create_dataset(name, data=...)`` and ``attrs[name] = ...`` make
    them (type, shape, layout, no timestamps, the same values)."""
    import h5py

    rng = np.random.default_rng(3)
    arrays = {
        "data": rng.standard_normal((31, 25)).astype(np.float32),
        "times": rng.random((31, 2)),
        "mask": rng.random(31) > 0.3,
        "aligned/row": np.arange(-1, 40),
        "empty": np.zeros((0, 25), np.float32),
    }
    attrs = {"level": "frame", "rate": "100 Hz", "blank": "", "coverage": 0.25, "complete": True}
    attrs["provenance"] = json.dumps({"key": "clip", "n": 3, "ü": "utf-8 text"})
    with h5py.File(tmp_path / "high.h5", "w") as hi, h5py.File(tmp_path / "low.h5", "w") as lo:
        for name, value in arrays.items():
            hi.create_dataset(name, data=value)
            plain_dataset(lo, name, value)
        for name, value in attrs.items():
            hi.attrs[name] = value
            scalar_attr(lo, name, value)
    with h5py.File(tmp_path / "high.h5") as hi, h5py.File(tmp_path / "low.h5") as lo:
        for name, value in arrays.items():
            a, b = hi[name], lo[name]
            assert (a.dtype, a.shape, a.chunks, a.compression, a.maxshape) == (
                b.dtype,
                b.shape,
                b.chunks,
                b.compression,
                b.maxshape,
            ), name
            assert a.id.get_create_plist().get_layout() == b.id.get_create_plist().get_layout()
            assert h5py.h5o.get_info(a.id).mtime == h5py.h5o.get_info(b.id).mtime == 0, name
            np.testing.assert_array_equal(b[()], value)
        assert sorted(hi["aligned"].keys()) == sorted(lo["aligned"].keys()) == ["row"]
        for name, value in attrs.items():
            ta, tb = hi.attrs.get_id(name).dtype, lo.attrs.get_id(name).dtype
            assert ta == tb and h5py.check_string_dtype(ta) == h5py.check_string_dtype(tb)
            assert lo.attrs[name] == hi.attrs[name] == value, name
    assert (tmp_path / "low.h5").stat().st_size == (tmp_path / "high.h5").stat().st_size


def test_a_power_cut_before_the_group_sync_leaves_each_item_complete_or_absent(tmp_path):
    """Commits are written at once and synced together: after a power cut the items whose
    data had not reached the disk are found by the next writer and removed (then made
    again), never left in the store damaged. The cut is simulated: the writer is killed
    with records in its journal, then one item file loses its tail and another its name,
    as unsynced data and directory entries would."""
    inputs = [write_audio(tmp_path / f"in{i}.wav", duration=2.0, f0=120 + 20 * i) for i in range(3)]
    clean = tmp_path / "clean.h5"
    args = ["extract", "-q", "-p", "egemaps", *map(str, inputs)]
    assert run_cli(*args, "-o", str(clean)).returncode == 0
    out = tmp_path / "cut.h5"
    killed = run_cli(*args, "-o", str(out), env={faults.ENV: "checkpoint:written"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    store = FeatureStore(out)
    truncated = Path(store.item_ref("in0", "egemaps"))
    missing = Path(store.item_ref("in1", "egemaps"))
    with open(truncated, "r+b") as f:
        f.truncate(truncated.stat().st_size // 2)
    missing.unlink()

    with FeatureStore(out, "a") as writer:  # recovery
        assert writer.items() == ["in2"]
    store = FeatureStore(out)
    assert store.items() == ["in2"] and store.check_item("in2", "egemaps", full=True) is None
    removed = [e for e in store.log_entries() if e.get("status") == "removed"]
    assert sorted(e["key"] for e in removed) == ["in0", "in1"]
    assert all("lost before it reached the disk" in e["message"] for e in removed)
    assert not truncated.exists()
    assert run_cli("verify", str(out)).returncode == 0
    again = run_cli(*args, "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert_same_data(out, clean)


def test_a_touched_or_copied_input_is_unchanged_and_a_changed_one_is_redone(tmp_path):
    """The skip decision reads no byte of an input whose size and modification time are
    as recorded; when only the time differs, its content hash decides."""
    wav = write_audio(tmp_path / "clip.wav", duration=1.5)
    out = tmp_path / "feats.h5"
    args = ["extract", "-q", "-p", "egemaps", str(wav), "-o", str(out)]
    assert run_cli(*args).returncode == 0
    first = FeatureStore(out).item_attrs("clip", "egemaps")["item_id"]
    st = wav.stat()
    os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes
    assert run_cli(*args).returncode == 0
    assert FeatureStore(out).item_attrs("clip", "egemaps")["item_id"] == first
    data = bytearray(wav.read_bytes())
    data[-100] ^= 0x40  # one sample changed, same size
    wav.write_bytes(bytes(data))
    assert run_cli(*args).returncode == 0
    assert FeatureStore(out).item_attrs("clip", "egemaps")["item_id"] != first


def test_a_failed_group_sync_stops_the_run_and_keeps_the_commit_it_followed(tmp_path, monkeypatch):
    """The disk refuses the data at the group sync (a full or failing disk that accepted
    the writes): the commit the sync followed stays recorded, the next input fails with the
    error naming the store and the run stops, as for any write error."""
    import errno

    from emofeat import build_jobs, engine
    from emofeat import store as store_module

    inputs = [write_audio(tmp_path / f"in{i}.wav", duration=1.0, f0=150 + 30 * i) for i in range(3)]
    calls = []

    def refuse(folder):  # the sync after the run's first record works, later ones fail
        calls.append(folder)
        if len(calls) > 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(folder))
        return True

    monkeypatch.setattr(store_module, "SYNC_INTERVAL", 0.0)
    monkeypatch.setattr(store_module, "_syncfs", refuse)
    out = tmp_path / "feats.h5"
    jobs = build_jobs(["egemaps"], ["egemaps.functionals=false"], None)
    with FeatureStore(out, "a") as st:
        summary = engine.run(st, inputs, jobs, engine.RunOptions())
    statuses = [r.status for r in summary.results]
    assert statuses[0] == "done" and statuses[1] == "failed", statuses
    assert "input/output error" in summary.results[1].message.lower()
    assert summary.stopped and summary.not_attempted
    assert len(calls) >= 2
    assert FeatureStore(out).items() == ["in0"]
