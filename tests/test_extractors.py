"""Built-in extractors on real speech: egemaps/compare against openSMILE itself, functionals."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import opensmile
import pytest

import emofeat
from emofeat.engine import Job, RunOptions, run
from emofeat.store import FeatureStore


def _job(name: str, **settings) -> Job:
    entry = emofeat.get_extractor(name)
    cfg = {
        k: (list(s.default) if isinstance(s.default, list) else s.default)
        for k, s in entry.cls.settings.items()
    }
    cfg.update(settings)
    return Job.from_entry(entry, cfg)


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


@pytest.fixture(scope="module")
def speech_store(speech_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("speech") / "feats.h5"
    # 1 s LLD blocks: every clip (2.8-7.1 s) is processed in several blocks with context
    jobs = [
        _job("egemaps", block=1.0, win=2.0, hop=1.0),
        _job("functionals", win=1.0, hop=0.5, stats=["mean", "std", "min", "max", "slope"]),
    ]
    with FeatureStore(out, mode="a") as store:
        summary = run(store, speech_files, jobs, RunOptions(grid_rate=25.0))
    assert [r.status for r in summary.results] == ["done"] * len(speech_files)
    return out


def test_egemaps_lld_equals_opensmile_on_whole_files(speech_store, speech_files):
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )
    store = emofeat.open_store(speech_store)
    for f in speech_files:
        ref = smile.process_file(str(f))
        got = store.read(f.stem, "egemaps", "lld")
        assert got.labels == list(ref.columns)
        assert got.data.shape == ref.shape
        np.testing.assert_allclose(
            got.times[:, 0], ref.index.get_level_values("start").total_seconds(), atol=1e-9
        )
        # streamed in 1 s blocks with context, the result is openSMILE's whole-file output
        np.testing.assert_allclose(got.data, ref.to_numpy(), rtol=1e-4, atol=1e-4)


def test_egemaps_functionals_are_opensmile_over_each_window(speech_store, speech_files):
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    store = emofeat.open_store(speech_store)
    f = speech_files[0]
    signal = _read_wav(f)
    got = store.read(f.stem, "egemaps", "functionals")
    assert got.data.shape[1] == 88
    n_full = (len(signal) - 32000) // 16000 + 1  # 2 s windows, 1 s hop
    assert got.mask[:n_full].all() and not got.mask[n_full:].any()  # padded last window masked
    for k in (0, n_full - 1):
        start = int(round(got.times[k, 0] * 16000))
        assert start == k * 16000
        ref = smile.process_signal(signal[start : start + 32000], 16000).to_numpy()[0]
        np.testing.assert_allclose(got.data[k], ref, rtol=1e-4, atol=1e-4)


def test_functionals_over_stored_stream_match_numpy(speech_store, speech_files):
    store = emofeat.open_store(speech_store)
    key = speech_files[2].stem
    lld = store.read(key, "egemaps", "lld", aligned=True)  # 25 Hz grid, 40 ms frames
    out = store.read(key, "functionals", "egemaps.lld")
    centres = lld.times.mean(axis=1)
    assert out.labels[:2] == ["Loudness_sma3_mean", "alphaRatio_sma3_mean"]
    assert len(out.labels) == 5 * 25
    for k in (0, 3, len(out.data) // 2):
        t0 = k * 0.5
        assert out.times[k, 0] == pytest.approx(t0)
        sel = (centres >= t0) & (centres < t0 + 1.0) & lld.mask
        x = lld.data[sel].astype(np.float64)
        t = centres[sel]
        slope = np.polyfit(t, x, 1)[0]
        expected = np.concatenate([x.mean(0), x.std(0), x.min(0), x.max(0), slope])
        np.testing.assert_allclose(out.data[k], expected, rtol=1e-4, atol=1e-4)
        assert out.mask[k]
    # provenance links the summary to the item it was computed from
    prov = store.item_attrs(key, "functionals")
    assert prov["source_items"] == {"egemaps": store.item_attrs(key, "egemaps")["item_id"]}


def test_functionals_source_selection_and_missing_source(tmp_path, speech_files):
    out = tmp_path / "f.h5"
    with FeatureStore(out, mode="a") as store:
        run(store, speech_files[:1], [_job("egemaps", functionals=False)], RunOptions())
        summary = run(
            store, speech_files[:1], [_job("functionals", source=["compare.*"])], RunOptions()
        )
    res = summary.results[0]
    assert res.status == "skipped"
    assert "compare.*" in res.message and "egemaps.lld" in res.message
    with FeatureStore(out, mode="a") as store:
        # a later run adds functionals to what an earlier run stored
        summary = run(
            store, speech_files[:1], [_job("functionals", source=["egemaps.lld"])], RunOptions()
        )
    assert summary.results[0].status == "done"
    assert emofeat.open_store(out).streams(speech_files[0].stem, "functionals") == ["egemaps.lld"]


def test_compare_feature_set(tmp_path, speech_files):
    out = tmp_path / "c.h5"
    with FeatureStore(out, mode="a") as store:
        run(store, speech_files[1:2], [_job("compare", win=2.0, hop=2.0)], RunOptions())
    store = emofeat.open_store(out)
    key = speech_files[1].stem
    assert store.read(key, "compare", "lld").data.shape[1] == 65
    func = store.read(key, "compare", "functionals")
    assert func.data.shape[1] == 6373 and len(func.labels) == 6373
    assert np.isfinite(func.data[func.mask]).all()


def test_egemaps_pitch_follows_the_voice(tmp_path):
    """espeak-ng speaks the same sentence low and high: eGeMAPS F0 must follow."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng missing: apt-get install espeak-ng (scripts/test.sh does this)")
    text = "The quick brown fox jumps over the lazy dog while the sun sets slowly."
    files = []
    for pitch in (10, 90):
        wav = tmp_path / f"pitch{pitch}.wav"
        subprocess.run([espeak, "-p", str(pitch), "-s", "150", "-w", str(wav), text], check=True)
        files.append(wav)
    out = tmp_path / "p.h5"
    with FeatureStore(out, mode="a") as store:
        run(store, files, [_job("egemaps", win=60.0, hop=60.0)], RunOptions())
    store = emofeat.open_store(out)
    col = "F0semitoneFrom27.5Hz_sma3nz_amean"
    f0 = {}
    for f in files:
        sd = store.read(f.stem, "egemaps", "functionals")
        f0[f.stem] = float(sd.data[0, sd.labels.index(col)])
    assert f0["pitch90"] - f0["pitch10"] > 5.0  # semitones
