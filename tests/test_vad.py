"""The ``vad`` extractor against the silero-vad package's own functions on real speech."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import emofeat
from emofeat.media import AudioChunk, Decoder, probe
from emofeat.samples import write_audio
from emofeat_plugins.audio.vad import FRAME, Vad, _Segmenter

torch.set_num_threads(1)
SR = 16000


def decode(path: Path, chunk: float = 5.0) -> tuple[emofeat.MediaInfo, list[AudioChunk]]:
    """The input's 16 kHz mono audio in engine chunks (the engine's own decoding path)."""
    info = probe(path)
    dec = Decoder(info, video=False, audio_rates=[SR], audio_chunk=chunk, grid_rate=100.0)
    return info, [c for c in dec if isinstance(c, AudioChunk)]


def run_vad(path: Path, chunk: float = 5.0, **settings) -> dict[str, np.ndarray]:
    """Feed a file through Vad chunk by chunk; stream -> (values, starts, ends)."""
    info, chunks = decode(path, chunk)
    vad = Vad(settings)
    vad.begin(info)
    rows = [r for c in chunks for r in vad.process(c)] + list(vad.end())
    out = {}
    for name in ("speech", "probability"):
        rs = [r for r in rows if r.stream == name]
        out[name] = np.concatenate([r.data[:, 0] for r in rs])
        out[name + "_start"] = np.concatenate([r.start for r in rs])
        out[name + "_end"] = np.concatenate([r.end for r in rs])
    out["audio"] = np.concatenate([c.samples for c in chunks])
    return out


@pytest.fixture(scope="module")
def reference():
    """The package's ONNX model wrapper (same file) and its timestamps function."""
    from silero_vad import get_speech_timestamps, load_silero_vad

    return load_silero_vad(onnx=True), get_speech_timestamps


def reference_frames(audio: np.ndarray, reference, **kw) -> tuple[np.ndarray, list[dict]]:
    """1 for every 32 ms frame whose centre lies in a segment of get_speech_timestamps."""
    model, timestamps = reference
    segments = timestamps(torch.from_numpy(audio), model, sampling_rate=SR, **kw)
    starts = np.arange(0, len(audio), FRAME)
    centres = (starts + np.minimum(starts + FRAME, len(audio))) / 2
    speech = np.zeros(len(starts))
    for s in segments:
        speech[(centres >= s["start"]) & (centres < s["end"])] = 1.0
    return speech, segments


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.sum((a > 0) | (b > 0))
    return 1.0 if union == 0 else float(np.sum((a > 0) & (b > 0)) / union)


@pytest.fixture(scope="module")
def speech_with_gaps(speech_files, tmp_path_factory) -> Path:
    """Real speech clips with silences of 1.5 s, 80 ms (shorter than min_silence) and 0.4 s."""
    clips = [decode(p)[1] for p in speech_files[:3]]
    parts = [np.concatenate([c.samples for c in chunks]) for chunks in clips]
    z = np.zeros
    signal = np.concatenate(
        [z(8000), parts[0], z(24000), parts[1][: 2 * SR], z(1280), parts[1][2 * SR :]]
        + [z(6400), parts[2], z(3000)]
    ).astype(np.float32)
    return write_audio(tmp_path_factory.mktemp("vad") / "gaps.wav", signal=signal)


def test_probabilities_and_speech_match_silero(speech_with_gaps, reference):
    out = run_vad(speech_with_gaps, chunk=0.7)
    audio = out["audio"]
    n = -(-len(audio) // FRAME)
    # rows: one per 32 ms frame, true times, the last one ending with the audio
    assert len(out["probability"]) == len(out["speech"]) == n
    np.testing.assert_allclose(out["speech_start"], np.arange(n) * FRAME / SR)
    assert out["speech_end"][-1] == pytest.approx(len(audio) / SR)
    # raw probabilities equal the package's wrapper fed frame by frame (same model file)
    model, _ = reference
    model.reset_states()
    padded = np.concatenate([audio, np.zeros(n * FRAME - len(audio), np.float32)])
    ref = [
        model(torch.from_numpy(padded[i : i + FRAME]), SR).item()
        for i in range(0, len(padded), FRAME)
    ]
    np.testing.assert_allclose(out["probability"], ref, atol=1e-6)
    # speech frames agree with get_speech_timestamps (defaults)
    ref_speech, segments = reference_frames(audio, reference)
    assert len(segments) >= 3  # the 1.5 s and 0.4 s silences split the speech
    assert iou(out["speech"], ref_speech) >= 0.95
    assert np.array_equal(out["speech"], ref_speech)  # measured: identical
    t = out["speech_start"]
    assert not out["speech"][(t > 0.1) & (t < 0.35)].any()  # leading 0.5 s of silence


@pytest.mark.parametrize(
    "settings, kw",
    [
        ({"min_silence": 0.05, "pad": 0.0}, {"min_silence_duration_ms": 50, "speech_pad_ms": 0}),
        (
            {"threshold": 0.6, "neg_threshold": 0.3, "min_speech": 0.5, "pad": 0.1},
            {
                "threshold": 0.6,
                "neg_threshold": 0.3,
                "min_speech_duration_ms": 500,
                "speech_pad_ms": 100,
            },
        ),
    ],
)
def test_settings_follow_silero(speech_with_gaps, reference, settings, kw):
    out = run_vad(speech_with_gaps, chunk=0.3, **settings)
    ref_speech, _ = reference_frames(out["audio"], reference, **kw)
    assert iou(out["speech"], ref_speech) >= 0.95
    assert np.array_equal(out["speech"], ref_speech)


def test_result_does_not_depend_on_chunking(speech_with_gaps):
    a = run_vad(speech_with_gaps, chunk=5.0)
    b = run_vad(speech_with_gaps, chunk=0.05)
    for key in ("speech", "probability", "speech_start", "speech_end"):
        np.testing.assert_array_equal(a[key], b[key])


def test_speech_rows_come_with_bounded_delay(speech_with_gaps):
    info, chunks = decode(speech_with_gaps, chunk=0.25)
    vad = Vad({"min_speech": 0.25, "min_silence": 0.1, "pad": 0.03})
    vad.begin(info)
    probs = speech = 0
    worst = 0
    for c in chunks:
        for r in vad.process(c):
            if r.stream == "probability":
                probs += len(r)
            else:
                speech += len(r)
        worst = max(worst, probs - speech)
    # max(min_speech, min_silence) + pad = 0.28 s = 9 frames, plus a frame of margin
    assert worst <= 10
    tail = list(vad.end())
    probs += sum(len(r) for r in tail if r.stream == "probability")
    speech += sum(len(r) for r in tail if r.stream == "speech")
    assert speech == probs  # every frame gets its speech row by the end


def test_espeak_speech_surrounded_by_silence(tmp_path, reference):
    raw = tmp_path / "espeak.wav"
    try:
        subprocess.run(
            ["espeak-ng", "-w", str(raw), "The quick brown fox jumps over the lazy dog."],
            check=True,
            capture_output=True,
        )
    except FileNotFoundError:
        pytest.fail("espeak-ng missing: apt-get install espeak-ng (scripts/test.sh does this)")
    voice = np.concatenate([c.samples for c in decode(raw)[1]])
    spoken = np.flatnonzero(np.abs(voice) > 0.01)
    signal = np.concatenate([np.zeros(SR), voice, np.zeros(SR)]).astype(np.float32)
    path = write_audio(tmp_path / "padded.wav", signal=signal)
    out = run_vad(path)
    ref_speech, segments = reference_frames(out["audio"], reference)
    assert segments and iou(out["speech"], ref_speech) >= 0.95
    t = out["speech_start"]
    first, last = (SR + spoken[0]) / SR, (SR + spoken[-1]) / SR
    on = t[out["speech"] > 0]
    # speech only around the spoken part (pad 30 ms + one frame), most of it detected
    assert on.min() >= first - 0.1 and on.max() <= last + 0.1
    inside = (t >= first) & (t < last)
    assert out["speech"][inside].mean() > 0.8


def test_silence_and_noise_give_no_speech(tmp_path, reference):
    rng = np.random.default_rng(0)
    for name, signal in (
        ("silence", np.zeros(3 * SR)),
        ("noise", 0.05 * rng.standard_normal(3 * SR)),
    ):
        path = write_audio(tmp_path / f"{name}.wav", signal=signal.astype(np.float32))
        out = run_vad(path)
        assert not out["speech"].any(), name
        assert out["probability"].max() < 0.5, name
        ref_speech, _ = reference_frames(out["audio"], reference)
        assert not ref_speech.any()


def _read_decided(seg: _Segmenter, centres: np.ndarray, got: list[bool], final: bool) -> None:
    """Append the speech values of the frames (given by centre, in samples) now decided."""
    limit = seg.frontier(final)
    spans = seg.padded()
    while len(got) < len(centres) and centres[len(got)] < limit:
        c = centres[len(got)]
        got.append(any(a <= c < b for a, b in spans))
    seg.forget_before(len(got) * FRAME)


def test_segmenter_equals_silero_rules_on_random_probabilities():
    """The streaming segmenter, read at random moments, equals get_speech_timestamps_from_probs."""
    from silero_vad import get_speech_timestamps_from_probs

    rng = np.random.default_rng(1)
    for _ in range(400):
        n = int(rng.integers(1, 200))
        probs: list[float] = []
        while len(probs) < n:  # runs of speech-like and silence-like probabilities
            k = int(rng.integers(1, 20))
            lo, hi = (0.5, 1.0) if rng.random() < 0.5 else (0.0, 0.6)
            probs += list(rng.uniform(lo, hi, k))
        probs = probs[:n]
        total = n * FRAME - int(rng.integers(0, FRAME))
        ms, sil, pad = (
            int(rng.choice(v)) for v in ([0, 100, 250, 500], [0, 50, 100, 300], [0, 30, 200])
        )
        seg = _Segmenter(0.5, 0.35, ms * 16, sil * 16, pad * 16)
        starts = np.arange(n) * FRAME
        ends = np.minimum(starts + FRAME, total)
        centres = (starts + ends) / 2
        got: list[bool] = []
        for i, p in enumerate(probs):
            seg.step(p, int(starts[i]), int(ends[i]))
            if rng.random() < 0.3:
                _read_decided(seg, centres[: i + 1], got, final=False)
        seg.finish(total)
        _read_decided(seg, centres, got, final=True)
        ref = get_speech_timestamps_from_probs(
            probs,
            threshold=0.5,
            neg_threshold=0.35,
            min_speech_duration_ms=ms,
            min_silence_duration_ms=sil,
            speech_pad_ms=pad,
            audio_length_samples=total,
        )
        expected = [any(s["start"] <= c < s["end"] for s in ref) for c in centres]
        assert got == expected, (ms, sil, pad)


def test_settings_are_checked():
    with pytest.raises(emofeat.ConfigError, match="threshold"):
        Vad({"threshold": 1.5})
    with pytest.raises(emofeat.ConfigError, match="neg_threshold"):
        Vad({"threshold": 0.5, "neg_threshold": 0.7})
    with pytest.raises(emofeat.ConfigError, match="min_silence"):
        Vad({"min_silence": -0.1})
    vad = Vad()
    info = vad.model()
    assert info.license.startswith("MIT") and len(info.sha256) == 64
    assert "silero_vad.onnx" in info.id
