"""An example third-party emofeat plugin: RMS loudness in dBFS per short frame.

It is a complete plugin, written from docs/plugins.md: two extractors registered through
the ``emofeat`` entry-point group (``loudness`` on audio; ``arousal``, which reads the
stored loudness and applies a small non-commercial model), the model's registry entry (its
licence needs the user's opt-in) and a CLI command. The test suite pip-installs this folder
and runs it through ``emofeat extract`` like a built-in (tests/test_plugins.py,
tests/test_third_party.py).
"""

import hashlib
import json
from pathlib import Path

import click
import numpy as np

import emofeat
from emofeat.models import Model, ModelCache, get_model


class Loudness(emofeat.Extractor):
    name = "loudness"
    version = "1"
    modality = "audio"
    sampling_rate = 8000
    license = "MIT (no model)"
    description = "RMS level in dBFS over short frames"
    settings = {
        "frame": emofeat.Setting(0.05, "frame length and hop in seconds"),
        "floor": emofeat.Setting(-100.0, "lowest level reported, dBFS"),
        "fail": emofeat.Setting(False, "raise inside process() (to test error reporting)"),
        "calibration": emofeat.Setting(
            "", "text file holding a gain in dB added to every level; empty: none"
        ),
    }

    def __init__(self, config=None, device="cpu"):
        super().__init__(config, device)
        if self.config["floor"] >= 0:  # a check only an instance makes (docs/plugins.md)
            raise emofeat.ConfigError(
                f"loudness.floor={self.config['floor']}: must be below 0 dBFS"
            )

    def prepare(self):
        # reads a file: a check for prepare(), which runs once before any input (not for
        # __init__, which 'emofeat plugins' calls too)
        self.gain = 0.0
        path = self.config["calibration"]
        if path:
            try:
                self.gain = float(Path(path).read_text())
            except (OSError, ValueError) as exc:
                raise emofeat.ConfigError(
                    f"loudness.calibration={path}: not a readable gain in dB ({exc})"
                ) from None

    def streams(self):
        return [
            emofeat.StreamSpec("rms", ("rms_dbfs",), "frame", f"{1 / self.config['frame']:g} Hz")
        ]

    def begin(self, info):
        frame = self.config["frame"]
        self.windows = emofeat.SlidingWindows(frame, frame, self.sampling_rate)

    def _rows(self, windows):
        sr = self.sampling_rate
        for start, window, padded in windows:
            rms = float(np.sqrt(np.mean(window.astype(np.float64) ** 2)))
            db = max(self.config["floor"], 20 * np.log10(max(rms, 1e-12)) + self.gain)
            t = start / sr
            yield emofeat.Rows("rms", [[db]], [t], [t + len(window) / sr], valid=[not padded])

    def process(self, chunk):
        if self.config["fail"]:
            self._explode(chunk.start)
        yield from self._rows(self.windows.push(chunk.samples))

    def _explode(self, start):
        raise RuntimeError(f"loudness asked to fail at {start:.1f} s")

    def end(self):
        yield from self._rows(self.windows.flush())


# A model whose weights ship inside this package (three numbers), under a licence that
# forbids commercial use: registered so that 'emofeat models list' shows it and the user's
# opt-in ('emofeat models accept loudness-arousal') is remembered.
AROUSAL_WEIGHTS = {"slope": 0.15, "centre": -30.0}
AROUSAL_MODEL = Model(
    name="loudness-arousal",
    version="1",
    files=(),
    license="CC-BY-NC-4.0",
    commercial_use=False,
    description="logistic map from loudness (dBFS) to an arousal proxy in 0..1",
)


class Arousal(emofeat.Extractor):
    name = "arousal"
    version = "1"
    modality = "features"  # reads streams already in the store
    license = "CC-BY-NC-4.0 (loudness-arousal model)"
    commercial_use = False
    description = "arousal proxy (0..1) per loudness frame, from the stored loudness.rms"
    settings = {"cache_dir": emofeat.Setting("", "model cache (default: emofeat's cache)")}

    def prepare(self):
        # a licence not accepted stops the run once, before any input
        ModelCache(self.config["cache_dir"] or None).require_license(get_model("loudness-arousal"))

    def model(self):
        blob = json.dumps(AROUSAL_WEIGHTS, sort_keys=True).encode()
        m = AROUSAL_MODEL
        digest = hashlib.sha256(blob).hexdigest()
        return emofeat.ModelInfo(m.id, digest, m.license, "emofeat-loudness package")

    def streams(self):
        return [emofeat.StreamSpec("arousal", ("arousal",), "frame", "as loudness.rms")]

    def sources(self, stored):
        if ("loudness", "rms", "frame") not in stored.streams():
            raise emofeat.SkipExtractor("needs loudness.rms (run --plugin loudness first)")
        return [("loudness", "rms")]

    def process_stored(self, source, grid):
        # the frame-aligned view: one row per frame of the input's grid, with a mask
        data, mask = source.read_aligned("loudness", "rms", 0, len(grid))
        w = AROUSAL_WEIGHTS
        arousal = 1.0 / (1.0 + np.exp(-w["slope"] * (data[:, 0] - w["centre"])))
        yield emofeat.Rows("arousal", arousal, grid.starts, grid.ends, valid=mask)


@emofeat.hookimpl
def register_extractors(register):
    register(Loudness)
    register(Arousal)


@emofeat.hookimpl
def register_models(register):
    register(AROUSAL_MODEL)


@emofeat.hookimpl
def register_commands(cli):
    @cli.command(name="loudness-peak")
    @click.argument("store")
    @click.argument("key")
    def loudness_peak(store, key):
        """Print the loudest frame of KEY in STORE (added by emofeat-loudness)."""
        data = emofeat.open_store(store).read(key, "loudness", "rms")
        i = int(np.argmax(data.data[:, 0]))
        click.echo(f"{key}: peak {data.data[i, 0]:.1f} dBFS at {data.times[i, 0]:.2f} s")
