"""The media layer on real files: probing, frame timestamps, audio at several rates, image
folders, bounded memory, input discovery and the errors a user sees.

Every input is written here (``emofeat.samples`` or PyAV directly) with known content: the
background grey level of video frame ``i`` is ``frame_code(i)``, audio is a known signal.
"""

from __future__ import annotations

import tracemalloc
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from emofeat.errors import MediaError
from emofeat.media import (
    AudioChunk,
    Decoder,
    VideoChunk,
    count_frames,
    demux_grid,
    find_inputs,
    probe,
)
from emofeat.samples import frame_code, write_audio, write_image_sequence, write_video

SIZE = (160, 120)  # width, height
NTSC = Fraction(30000, 1001)
CODE_TOL = 6  # grey levels of compression error allowed on the background


# -- helpers -----------------------------------------------------------------------------


def _decode(decoder: Decoder) -> tuple[list[VideoChunk], dict[int, list[AudioChunk]], list]:
    """Run a decoder to the end; returns its video chunks, audio chunks by rate, and the
    chunk types in the order they came."""
    video: list[VideoChunk] = []
    audio: dict[int, list[AudioChunk]] = {}
    order = []
    for chunk in decoder:
        order.append(type(chunk))
        if isinstance(chunk, VideoChunk):
            video.append(chunk)
        else:
            assert isinstance(chunk, AudioChunk)
            audio.setdefault(chunk.sampling_rate, []).append(chunk)
    return video, audio, order


def _background(frame: np.ndarray) -> int:
    """Grey level of a frame's top-left corner (the moving disc never reaches it)."""
    return int(np.median(frame[:10, :10]))


def _check_codes(chunks: list[VideoChunk]) -> np.ndarray:
    """Every decoded frame shows the picture written for its grid index; returns indices."""
    indices = np.concatenate([c.indices for c in chunks])
    for c in chunks:
        assert c.frames.dtype == np.uint8
        assert c.frames.shape[1:] == (SIZE[1], SIZE[0], 3)
        for frame, k in zip(c.frames, c.indices, strict=True):
            assert abs(_background(frame) - frame_code(int(k))) <= CODE_TOL, f"frame {k}"
    return indices


def _check_audio_series(chunks: list[AudioChunk], rate: int) -> np.ndarray:
    """Chunks of one rate are mono float32, contiguous, start == offset / rate."""
    expected_offset = 0
    for c in chunks:
        assert c.sampling_rate == rate
        assert c.samples.dtype == np.float32
        assert c.samples.ndim == 1
        assert c.offset == expected_offset
        assert c.start == c.offset / rate
        expected_offset += len(c.samples)
    return np.concatenate([c.samples for c in chunks])


def _write_wav(path: Path, channels: np.ndarray, rate: int) -> Path:
    """Write float channels (shape (n_channels, n)) as 16-bit PCM wav with PyAV."""
    layout = {1: "mono", 2: "stereo"}[channels.shape[0]]
    pcm = np.round(np.clip(channels, -1, 1) * 32767).astype(np.int16)
    interleaved = pcm.T.reshape(1, -1)  # packed s16: L R L R ...
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _write_offset_av(
    path: Path, video_start: float, audio_start: float, signal: np.ndarray, rate: int = 16000
) -> Path:
    """A .mkv with 25 frames at 25 fps from ``video_start`` s and 16-bit PCM ``signal``
    from ``audio_start`` s (timestamps set explicitly)."""
    width, height = SIZE
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        ast = out.add_stream("pcm_s16le", rate=rate)
        ast.layout = "mono"
        for i in range(25):
            img = np.full((height, width, 3), frame_code(i), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = int(round((video_start + i / 25) * 1000))
            frame.time_base = Fraction(1, 1000)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        pcm = np.round(np.clip(signal, -1, 1) * 32767).astype(np.int16)
        step = 1600
        for a in range(0, len(pcm), step):
            frame = av.AudioFrame.from_ndarray(pcm[None, a : a + step], format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = int(round(audio_start * rate)) + a
            frame.time_base = Fraction(1, rate)
            for packet in ast.encode(frame):
                out.mux(packet)
        for packet in ast.encode():
            out.mux(packet)
    return path


def _tone(duration: float, rate: int, freq: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(duration * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def ntsc_mp4(tmp_path_factory) -> Path:
    """2 s of H.264 (B-frames: libx264 defaults) at 29.97 fps with AAC audio at 16 kHz."""
    d = tmp_path_factory.mktemp("ntsc")
    return write_video(d / "ntsc.mp4", duration=2.0, fps=NTSC, size=SIZE)


# -- probe -------------------------------------------------------------------------------


def test_probe_h264_mp4_at_2997(ntsc_mp4):
    info = probe(ntsc_mp4)
    assert info.kind == "video"
    assert info.has_video and info.has_audio
    assert info.fps == pytest.approx(29.97003, abs=1e-4)
    assert info.n_frames == 60  # round(2.0 s * 29.97)
    assert info.duration == pytest.approx(60 * 1001 / 30000, abs=0.03)
    assert (info.width, info.height) == SIZE
    assert info.video_codec == "h264"
    assert info.audio_codec == "aac"
    assert info.audio_rate == 16000
    assert info.audio_channels == 1
    described = info.describe()
    assert described["fps"] == info.fps and described["n_frames"] == 60
    assert described["kind"] == "video"


@pytest.mark.parametrize(
    ("name", "codec", "audio", "audio_codec", "codec_name", "declared_frames"),
    [
        ("hevc.mkv", "libx265", True, "aac", "hevc", 0),  # Matroska declares no frame count
        ("hevc.mov", "libx265", True, "aac", "hevc", 50),
        ("mpeg4.avi", "mpeg4", False, "aac", "mpeg4", 50),
        ("vp9.webm", "libvpx-vp9", True, "libopus", "vp9", 0),
    ],
)
def test_probe_and_decode_other_containers(
    tmp_path, name, codec, audio, audio_codec, codec_name, declared_frames
):
    path = write_video(
        tmp_path / name,
        duration=2.0,
        fps=25,
        size=SIZE,
        codec=codec,
        audio=audio,
        audio_codec=audio_codec,
    )
    info = probe(path)
    assert info.kind == "video"
    assert info.has_video
    assert info.has_audio is audio
    assert info.video_codec == codec_name
    assert info.fps == pytest.approx(25.0)
    assert info.n_frames == declared_frames
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert (info.width, info.height) == SIZE

    decoder = Decoder(info, video=True, video_batch=8)
    video, audio_chunks, _ = _decode(decoder)
    assert audio_chunks == {}  # no audio was asked for
    assert len(decoder.grid) == 50
    np.testing.assert_allclose(decoder.grid.starts, np.arange(50) / 25, atol=1e-6)
    indices = _check_codes(video)
    np.testing.assert_array_equal(indices, np.arange(50))
    assert decoder.warnings == []


@pytest.mark.parametrize(
    ("suffix", "codec_name", "native_rate", "frame_samples"),
    [
        (".wav", "pcm_s16le", 16000, 0),
        (".flac", "flac", 16000, 0),
        (".mp3", "mp3float", 16000, 1152),  # decoders: mp3float / mp3
        (".m4a", "aac", 16000, 1024),
        (".ogg", "opus", 48000, 960),
    ],
)
def test_probe_and_decode_audio_files(tmp_path, suffix, codec_name, native_rate, frame_samples):
    path = write_audio(tmp_path / f"voice{suffix}", duration=2.0)
    info = probe(path)
    assert info.kind == "audio"
    assert info.has_audio and not info.has_video
    assert info.fps is None
    assert (info.width, info.height, info.n_frames) == (0, 0, 0)
    assert info.audio_codec in (codec_name, codec_name.replace("float", ""))
    assert info.audio_rate == native_rate
    assert info.audio_channels == 1
    assert info.duration == pytest.approx(2.0, abs=0.05)

    decoder = Decoder(info, audio_rates=[16000, 8000], audio_chunk=0.25)
    video, audio, _ = _decode(decoder)
    assert video == []
    assert sorted(audio) == [8000, 16000]
    for rate, chunks in audio.items():
        samples = _check_audio_series(chunks, rate)
        # 2 s of sound, give or take one codec frame (priming / padding) and one sample
        tolerance = frame_samples * rate / native_rate + 1
        assert abs(len(samples) - 2 * rate) <= tolerance, (rate, len(samples))
        assert decoder.audio_samples[rate] == len(samples)
        assert all(len(c.samples) == rate // 4 for c in chunks[:-1])
        assert 0 < len(chunks[-1].samples) <= rate // 4
        assert 0.05 < np.abs(samples).max() <= 1.0  # the sound is there, not silence
    # audio-only inputs get a fixed 100 Hz grid over the decoded audio
    assert decoder.grid.source == "fixed"
    n_rows = len(decoder.grid)
    assert abs(n_rows - 200) <= frame_samples / native_rate * 100 + 1
    np.testing.assert_allclose(decoder.grid.starts, np.arange(n_rows) / 100)
    np.testing.assert_allclose(decoder.grid.ends, (np.arange(n_rows) + 1) / 100)


# -- frame timestamps and order ----------------------------------------------------------


def test_ntsc_grid_comes_from_container_timestamps(ntsc_mp4):
    decoder = Decoder(probe(ntsc_mp4), video=True, video_batch=16)
    video, _, _ = _decode(decoder)
    grid = decoder.grid
    assert grid.source == "container"
    assert len(grid) == 60
    k = np.arange(60)
    np.testing.assert_allclose(grid.starts, k * 1001 / 30000, rtol=0, atol=1e-6)
    np.testing.assert_allclose(grid.ends, (k + 1) * 1001 / 30000, rtol=0, atol=1e-6)
    np.testing.assert_allclose(grid.centres, (k + 0.5) * 1001 / 30000, rtol=0, atol=1e-6)
    assert grid.rate == pytest.approx(30000 / 1001, abs=1e-4)
    for chunk in video:
        np.testing.assert_allclose(chunk.times, grid.starts[chunk.indices], rtol=0, atol=1e-9)
    assert decoder.decoded_seconds == pytest.approx(60 * 1001 / 30000, abs=1e-6)


def test_b_frames_decode_in_presentation_order(ntsc_mp4):
    # the file really has B-frames: packets arrive out of presentation order
    with av.open(str(ntsc_mp4)) as container:
        pts = [p.pts for p in container.demux(container.streams.video[0]) if p.pts is not None]
    assert pts != sorted(pts), "libx264 wrote no B-frames; the test would prove nothing"

    decoder = Decoder(probe(ntsc_mp4), video=True, video_batch=7)
    video, _, _ = _decode(decoder)
    assert all(len(c.frames) <= 7 for c in video)
    assert all(len(c.frames) == len(c.times) == len(c.indices) for c in video)
    indices = _check_codes(video)
    np.testing.assert_array_equal(indices, np.arange(60))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_variable_frame_rate_grid_follows_frame_times(tmp_path, suffix):
    times = [0.0, 0.03, 0.1, 0.12, 0.2, 0.33, 0.35, 0.5, 0.52, 0.6, 0.75, 0.76]
    path = write_video(tmp_path / f"vfr{suffix}", frame_times=times, size=SIZE, audio=False)
    info = probe(path)
    decoder = Decoder(info, video=True, video_batch=5)
    video, _, _ = _decode(decoder)
    grid = decoder.grid
    assert len(grid) == len(times)
    np.testing.assert_allclose(grid.starts, times, rtol=0, atol=1e-3)
    np.testing.assert_allclose(grid.ends[:-1], times[1:], rtol=0, atol=1e-3)
    assert grid.ends[-1] > grid.starts[-1]
    indices = _check_codes(video)
    np.testing.assert_array_equal(indices, np.arange(len(times)))
    times_decoded = np.concatenate([c.times for c in video])
    np.testing.assert_allclose(times_decoded, times, rtol=0, atol=1e-3)


def test_audio_only_decode_still_reads_the_frame_grid(ntsc_mp4):
    decoder = Decoder(probe(ntsc_mp4), video=False, audio_rates=[16000])
    video, audio, _ = _decode(decoder)
    assert video == []
    assert list(audio) == [16000]
    assert len(decoder.grid) == 60
    np.testing.assert_allclose(decoder.grid.starts, np.arange(60) * 1001 / 30000, atol=1e-6)


# -- audio -------------------------------------------------------------------------------


def test_video_audio_at_two_rates_in_one_pass(ntsc_mp4):
    decoder = Decoder(
        probe(ntsc_mp4),
        video=True,
        audio_rates=[16000, 8000, 16000],
        video_batch=8,
        audio_chunk=0.5,
    )
    assert decoder.audio_rates == [8000, 16000]
    video, audio, order = _decode(decoder)
    assert sorted(audio) == [8000, 16000]
    duration = 60 * 1001 / 30000  # the audio track spans the 60 frames
    for rate, chunks in audio.items():
        samples = _check_audio_series(chunks, rate)
        # within one AAC frame (1024 samples at 16 kHz) of the track's duration
        assert abs(len(samples) - duration * rate) <= 1024 * rate / 16000, (rate, len(samples))
        assert all(len(c.samples) == rate // 2 for c in chunks[:-1])
        assert 0 < len(chunks[-1].samples) <= rate // 2
        assert decoder.audio_samples[rate] == len(samples)
    np.testing.assert_array_equal(_check_codes(video), np.arange(60))
    # streamed: audio arrives while frames are still being decoded, not all at the end
    last_video = max(i for i, t in enumerate(order) if t is VideoChunk)
    assert any(t is AudioChunk for t in order[:last_video])


def test_resampled_audio_keeps_pitch_and_level(tmp_path):
    path = write_audio(tmp_path / "tone.wav", signal=_tone(2.0, 16000, 440.0), sampling_rate=16000)
    decoder = Decoder(probe(path), audio_rates=[8000, 16000, 22050])
    _, audio, _ = _decode(decoder)
    for rate in (8000, 16000, 22050):
        x = _check_audio_series(audio[rate], rate)
        assert abs(len(x) - 2 * rate) <= 1
        middle = x[rate // 4 : -rate // 4]  # away from resampler edges
        spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
        peak_hz = np.argmax(spectrum) * rate / len(middle)
        assert peak_hz == pytest.approx(440.0, abs=1.5)
        rms = float(np.sqrt(np.mean(middle.astype(np.float64) ** 2)))
        assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


@pytest.mark.parametrize(
    ("name", "right_gain", "expected_gain"),
    [("opposite", -1.0, 0.0), ("left_only", 0.0, 0.5), ("dual_mono", 1.0, 1.0)],
)
def test_stereo_is_mixed_to_mono(tmp_path, name, right_gain, expected_gain):
    rate = 16000
    left = _tone(1.0, rate, 300.0, amp=0.8)
    path = _write_wav(tmp_path / f"{name}.wav", np.stack([left, right_gain * left]), rate)
    info = probe(path)
    assert info.audio_channels == 2
    _, audio, _ = _decode(Decoder(info, audio_rates=[rate]))
    mono = _check_audio_series(audio[rate], rate)
    assert len(mono) == rate
    # the mean of the two channels (16-bit quantisation aside)
    np.testing.assert_allclose(mono, expected_gain * left, rtol=0, atol=1e-3)


def test_real_speech_decodes_to_the_wav_samples(speech_files):
    assert len(speech_files) >= 3
    for path in speech_files:
        with wave.open(str(path), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            reference = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2") / 32768.0
        info = probe(path)
        assert info.kind == "audio" and info.audio_rate == 16000
        assert info.duration == pytest.approx(len(reference) / 16000, abs=1e-3)
        decoder = Decoder(info, audio_rates=[16000, 8000], audio_chunk=1.0)
        _, audio, _ = _decode(decoder)
        decoded = _check_audio_series(audio[16000], 16000)
        assert len(decoded) == len(reference), path.name
        np.testing.assert_allclose(decoded, reference, rtol=0, atol=1e-4, err_msg=path.name)
        assert np.abs(reference).max() > 0.1  # real speech, not silence
        half = _check_audio_series(audio[8000], 8000)
        assert abs(len(half) - len(reference) / 2) <= 1


def test_audio_before_the_first_frame_is_dropped(tmp_path):
    # the audio track starts 1 s before the first video frame: t = 0 is the first frame,
    # so decoded sample n must be the track's sample 16000 + n
    rate = 16000
    signal = np.random.default_rng(1).uniform(-0.5, 0.5, 2 * rate).astype(np.float32)
    path = _write_offset_av(tmp_path / "early_audio.mkv", 1.0, 0.0, signal, rate)
    decoder = Decoder(probe(path), video=True, audio_rates=[rate], audio_chunk=0.3)
    video, audio, _ = _decode(decoder)
    np.testing.assert_allclose(decoder.grid.starts, np.arange(25) / 25, atol=1e-3)
    x = _check_audio_series(audio[rate], rate)
    assert len(x) == rate
    np.testing.assert_allclose(x, signal[rate:], rtol=0, atol=1e-4)


def test_late_audio_is_preceded_by_silence(tmp_path):
    rate = 16000
    signal = np.random.default_rng(2).uniform(-0.5, 0.5, rate).astype(np.float32)
    path = _write_offset_av(tmp_path / "late_audio.mkv", 0.0, 0.5, signal, rate)
    decoder = Decoder(probe(path), audio_rates=[rate], audio_chunk=0.3)
    _, audio, _ = _decode(decoder)
    x = _check_audio_series(audio[rate], rate)
    assert len(x) == rate + rate // 2
    assert np.all(x[: rate // 2] == 0.0)
    np.testing.assert_allclose(x[rate // 2 :], signal, rtol=0, atol=1e-4)


# -- image-sequence folders --------------------------------------------------------------


def test_image_folder_with_missing_frames(tmp_path):
    folder = write_image_sequence(tmp_path / "track_7", n_frames=12, size=SIZE, missing=(3, 4, 9))
    info = probe(folder)
    assert info.kind == "images"
    assert info.has_video and not info.has_audio
    assert info.n_frames == 12
    assert info.frame_numbers == [1, 2, 5, 6, 7, 8, 10, 11, 12]
    assert (info.width, info.height) == SIZE
    assert info.fps == 30.0
    assert info.duration == pytest.approx(12 / 30)

    decoder = Decoder(info, video=True, video_batch=4)
    video, audio, _ = _decode(decoder)
    assert audio == {}
    assert all(len(c.frames) <= 4 for c in video)
    indices = _check_codes(video)
    np.testing.assert_array_equal(indices, [0, 1, 4, 5, 6, 7, 9, 10, 11])
    grid = decoder.grid
    assert len(grid) == 12 and grid.source == "images"
    np.testing.assert_allclose(grid.starts, np.arange(12) / 30)
    for c in video:
        np.testing.assert_allclose(c.times, c.indices / 30)
    assert len(decoder.warnings) == 1
    assert str(folder) in decoder.warnings[0]
    assert "3 of 12" in decoder.warnings[0]


def test_image_folder_rate_and_timestamps_only(tmp_path):
    folder = write_image_sequence(tmp_path / "clip", n_frames=5, size=SIZE)
    info = probe(folder, image_fps=25.0)
    assert info.fps == 25.0 and info.duration == pytest.approx(0.2)
    decoder = Decoder(info)  # no frames asked for: the grid alone
    assert list(decoder) == []
    np.testing.assert_allclose(decoder.grid.starts, np.arange(5) / 25)
    np.testing.assert_allclose(decoder.grid.ends, np.arange(1, 6) / 25)
    assert decoder.warnings == []


def test_folder_without_numbered_images_is_an_error(tmp_path):
    folder = tmp_path / "not_frames"
    folder.mkdir()
    (folder / "cover.jpg").write_bytes(b"")  # not numbered
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(MediaError) as err:
        probe(folder)
    assert str(folder) in str(err.value)
    assert "numbered" in str(err.value)
    numbered = write_image_sequence(tmp_path / "ok", n_frames=2, size=SIZE)
    with pytest.raises(MediaError, match="image_fps"):
        probe(numbered, image_fps=0)


# -- bounded memory ----------------------------------------------------------------------


def test_ten_minutes_of_audio_stream_in_bounded_chunks(tmp_path):
    rate, seconds = 16000, 600
    path = tmp_path / "lecture.wav"
    one_second = np.round(_tone(1.0, rate, 220.0, amp=0.3) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for _ in range(seconds):
            w.writeframes(one_second)
    info = probe(path)
    assert info.duration == pytest.approx(seconds)
    decoder = Decoder(info, audio_rates=[16000, 8000], audio_chunk=2.0)
    totals = {8000: 0, 16000: 0}
    largest = {8000: 0, 16000: 0}
    tracemalloc.start()
    try:
        for chunk in decoder:  # consumed and dropped, as an extractor would
            totals[chunk.sampling_rate] += len(chunk.samples)
            largest[chunk.sampling_rate] = max(largest[chunk.sampling_rate], len(chunk.samples))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert totals == {8000: seconds * 8000, 16000: seconds * 16000}
    assert largest == {8000: 2 * 8000, 16000: 2 * 16000}
    whole_signal = sum(totals.values()) * 4  # float32 bytes
    assert peak < whole_signal / 4, (peak, whole_signal)
    assert len(decoder.grid) == seconds * 100


def test_a_minute_of_video_streams_in_bounded_batches(tmp_path):
    path = write_video(tmp_path / "minute.mp4", duration=60.0, fps=25, size=SIZE, audio=False)
    info = probe(path)
    decoder = Decoder(info, video=True, video_batch=16)
    n_frames = 0
    largest = 0
    next_index = 0
    tracemalloc.start()
    try:
        for chunk in decoder:
            assert isinstance(chunk, VideoChunk)
            largest = max(largest, len(chunk.frames))
            n_frames += len(chunk.frames)
            np.testing.assert_array_equal(
                chunk.indices, np.arange(next_index, next_index + len(chunk.indices))
            )
            next_index += len(chunk.indices)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_frames == 1500 and len(decoder.grid) == 1500
    assert largest == 16
    whole_video = n_frames * SIZE[0] * SIZE[1] * 3
    assert peak < whole_video / 4, (peak, whole_video)


# -- find_inputs -------------------------------------------------------------------------


@pytest.fixture()
def input_tree(tmp_path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    write_audio(root / "a_voice.wav", duration=0.2)
    write_video(root / "b_talk.mp4", duration=0.2, fps=25, size=SIZE, audio=False)
    (root / "readme.txt").write_text("not media")
    (root / "sub" / "deeper").mkdir(parents=True)
    write_audio(root / "sub" / "deeper" / "c_voice.flac", duration=0.2)
    write_image_sequence(root / "sub" / "track_1", n_frames=3, size=SIZE)
    (root / "empty").mkdir()
    return root


def test_find_inputs_walks_folders_recursively(input_tree):
    found, problems = find_inputs([str(input_tree)])
    assert problems == []
    rel = [p.relative_to(input_tree).as_posix() for p in found]
    assert rel == ["a_voice.wav", "b_talk.mp4", "sub/deeper/c_voice.flac", "sub/track_1"]
    # the image folder is one input, not three jpgs
    assert not any(p.suffix == ".jpg" for p in found)

    top, problems = find_inputs([str(input_tree)], recursive=False)
    assert problems == []
    assert [p.name for p in top] == ["a_voice.wav", "b_talk.mp4"]


def test_find_inputs_globs_folders_and_problems(input_tree):
    pattern = str(input_tree / "**" / "*voice*")
    found, problems = find_inputs([pattern])
    assert problems == []
    assert sorted(p.name for p in found) == ["a_voice.wav", "c_voice.flac"]

    # an image-sequence folder, given directly or by a pattern, is one input
    found, _ = find_inputs([str(input_tree / "sub" / "track_*")])
    assert found == [input_tree / "sub" / "track_1"]
    found, _ = find_inputs([str(input_tree / "sub" / "track_1")])
    assert found == [input_tree / "sub" / "track_1"]

    nothing = str(input_tree / "*.mkv")
    found, problems = find_inputs([nothing, str(input_tree / "empty")])
    assert found == []
    assert problems[0] == (nothing, "the pattern matches nothing")
    assert problems[1][0] == str(input_tree / "empty")
    assert "no media" in problems[1][1]

    # the same file named twice (directly and through its folder) is listed once
    wav = input_tree / "a_voice.wav"
    found, problems = find_inputs([str(wav), str(input_tree)])
    assert problems == []
    assert [p.name for p in found].count("a_voice.wav") == 1
    assert len(found) == 4


def test_find_inputs_passes_missing_files_on(tmp_path):
    missing = tmp_path / "gone.mp4"
    found, problems = find_inputs([str(missing)])
    assert found == [missing] and problems == []
    with pytest.raises(MediaError, match="no such file"):
        probe(found[0])


# -- errors ------------------------------------------------------------------------------


def test_missing_path_is_a_media_error(tmp_path):
    path = tmp_path / "nowhere" / "clip.mp4"
    with pytest.raises(MediaError) as err:
        probe(path)
    assert str(path) in str(err.value)
    assert err.value.path == str(path)
    assert "no such file" in err.value.problem


@pytest.mark.parametrize("name", ["empty.mp4", "empty.wav"])
def test_zero_byte_file_is_a_media_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(MediaError) as err:
        probe(path)
    assert str(path) in str(err.value)
    assert "0 bytes" in str(err.value)


def test_text_file_named_mp4_is_a_media_error(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are meeting notes, not a video\n" * 20)
    with pytest.raises(MediaError) as err:
        probe(path)
    assert str(path) in str(err.value)
    assert "not a media file" in str(err.value)


def test_truncated_mp4_is_a_media_error(tmp_path, ntsc_mp4):
    path = tmp_path / "cut.mp4"
    data = ntsc_mp4.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: lost
    with pytest.raises(MediaError) as err:
        probe(path)
    assert str(path) in str(err.value)
    assert "truncated" in str(err.value)


def test_truncated_faststart_mp4_warns_with_the_file_name(tmp_path):
    # index at the front (faststart): the header survives, half the frames do not
    src = write_video(tmp_path / "src.mp4", duration=6.0, fps=30, size=SIZE, audio=False)
    fast = tmp_path / "fast.mp4"
    with (
        av.open(str(src)) as inp,
        av.open(str(fast), "w", options={"movflags": "faststart"}) as out,
    ):
        ostream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = ostream
            out.mux(packet)
    assert fast.read_bytes()[4:8] == b"ftyp" and b"moov" in fast.read_bytes()[:64]
    path = tmp_path / "fast_cut.mp4"
    data = fast.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    info = probe(path)
    assert info.duration == pytest.approx(6.0, abs=0.05)
    assert info.n_frames == 180
    decoder = Decoder(info, video=True)
    video, _, _ = _decode(decoder)
    indices = _check_codes(video)
    assert 0 < len(indices) < 150
    np.testing.assert_array_equal(indices, np.arange(len(indices)))
    assert any(str(path) in w and "truncated" in w for w in decoder.warnings), decoder.warnings
    assert decoder.decoded_seconds < 4.5


def test_decoder_refuses_streams_the_input_lacks(media_dir):
    wav = probe(media_dir / "voice.wav")
    with pytest.raises(MediaError) as err:
        Decoder(wav, video=True)
    assert str(media_dir / "voice.wav") in str(err.value)
    assert "no video stream" in str(err.value)

    silent = probe(media_dir / "silent.mp4")
    assert silent.kind == "video" and not silent.has_audio
    with pytest.raises(MediaError) as err:
        Decoder(silent, audio_rates=[16000])
    assert str(media_dir / "silent.mp4") in str(err.value)
    assert "no audio track" in str(err.value)

    folder = probe(media_dir / "crops" / "track_left")
    with pytest.raises(MediaError, match="no audio track"):
        Decoder(folder, audio_rates=[16000])


# -- frame counts without decoding -------------------------------------------------------


def _grid_after_decoding(path: Path, video: bool) -> object:
    info = probe(path)
    decoder = Decoder(info, video=video, audio_rates=[16000] if info.has_audio else [])
    _decode(decoder)
    return decoder.grid


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("h264_ntsc.mp4", {"duration": 2.0, "fps": NTSC}),  # B-frames, edit list
        ("h264_6fps.mp4", {"duration": 2.0, "fps": 6}),
        ("h264_25.mkv", {"duration": 1.0, "fps": 25}),  # Matroska declares no count
        ("h264_ntsc.mov", {"duration": 1.0, "fps": NTSC, "audio": False}),
        ("mpeg4_6fps.avi", {"duration": 2.0, "fps": 6, "codec": "mpeg4"}),
        ("mpeg4_ntsc.avi", {"duration": 2.0, "fps": NTSC, "codec": "mpeg4"}),
        ("vfr.mp4", {"frame_times": [0.0, 0.04, 0.1, 0.3, 0.31, 0.5, 0.9]}),
    ],
)
def test_count_frames_is_the_decoder_grid_length(tmp_path, name, kwargs):
    path = write_video(tmp_path / name, size=(64, 48), **kwargs)
    grid = demux_grid(path)
    assert grid.source == "container"
    for video in (False, True):
        decoded = _grid_after_decoding(path, video)
        assert count_frames(path) == len(grid) == len(decoded)
        np.testing.assert_array_equal(grid.starts, decoded.starts)
        np.testing.assert_array_equal(grid.ends, decoded.ends)
        assert grid.rate == decoded.rate == probe(path).fps
    if "frame_times" not in kwargs:
        assert len(grid) == round(kwargs["duration"] * float(kwargs["fps"]))


def test_avi_header_declaring_one_frame_more_than_it_holds(tmp_path):
    """6 fps for 2 s: the header says 13 frames, the file holds 12 (an empty last chunk)."""
    path = write_video(
        tmp_path / "six.avi", duration=2.0, fps=6, size=SIZE, codec="mpeg4", skipped_frame=True
    )
    info = probe(path)
    assert info.n_frames == 13 and info.fps == 6.0
    decoder = Decoder(info, video=True, audio_rates=[16000])
    video, _, _ = _decode(decoder)
    assert sum(len(c.frames) for c in video) == 12
    assert len(decoder.grid) == 12 and decoder.warnings == []
    np.testing.assert_array_equal(_check_codes(video), np.arange(12))
    assert count_frames(path) == 12
    assert count_frames(info) == 12  # a MediaInfo saves opening the file twice
    np.testing.assert_array_equal(demux_grid(info).starts, decoder.grid.starts)


def test_count_frames_of_image_folders_and_audio_files(tmp_path):
    folder = write_image_sequence(tmp_path / "track", n_frames=9, size=SIZE, missing=(2, 9))
    assert count_frames(folder) == 8  # up to the highest number present: gaps are rows
    decoder = Decoder(probe(folder, image_fps=25.0))
    list(decoder)
    grid = demux_grid(folder, image_fps=25.0)
    assert grid.source == "images" and grid.rate == 25.0
    np.testing.assert_array_equal(grid.starts, decoder.grid.starts)
    wav = write_audio(tmp_path / "voice.wav", duration=1.0)
    with pytest.raises(MediaError, match="no video stream"):
        count_frames(wav)
    with pytest.raises(MediaError, match="no such file"):
        count_frames(tmp_path / "missing.mp4")
