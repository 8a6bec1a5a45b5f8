"""The core's mask mechanism (``--set NAME.mask=SOURCE``) through the real CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import run_cli

import emofeat
from emofeat import build_jobs
from emofeat.samples import speech_like, write_audio

SR = 16000


def _read(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])


@pytest.fixture(scope="module")
def speech_gap_speech(speech_files, tmp_path_factory) -> Path:
    """LibriVox clip (2.99 s) + 3 s of zeros + LibriVox clip (3.29 s), 16 kHz."""
    a, b = (_read(p).astype(np.float32) for p in (speech_files[1], speech_files[4]))
    a, b = (x / 32768 if np.abs(x).max() > 1 else x for x in (a, b))
    signal = np.concatenate([a, np.zeros(3 * SR, np.float32), b])
    return write_audio(tmp_path_factory.mktemp("mask") / "ssp.wav", signal=signal)


def coverage(rows: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Fraction of each row span covered by the (disjoint) active spans, by brute force."""
    lo = np.maximum(rows[:, None, 0], active[None, :, 0])
    hi = np.minimum(rows[:, None, 1], active[None, :, 1])
    return np.clip(hi - lo, 0, None).sum(1) / (rows[:, 1] - rows[:, 0])


def expected_masks(store, key, unmasked, source, stream, extractor="egemaps", mask_min=0.5):
    """Native and aligned masks the mask rule gives, computed from the stored streams."""
    src = store.read(key, source, stream)
    on = src.mask & (src.data[:, 0] >= 0.5)
    out = {}
    for name in ("lld", "functionals"):
        raw = unmasked.read(key, extractor, name)
        native = raw.mask & (coverage(raw.times, src.times[on]) >= mask_min - 1e-9)
        al = unmasked.read(key, extractor, name, aligned=True)
        src_al = store.read(key, source, stream, aligned=True)
        frame_on = src_al.mask & (src_al.data[:, 0] >= 0.5)
        ok = al.row >= 0
        aligned = al.mask & frame_on & np.where(ok, native[np.maximum(al.row, 0)], False)
        out[name] = (native, aligned)
    return out


def assert_masks(store, key, expected, extractor="egemaps"):
    for name, (native, aligned) in expected.items():
        np.testing.assert_array_equal(store.read(key, extractor, name).mask, native, name)
        got = store.read(key, extractor, name, aligned=True).mask
        np.testing.assert_array_equal(got, aligned, name)


def extract(*args: str) -> None:
    res = run_cli("extract", "-q", *args)
    assert res.returncode == 0, res.stderr


def test_vad_mask_in_run_from_store_and_reruns(speech_gap_speech, tmp_path):
    key = "ssp"
    # 1. mask source made in the same run
    run = tmp_path / "run.h5"
    extract(
        "-p",
        "vad",
        "-p",
        "egemaps",
        "--set",
        "egemaps.mask=vad",
        str(speech_gap_speech),
        "-o",
        str(run),
    )
    # 2. unmasked reference, then masked by the stored vad item in a later run
    later = tmp_path / "later.h5"
    extract("-p", "vad", "-p", "egemaps", str(speech_gap_speech), "-o", str(later))
    plain = tmp_path / "plain" / "later.h5"  # index links are relative: keep the name
    plain.parent.mkdir()
    shutil.copy(later, plain)
    shutil.copytree(later.with_name("later.h5.d"), plain.with_name("later.h5.d"))
    extract("-p", "egemaps", "--set", "egemaps.mask=vad", str(speech_gap_speech), "-o", str(later))

    unmasked = emofeat.open_store(plain)
    for path, origin in ((run, "this run"), (later, "store")):
        store = emofeat.open_store(path)
        assert_masks(store, key, expected_masks(store, key, unmasked, "vad", "speech"))
        lld = store.read(key, "egemaps", "lld")
        mid = (lld.times[:, 0] > 3.4) & (lld.times[:, 1] < 5.6)  # inside the 3 s of zeros
        talk = (lld.times[:, 0] > 0.5) & (lld.times[:, 1] < 2.5)
        assert not lld.mask[mid].any() and lld.mask[talk].mean() > 0.95
        assert unmasked.read(key, "egemaps", "lld").mask[mid].all()  # masked, not missing
        frame = store.to_frame("egemaps", "lld")
        assert frame.iloc[np.flatnonzero(mid)].isna().all().all()
        attrs = store.item_attrs(key, "egemaps")
        mask = attrs["mask"]
        assert mask["extractor"] == "vad" and mask["stream"] == "speech"
        assert mask["item_id"] == store.item_attrs(key, "vad")["item_id"]
        assert mask["mask_min"] == 0.5 and mask["source"] == origin
        assert mask["rows_masked"]["lld"] == int((~lld.mask).sum())
        assert attrs["config"]["settings"]["mask"] == "vad"
    np.testing.assert_array_equal(
        emofeat.open_store(run).read(key, "egemaps", "lld").mask,
        emofeat.open_store(later).read(key, "egemaps", "lld").mask,
    )

    # 3. rerun: unchanged; a changed vad redoes the items it masked
    res = run_cli(
        "extract",
        "-q",
        "-p",
        "vad",
        "-p",
        "egemaps",
        "--set",
        "egemaps.mask=vad",
        str(speech_gap_speech),
        "-o",
        str(later),
    )
    assert res.returncode == 0, res.stderr
    log = emofeat.open_store(later).run_log()
    last = log[(log.run == log.run.iloc[-1]) & (log.event == "item")]
    assert set(last.status) == {"unchanged"}
    extract(
        "-p",
        "vad",
        "-p",
        "egemaps",
        "--set",
        "egemaps.mask=vad",
        "--set",
        "vad.pad=0.2",
        str(speech_gap_speech),
        "-o",
        str(later),
    )
    store = emofeat.open_store(later)
    log = store.run_log()
    last = log[(log.run == log.run.iloc[-1]) & (log.event == "item")]
    assert dict(zip(last.extractor, last.status, strict=True)) == {"vad": "done", "egemaps": "done"}
    assert (
        store.item_attrs(key, "egemaps")["mask"]["item_id"]
        == store.item_attrs(key, "vad")["item_id"]
    )
    assert_masks(store, key, expected_masks(store, key, unmasked, "vad", "speech"))


def test_missing_mask_source_fails_that_item_only(tmp_path):
    media = write_audio(tmp_path / "short.wav", duration=2.0)
    out = tmp_path / "f.h5"
    res = run_cli(
        "extract",
        "-p", "compare", "--set", "compare.functionals=false",
        "-p", "egemaps", "--set", "egemaps.mask=vad",
        str(media), "-o", str(out),
    )  # fmt: skip
    assert res.returncode != 0
    message = f"egemaps.mask=vad: no 'vad' item for {media}; add --plugin vad or extract vad first"
    store = emofeat.open_store(out)
    log = store.run_log()
    item = log[(log.event == "item") & (log.extractor == "egemaps")].iloc[-1]
    assert item.status == "failed" and item.message == message
    assert "egemaps.mask=vad: no 'vad' item for" in " ".join((res.stdout + res.stderr).split())
    assert store.extractors("short") == ["compare"]  # the other item is committed
    assert not list((tmp_path / "f.h5.d" / ".staging").iterdir())


def test_mask_by_mouth_open_on_a_video(tmp_path):
    """A video-frame stream (mouth_open, 10 fps) masks 10 ms audio rows by their native times."""
    from PIL import Image
    from skimage import data

    from emofeat.models import ModelCache, get_model
    from emofeat.samples import _encode_audio

    cache = tmp_path / "models"
    ModelCache(cache).path(get_model("face-landmarks-68"))
    face = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)))
    video = tmp_path / "astronaut.mp4"
    with av.open(str(video), "w") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 256, 256, "yuv420p"
        aus = out.add_stream("pcm_s16le", rate=SR)
        aus.layout = "mono"
        for _ in range(20):
            # a still face: the mouth-open flag (rolling mean above the video's mean) still
            # varies with the encoder's noise and the rolling window's clipped ends
            for p in vs.encode(av.VideoFrame.from_ndarray(face, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        _encode_audio(out, aus, speech_like(2.0), SR)
    store_path = tmp_path / "v.h5"
    common = ["-p", "faces", "--set", "faces.detector=haar", "-p", "mouth", "-p", "mouth_open"]
    common += ["--set", f"mouth.cache_dir={cache}", "-p", "egemaps"]
    extract(
        *common,
        "--set",
        "egemaps.mask=mouth_open",
        "--set",
        "egemaps.mask_min=0.8",
        str(video),
        "-o",
        str(store_path),
    )
    store = emofeat.open_store(store_path)
    flag = store.read("astronaut", "mouth_open", "open")
    assert len(flag.data) == 20
    lld = store.read("astronaut", "egemaps", "lld")
    # egemaps writes every LLD row valid: the mask alone decides
    on = flag.mask & (flag.data[:, 0] >= 0.5)
    assert 0 < on.sum() < len(on)  # mouth open on some frames only
    expected = coverage(lld.times, flag.times[on]) >= 0.8 - 1e-9
    np.testing.assert_array_equal(lld.mask, expected)
    al = store.read("astronaut", "egemaps", "lld", aligned=True)
    fal = store.read("astronaut", "mouth_open", "open", aligned=True)
    frame_on = fal.mask & (fal.data[:, 0] >= 0.5)
    np.testing.assert_array_equal(
        al.mask, (al.row >= 0) & frame_on & expected[np.maximum(al.row, 0)]
    )
    mask = store.item_attrs("astronaut", "egemaps")["mask"]
    assert (mask["extractor"], mask["stream"], mask["mask_min"]) == ("mouth_open", "open", 0.8)
    assert mask["item_id"] == store.item_attrs("astronaut", "mouth_open")["item_id"]


def test_mask_settings_are_checked_at_config_time():
    jobs = build_jobs(["egemaps", "vad"], ("egemaps.mask=vad",), None)
    assert {j.name: j.config.get("mask") for j in jobs} == {"egemaps": "vad", "vad": ""}
    cases = {
        "egemaps.mask=nosuch": "no extractor named 'nosuch'",
        "egemaps.mask=egemaps": "cannot mask itself",
        "egemaps.mask=vad speech": "is not EXTRACTOR or EXTRACTOR.STREAM",
        "egemaps.mask_min=0": "not a fraction",
        "egemaps.mask_min=1.5": "not a fraction",
    }
    for setting, message in cases.items():
        with pytest.raises(emofeat.ConfigError, match=message):
            build_jobs(["egemaps"], (setting,), None)
    # features extractors have no mask; media extractors list the common settings
    with pytest.raises(emofeat.ConfigError, match="unknown setting functionals.mask"):
        build_jobs(["functionals"], ("functionals.mask=vad",), None)
    settings = emofeat.get_extractor("vad").cls.settings
    assert {"mask", "mask_min", "threshold"} <= set(settings)
