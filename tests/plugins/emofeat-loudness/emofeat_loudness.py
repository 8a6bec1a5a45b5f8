"""An example third-party emofeat plugin: RMS loudness in dBFS per short frame.

It is a complete plugin: an extractor registered through the ``emofeat`` entry-point
group, plus a CLI command. The test suite pip-installs this folder and runs it through
``emofeat extract`` like a built-in.
"""

import click
import numpy as np

import emofeat


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
    }

    def __init__(self, config=None, device="cpu"):
        super().__init__(config, device)
        if self.config["floor"] >= 0:  # a check only an instance makes (docs/plugins.md)
            raise emofeat.ConfigError(
                f"loudness.floor={self.config['floor']}: must be below 0 dBFS"
            )

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
            db = max(self.config["floor"], 20 * np.log10(max(rms, 1e-12)))
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


@emofeat.hookimpl
def register_extractors(register):
    register(Loudness)


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
