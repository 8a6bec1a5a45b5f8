"""A test-only emofeat plugin that injects faults where the test suite wants them.

``faults`` is an audio extractor that writes the mean of each 0.1 s frame, and acts on the
input's file name:

* ``kill*``: the process running it kills itself with SIGKILL (a worker dying: out of
  memory, a segfault) every time;
* ``hold*``: it writes ``<EMOFEAT_FAULTS_DIR>/started-<stem>-<pid>`` and waits until the
  file ``<EMOFEAT_FAULTS_DIR>/release`` exists (so a test can kill its process while it is
  certainly mid-input).
"""

import os
import signal
import time
from pathlib import Path

import numpy as np

import emofeat


class Faults(emofeat.Extractor):
    name = "faults"
    version = "1"
    modality = "audio"
    sampling_rate = 8000
    license = "MIT (no model)"
    description = "test-only: frame means, with faults injected by input name"

    def streams(self):
        return [emofeat.StreamSpec("mean", ("mean",), "frame", "10 Hz")]

    def begin(self, info):
        stem = Path(info.path).stem
        if stem.startswith("kill"):
            os.kill(os.getpid(), signal.SIGKILL)
        if stem.startswith("hold"):
            folder = Path(os.environ["EMOFEAT_FAULTS_DIR"])
            (folder / f"started-{stem}-{os.getpid()}").touch()
            while not (folder / "release").exists():
                time.sleep(0.05)
        self.windows = emofeat.SlidingWindows(0.1, 0.1, self.sampling_rate)

    def process(self, chunk):
        for start, window, padded in self.windows.push(chunk.samples):
            t = start / self.sampling_rate
            yield emofeat.Rows(
                "mean", [[float(np.mean(window))]], [t], [t + 0.1], valid=[not padded]
            )

    def end(self):
        for start, window, padded in self.windows.flush():
            t = start / self.sampling_rate
            yield emofeat.Rows(
                "mean", [[float(np.mean(window))]], [t], [t + 0.1], valid=[not padded]
            )


@emofeat.hookimpl
def register_extractors(register):
    register(Faults)
