"""Memory must not grow with the input's length: decode once, stream, append, align in blocks."""

from __future__ import annotations

import tracemalloc

import numpy as np

import emofeat
from emofeat.engine import Job, RunOptions, run
from emofeat.extractor import Rows, StreamSpec
from emofeat.samples import write_audio, write_video
from emofeat.store import FeatureStore


class FrameStats(emofeat.Extractor):
    """Per-frame mean and std of the pixels (a real, cheap video extractor)."""

    name = "framestats"
    version = "1"
    modality = "video"

    def streams(self):
        return [StreamSpec("stats", ("mean", "std"), "frame", "video frames")]

    def process(self, chunk):
        flat = chunk.frames.reshape(len(chunk.frames), -1).astype(np.float32)
        yield Rows(
            "stats", np.stack([flat.mean(1), flat.std(1)], 1), chunk.times, chunk.times + 1 / 30
        )


class Energy(emofeat.Extractor):
    """RMS energy over 50 ms frames (a real, cheap audio extractor)."""

    name = "energy"
    version = "1"
    modality = "audio"
    sampling_rate = 16000

    def streams(self):
        return [StreamSpec("rms", ("rms",), "frame", "20 Hz")]

    def begin(self, info):
        self.win = emofeat.SlidingWindows(0.05, 0.05, 16000)

    def _rows(self, windows):
        for start, w, padded in windows:
            t = start / 16000
            yield Rows("rms", [[float(np.sqrt(np.mean(w**2)))]], [t], [t + 0.05], [not padded])

    def process(self, chunk):
        yield from self._rows(self.win.push(chunk.samples))

    def end(self):
        yield from self._rows(self.win.flush())


def _peak(tmp_path, inputs, name) -> tuple[int, int]:
    jobs = [Job("framestats", FrameStats, {}), Job("energy", Energy, {})]
    tracemalloc.start()
    with FeatureStore(tmp_path / f"{name}.h5", mode="a") as store:
        summary = run(store, inputs, jobs, RunOptions(video_batch=16, audio_chunk=2.0))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [r.status for r in summary.results] == ["done"] * len(inputs), summary.results
    frames = emofeat.open_store(tmp_path / f"{name}.h5").read(inputs[0].stem, "framestats").data
    return peak, len(frames)


def test_peak_memory_does_not_grow_with_length(tmp_path):
    short = write_video(tmp_path / "short.mp4", duration=10, fps=30, size=(160, 120), audio=True)
    long = write_video(tmp_path / "long.mp4", duration=60, fps=30, size=(160, 120), audio=True)
    peak_short, n_short = _peak(tmp_path, [short], "s")
    peak_long, n_long = _peak(tmp_path, [long], "l")
    assert n_short == 300 and n_long == 1800
    # 6x longer input: decoded, the video alone would be 6x larger (104 MB vs 17 MB)
    decoded_long = 1800 * 160 * 120 * 3
    assert peak_long < 1.5 * peak_short + 2_000_000, (peak_short, peak_long)
    assert peak_long < decoded_long / 5


def test_long_audio_streams_in_chunks(tmp_path):
    wav = write_audio(tmp_path / "ten_minutes.wav", signal=np.zeros(16000 * 600, np.float32))
    jobs = [Job("energy", Energy, {})]
    tracemalloc.start()
    with FeatureStore(tmp_path / "a.h5", mode="a") as store:
        run(store, [wav], jobs, RunOptions(audio_chunk=2.0))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rows = emofeat.open_store(tmp_path / "a.h5").read("ten_minutes", "energy")
    assert rows.data.shape == (12000, 1)
    assert peak < 16000 * 600 * 4 / 4  # well below the whole signal as float32 (38 MB)
