"""``functionals``: sliding-window statistics over any stream already in the store.

It reads the frame-aligned view of its source streams (invalid frames excluded), cuts the
frame grid into windows ``[k * hop, k * hop + win)`` seconds (a frame belongs to a window
when its centre does), and writes one row per window and source stream. This is the input
of the paper's functionals + Kernel-ELM baseline (mean, std, min, max of face embeddings).

A window is valid when at least ``min_valid`` of the frames a full window holds are valid.
"""

from __future__ import annotations

import fnmatch

import numpy as np

import emofeat
from emofeat import (
    STATS,
    Extractor,
    Rows,
    Setting,
    SkipExtractor,
    StreamSpec,
    check_stats,
    window_statistics,
)


def window_stats(x: np.ndarray, t: np.ndarray, stats: list[str]) -> np.ndarray:
    """Statistics of the rows of ``x`` (frames x dims) at times ``t`` (seconds), float32.

    One window of :func:`emofeat.window_statistics` (the definitions live there);
    ``len(stats) * dims`` values, stat-major; NaN for a window without frames.
    """
    if len(x) == 0:
        return np.full(len(stats) * x.shape[1], np.nan, np.float32)
    return window_statistics(x[None], None, stats, times=np.asarray(t)[None])[0].astype(np.float32)


class Functionals(Extractor):
    """Sliding-window statistics over stored streams."""

    name = "functionals"
    version = "1"
    modality = "features"
    license = "MIT (no model)"
    description = (
        "sliding-window statistics (mean, std, min, max, percentiles, slope) of stored streams"
    )
    settings = {
        "source": Setting(
            [],
            "streams to summarise as EXTRACTOR or EXTRACTOR.STREAM (wildcards allowed); "
            "default: every frame-level stream stored for the input",
        ),
        "win": Setting(4.0, "window length in seconds"),
        "hop": Setting(2.0, "hop in seconds"),
        "stats": Setting(
            ["mean", "std", "min", "max", "p10", "p50", "p90", "slope"],
            "statistics to compute; any of " + ", ".join(STATS) + ", p50",
        ),
        "min_valid": Setting(0.5, "fraction of a full window's frames that must be valid"),
    }

    @classmethod
    def check_config(cls, config):
        try:
            check_stats(config["stats"])
        except ValueError as exc:
            raise emofeat.ConfigError(f"functionals.stats: {exc}") from None
        if config["win"] <= 0 or config["hop"] <= 0:
            raise emofeat.ConfigError("functionals: win and hop must be positive seconds")

    def __init__(self, config=None, device="cpu"):
        super().__init__(config, device)
        self.stats = check_stats(self.config["stats"])
        self._streams: list[StreamSpec] = []

    def streams(self):
        return list(self._streams)

    def sources(self, stored):
        wanted = self.config["source"]
        chosen = []
        for ex, stream, level in stored.streams():
            if ex == self.name:
                continue
            full = f"{ex}.{stream}"
            if wanted:
                if any(fnmatch.fnmatchcase(full, w) or fnmatch.fnmatchcase(ex, w) for w in wanted):
                    chosen.append((ex, stream))
            elif level == "frame":
                chosen.append((ex, stream))
        if wanted and not chosen:
            available = ", ".join(f"{e}.{s}" for e, s, _ in stored.streams()) or "nothing"
            raise SkipExtractor(
                f"none of {', '.join(wanted)} is stored for this input (stored: {available})"
            )
        self._streams = [
            StreamSpec(
                f"{ex}.{st}",
                (),
                "window",
                f"win {self.config['win']:g} s, hop {self.config['hop']:g} s",
            )
            for ex, st in chosen
        ]
        return chosen

    def process_stored(self, source, grid):
        win, hop = float(self.config["win"]), float(self.config["hop"])
        centres = grid.centres
        duration = float(grid.ends[-1]) if len(grid) else 0.0
        starts = np.arange(0.0, max(duration, 1e-9), hop)
        # stop after the first window that reaches the end of the input
        full_end = np.nonzero(starts + win >= duration - 1e-9)[0]
        if len(full_end):
            starts = starts[: full_end[0] + 1]
        lo = np.searchsorted(centres, starts, side="left")
        hi = np.searchsorted(centres, starts + win, side="left")
        expected = max(1.0, win * grid.rate)
        for ex, stream in self.sources(source):
            labels = source.labels(ex, stream)
            names = tuple(f"{lab}_{s}" for s in self.stats for lab in labels)
            # read the windows in groups so that memory stays bounded on long inputs
            k = 0
            while k < len(starts):
                k_end = k + 1
                while k_end < len(starts) and hi[k_end] - lo[k] <= 8192:
                    k_end += 1
                a, b = int(lo[k]), int(hi[k_end - 1])
                data, mask = source.read_aligned(ex, stream, a, b)
                values, valid = [], []
                for j in range(k, k_end):
                    sl = slice(int(lo[j]) - a, int(hi[j]) - a)
                    m = mask[sl]
                    values.append(window_stats(data[sl][m], centres[lo[j] : hi[j]][m], self.stats))
                    valid.append(m.sum() >= self.config["min_valid"] * expected and m.any())
                yield Rows(
                    f"{ex}.{stream}",
                    np.stack(values),
                    starts[k:k_end],
                    starts[k:k_end] + win,
                    valid=valid,
                    labels=names,
                )
                k = k_end


@emofeat.hookimpl
def register_extractors(register):
    register(Functionals)
