"""openSMILE feature sets as extractors: ``egemaps`` (eGeMAPSv02) and ``compare`` (ComParE_2016).

Each writes two streams:

* ``lld`` - the low-level descriptors, one row per 10 ms frame (frame-level; aligned to
  the video frames by the core's timeline rule);
* ``functionals`` - the feature set's functionals over sliding windows of ``win`` seconds
  every ``hop`` seconds (a final partial window is zero-padded and masked).

Long audio is processed in blocks of ``block`` seconds with 0.5 s of context on each side,
so memory does not grow with the input's length.

openSMILE (and pandas, which it imports) is imported when an extractor is created, not when
this plugin is loaded: every command line that lists commands loads the plugins.
"""

from __future__ import annotations

import numpy as np

import emofeat
from emofeat import AudioChunk, ContextChunks, Extractor, Rows, Setting, SlidingWindows, StreamSpec

_HOP = 0.01  # openSMILE's LLD frame step in both feature sets, seconds
_CONTEXT = 0.5  # seconds of signal on each side of a block: longer than any LLD window


def _skip_distribution_scan() -> None:
    """Spare the first ``opensmile.Smile`` of a process a scan of every installed package.

    A Smile serialises its parameters when created (audobject), which names the distribution
    of the ``opensmile`` module from ``importlib.metadata.packages_distributions()``: a walk
    of every installed distribution's file list, 0.15-0.2 s where PyTorch is installed (a
    fifth of ``emofeat plugins``, paid by every process that runs egemaps or compare; the
    name only labels the serialised parameters, which emofeat does not keep). audobject keeps
    the answers in a module-level dict (private: nothing is done when it is gone); the one
    for ``opensmile`` is given here, as the scan finds it: the distribution ``opensmile``.
    """
    try:
        from audobject.core import utils
    except ImportError:
        return
    known = getattr(utils, "PACKAGES_DISTRIBUTIONS", None)
    if isinstance(known, dict) and "opensmile" not in known:
        known["opensmile"] = ["opensmile"]


class _OpenSmileExtractor(Extractor):
    modality = "audio"
    sampling_rate = 16000
    license = "openSMILE: audEERING research licence"
    #: names of an ``opensmile.FeatureSet`` and an ``opensmile.FeatureLevel`` member
    feature_set: str
    lld_level: str = "LowLevelDescriptors"
    settings = {
        "lld": Setting(True, "write the low-level descriptors (10 ms frames)"),
        "functionals": Setting(True, "write functionals over sliding windows"),
        "win": Setting(4.0, "functionals window length in seconds"),
        "hop": Setting(2.0, "functionals hop in seconds"),
        "block": Setting(60.0, "seconds of audio per LLD processing block (memory bound)"),
    }

    @classmethod
    def check_config(cls, config):
        if not (config["lld"] or config["functionals"]):
            raise emofeat.ConfigError(f"{cls.name}: lld and functionals are both off")
        if config["win"] <= 0 or config["hop"] <= 0 or config["block"] <= 0:
            raise emofeat.ConfigError(f"{cls.name}: win, hop and block must be positive seconds")

    def __init__(self, config=None, device="cpu"):
        super().__init__(config, device)
        import opensmile

        _skip_distribution_scan()
        feature_set = opensmile.FeatureSet[self.feature_set]
        # each openSMILE instance costs 10-30 ms to build: only the streams asked for
        self._lld = (
            opensmile.Smile(
                feature_set=feature_set, feature_level=opensmile.FeatureLevel[self.lld_level]
            )
            if self.config["lld"]
            else None
        )
        self._func = (
            opensmile.Smile(
                feature_set=feature_set, feature_level=opensmile.FeatureLevel.Functionals
            )
            if self.config["functionals"]
            else None
        )

    def streams(self):
        out = []
        if self.config["lld"]:
            out.append(StreamSpec("lld", tuple(self._lld.feature_names), "frame", "100 Hz"))
        if self.config["functionals"]:
            out.append(
                StreamSpec(
                    "functionals",
                    tuple(self._func.feature_names),
                    "window",
                    f"win {self.config['win']:g} s, hop {self.config['hop']:g} s",
                )
            )
        return out

    def begin(self, info):
        sr = self.sampling_rate
        self._chunks = (
            ContextChunks(self.config["block"], _CONTEXT, sr, align=int(round(_HOP * sr)))
            if self.config["lld"]
            else None
        )
        self._windows = (
            SlidingWindows(self.config["win"], self.config["hop"], sr)
            if self.config["functionals"]
            else None
        )

    def _lld_rows(self, segment, seg_start, keep_start, keep_end):
        sr = self.sampling_rate
        if len(segment) < int(0.06 * sr):  # shorter than openSMILE's longest LLD window
            return
        df = self._lld.process_signal(segment, sr)
        starts = df.index.get_level_values("start").total_seconds().to_numpy() + seg_start / sr
        ends = df.index.get_level_values("end").total_seconds().to_numpy() + seg_start / sr
        keep = (starts >= keep_start / sr - 1e-9) & (starts < keep_end / sr - 1e-9)
        if keep.any():
            yield Rows("lld", df.to_numpy(np.float32)[keep], starts[keep], ends[keep])

    def _func_rows(self, windows):
        sr = self.sampling_rate
        for start, window, padded in windows:
            values = self._func.process_signal(window, sr).to_numpy(np.float32)
            t = start / sr
            yield Rows("functionals", values, [t], [t + len(window) / sr], valid=[not padded])

    def process(self, chunk: AudioChunk):
        if self._chunks is not None:
            for seg in self._chunks.push(chunk.samples):
                yield from self._lld_rows(*seg)
        if self._windows is not None:
            yield from self._func_rows(self._windows.push(chunk.samples))

    def end(self):
        if self._chunks is not None:
            for seg in self._chunks.flush():
                yield from self._lld_rows(*seg)
        if self._windows is not None:
            yield from self._func_rows(self._windows.flush())


class EGeMAPS(_OpenSmileExtractor):
    """eGeMAPSv02: 25 LLDs and 88 functionals (Eyben et al. 2016)."""

    name = "egemaps"
    version = "1"
    description = "openSMILE eGeMAPSv02: 25 LLDs at 100 Hz + 88 functionals over windows"
    feature_set = "eGeMAPSv02"


class ComParE(_OpenSmileExtractor):
    """ComParE_2016: 65 LLDs and 6373 functionals (Schuller et al. 2016)."""

    name = "compare"
    version = "1"
    description = "openSMILE ComParE_2016: 65 LLDs at 100 Hz + 6373 functionals over windows"
    feature_set = "ComParE_2016"


@emofeat.hookimpl
def register_extractors(register):
    register(EGeMAPS)
    register(ComParE)
