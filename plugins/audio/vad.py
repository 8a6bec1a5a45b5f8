"""Voice activity from Silero VAD: a speech/non-speech mask stream for masking other extractors.

The ONNX model shipped inside the ``silero-vad`` PyPI package (``silero_vad/data/
silero_vad.onnx``, MIT) runs through onnxruntime directly: one session per extractor
instance, called once per 512-sample frame (32 ms at 16 kHz) with 64 samples of the
previous frame as context and the recurrent state carried from frame to frame, across the
engine's chunks - the way the package's own ``OnnxWrapper`` calls it.

Streams (one row per 32 ms frame, true start/end in seconds; the last frame may be shorter,
it is zero-padded for the model as the package does):

* ``probability`` - the model's raw speech probability of the frame;
* ``speech`` - 1.0 where the frame's centre lies inside a speech segment, else 0.0. The
  segments follow the rules of the package's ``get_speech_timestamps`` (without a maximum
  segment length): speech starts at a frame whose probability is at least ``threshold``; it
  ends where the probability falls below ``neg_threshold`` for at least ``min_silence``
  seconds; segments not longer than ``min_speech`` are dropped; each kept segment is padded
  by ``pad`` seconds on both sides (gaps shorter than two pads are split in the middle).

Whether a frame is speech can depend on frames after it (the silence that ends a segment,
the next segment's padding), so ``speech`` rows are emitted with a bounded delay: at most
``max(min_speech, min_silence) + pad`` plus one chunk. Memory holds the model state, one
partial frame and the probabilities of the frames not yet decided.
"""

from __future__ import annotations

import hashlib
import importlib.util
from importlib import metadata
from pathlib import Path

import numpy as np

import emofeat
from emofeat import AudioChunk, Extractor, ModelInfo, Rows, Setting, StreamSpec

FRAME = 512  # samples per model call at 16 kHz (32 ms); the model accepts no other size
CONTEXT = 64  # samples of the previous frame prepended to each call
SR = 16000
MODEL_FILE = "silero_vad.onnx"


def model_path() -> Path:
    """The ONNX file shipped in the installed ``silero-vad`` package.

    Raises:
        FileNotFoundError: the package or its model file is missing.
    """
    # found, not imported: the package's __init__ imports torch (for its own PyTorch model)
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"vad: the silero-vad package is not installed; its {MODEL_FILE} is the model "
            "(pip install silero-vad)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"vad: {path} is missing from the installed silero-vad package "
            "(reinstall it: pip install --force-reinstall silero-vad)"
        )
    return path


class _Segmenter:
    """Streaming speech segments from frame probabilities, decided with bounded delay.

    Implements the rules of ``silero_vad.get_speech_timestamps`` (documented in the module
    docstring) one frame at a time. All positions are sample indices.
    """

    def __init__(
        self, threshold: float, neg_threshold: float, min_speech: int, min_silence: int, pad: int
    ) -> None:
        self.thr = threshold
        self.neg = neg_threshold
        self.min_speech = min_speech
        self.min_silence = min_silence
        self.pad = pad
        self.triggered = False
        self.start = 0  # raw start of the open segment
        self.temp_end = 0  # where the silence inside the open segment began (0: none)
        self.kept: list[tuple[int, int]] = []  # closed, kept raw segments still needed
        self.prev_end: int | None = None  # raw end of the kept segment before kept[0]
        self.position = 0  # samples consumed (end of the last frame stepped)

    def step(self, prob: float, frame_start: int, frame_end: int) -> None:
        """Advance by the frame ``[frame_start, frame_end)`` of speech probability ``prob``."""
        self.position = frame_end
        if prob >= self.thr and self.temp_end:
            self.temp_end = 0  # speech came back before the silence was long enough
        if prob >= self.thr and not self.triggered:
            self.triggered = True
            self.start = frame_start
            return
        if prob < self.neg and self.triggered:
            if not self.temp_end:
                self.temp_end = frame_start
            if frame_start - self.temp_end < self.min_silence:
                return
            if self.temp_end - self.start > self.min_speech:
                self.kept.append((self.start, self.temp_end))
            self.triggered = False
            self.temp_end = 0

    def finish(self, total: int) -> None:
        """The signal ended after ``total`` samples: close the open segment there."""
        if self.triggered and total - self.start > self.min_speech:
            self.kept.append((self.start, total))
        self.triggered = False
        self.position = total

    def frontier(self, final: bool) -> float:
        """Frames whose centre (in samples) lies before this are decided."""
        if final:
            return np.inf
        if self.triggered:
            lower_end = self.temp_end or self.position  # the open segment ends no earlier
            if lower_end - self.start > self.min_speech:
                return float(lower_end)  # it will be kept: speech up to lower_end is certain
            horizon = self.start
        else:
            horizon = self.position  # no kept segment can start before this
        # a later segment's padding reaches back at most ``pad``; one sample of margin for
        # the integer halving of short gaps
        return float(horizon - self.pad - 1)

    def padded(self) -> list[tuple[float, float]]:
        """The padded spans of the known segments (the open one if surely kept: open end)."""
        raw = list(self.kept)
        if self.triggered:
            lower_end = self.temp_end or self.position
            if lower_end - self.start > self.min_speech:
                raw.append((self.start, np.inf))
        out: list[tuple[float, float]] = []
        prev = self.prev_end
        for i, (s, e) in enumerate(raw):
            if prev is None:
                start = max(0, s - self.pad)
            else:
                gap = s - prev
                start = max(0, s - (gap // 2 if gap < 2 * self.pad else self.pad))
            if i + 1 < len(raw):
                gap = raw[i + 1][0] - e
                end = e + (gap // 2 if gap < 2 * self.pad else self.pad)
            else:
                end = e + self.pad  # the last known one: see frontier() for why this is safe
            out.append((start, end))
            prev = e
        return out

    def forget_before(self, sample: float) -> None:
        """Drop kept segments whose padded span ends before ``sample`` (keep the last one)."""
        spans = self.padded()
        while len(self.kept) > 1 and spans and spans[0][1] <= sample:
            self.prev_end = self.kept.pop(0)[1]
            spans.pop(0)


class Vad(Extractor):
    """Silero VAD speech activity per 32 ms frame (``speech``) and its raw probability."""

    name = "vad"
    version = "1"
    modality = "audio"
    sampling_rate = SR
    license = "MIT (Silero VAD, model shipped in the silero-vad PyPI package)"
    description = "Silero VAD: speech 0/1 and speech probability per 32 ms frame (mask source)"
    settings = {
        "threshold": Setting(0.5, "speech starts at a frame probability at or above this (0-1)"),
        "neg_threshold": Setting(
            -1.0,
            "speech ends below this probability (0-1); negative: threshold - 0.15, at least "
            "0.01, as Silero",
        ),
        "min_speech": Setting(0.25, "speech segments not longer than this are dropped, seconds"),
        "min_silence": Setting(0.1, "silence that ends a speech segment, seconds"),
        "pad": Setting(0.03, "padding added to both sides of a speech segment, seconds"),
    }

    @classmethod
    def check_config(cls, config):
        thr, neg = config["threshold"], config["neg_threshold"]
        if not 0.0 < thr < 1.0:
            raise emofeat.ConfigError(f"vad.threshold={thr}: must lie between 0 and 1")
        if neg >= 0 and not neg <= thr:
            raise emofeat.ConfigError(
                f"vad.neg_threshold={neg}: must not exceed vad.threshold ({thr}); "
                "a negative value means threshold - 0.15"
            )
        for key in ("min_speech", "min_silence", "pad"):
            if config[key] < 0:
                raise emofeat.ConfigError(f"vad.{key}={config[key]}: seconds, must be >= 0")

    def __init__(self, config=None, device="cpu"):
        super().__init__(config, device)
        import onnxruntime  # noqa: F401  (a missing [audio] extra is named at once)

        self._path = model_path()
        self._session = None  # made by prepare(): listing the extractors loads no model
        self._sha256 = hashlib.sha256(self._path.read_bytes()).hexdigest()
        thr = float(self.config["threshold"])
        neg = float(self.config["neg_threshold"])
        self._neg = neg if neg >= 0 else max(thr - 0.15, 0.01)

    def prepare(self):
        """The onnxruntime session (once), before any input."""
        if self._session is not None:
            return
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # a 2 MB recurrent model called every 32 ms of audio: more threads only add overhead
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(self._path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        names = {i.name for i in session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise RuntimeError(
                f"vad: {self._path} has inputs {sorted(names)}, expected input, state, sr "
                "(an unsupported silero-vad version)"
            )
        self._session = session

    def streams(self):
        return [
            StreamSpec("speech", ("speech",), "frame", "31.25 Hz (32 ms frames)"),
            StreamSpec("probability", ("speech_probability",), "frame", "31.25 Hz (32 ms frames)"),
        ]

    def model(self) -> ModelInfo:
        try:
            version = metadata.version("silero-vad")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return ModelInfo(
            id=f"silero-vad {version}: {MODEL_FILE}",
            sha256=self._sha256,
            license=self.license,
            source=str(self._path),
        )

    # -- processing -----------------------------------------------------------------
    def begin(self, info):
        self.prepare()
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._sr = np.array(SR, dtype=np.int64)
        self._rest = np.zeros(0, np.float32)  # samples of the next, incomplete frame
        self._frames = 0  # frames computed so far
        self._emitted = 0  # frames whose speech value was emitted
        self._total = 0  # samples received
        cfg = self.config

        def samples(seconds: float) -> int:
            return int(round(seconds * SR))

        self._seg = _Segmenter(
            float(cfg["threshold"]),
            self._neg,
            samples(cfg["min_speech"]),
            samples(cfg["min_silence"]),
            samples(cfg["pad"]),
        )

    def _run(self, frame: np.ndarray) -> float:
        x = np.concatenate([self._context, frame])[None, :]
        out, self._state = self._session.run(
            None, {"input": x, "state": self._state, "sr": self._sr}
        )
        self._context = frame[-CONTEXT:].copy()
        return float(out.reshape(-1)[0])

    def _probabilities(self, samples: np.ndarray, final: bool) -> Rows | None:
        buf = np.concatenate([self._rest, np.asarray(samples, np.float32)])
        n_full = len(buf) // FRAME
        probs, starts, ends = [], [], []
        for i in range(n_full):
            probs.append(self._run(buf[i * FRAME : (i + 1) * FRAME]))
        self._rest = buf[n_full * FRAME :]
        first = self._frames
        starts = (first + np.arange(n_full)) * FRAME
        ends = starts + FRAME
        if final and len(self._rest):
            # the last, partial frame is zero-padded for the model (as the package does);
            # its row keeps its true end
            frame = np.zeros(FRAME, np.float32)
            frame[: len(self._rest)] = self._rest
            probs.append(self._run(frame))
            starts = np.append(starts, (first + n_full) * FRAME)
            ends = np.append(ends, self._total)
            self._rest = np.zeros(0, np.float32)
        for k, p in enumerate(probs):
            self._seg.step(p, int(starts[k]), int(ends[k]))
        self._frames += len(probs)
        if not probs:
            return None
        return Rows("probability", np.asarray(probs), starts / SR, ends / SR)

    def _speech(self, final: bool) -> Rows | None:
        seg = self._seg
        limit = seg.frontier(final)
        f = np.arange(self._emitted, self._frames)
        starts = f * FRAME
        ends = np.minimum(starts + FRAME, self._total)
        centres = (starts + ends) / 2.0
        ready = centres < limit
        if not ready.any():
            return None
        n = int(np.argmin(ready)) if not ready.all() else len(ready)  # frames decided in order
        starts, ends, centres = starts[:n], ends[:n], centres[:n]
        value = np.zeros(n, np.float32)
        for a, b in seg.padded():
            value[(centres >= a) & (centres < b)] = 1.0
        self._emitted += n
        seg.forget_before(float(starts[-1] + FRAME))
        return Rows("speech", value, starts / SR, ends / SR)

    def _rows(self, samples: np.ndarray, final: bool) -> list[Rows]:
        self._total += len(samples)
        out = [self._probabilities(samples, final)]
        if final:
            self._seg.finish(self._total)
        out.append(self._speech(final))
        return [r for r in out if r is not None]

    def process(self, chunk: AudioChunk):
        return self._rows(chunk.samples, final=False)

    def end(self):
        return self._rows(np.zeros(0, np.float32), final=True)
