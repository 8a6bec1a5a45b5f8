"""The stall guard: an input whose reading makes no progress fails ("stalled"), the run goes
on with the other inputs.

The stalls are real: a named pipe fed with the first part of a real WAV file by a writer
that then keeps the pipe open without writing, as a hung network mount would. Discovery
never hands a pipe to the engine (tests/test_discovery.py), so these tests give it to the
engine and the decoder directly.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from emofeat import FeatureStore, open_store
from emofeat.api import build_jobs
from emofeat.engine import RunOptions, run
from emofeat.errors import MediaError
from emofeat.media import AudioChunk, Decoder, probe
from emofeat.runner import _THREADS, guarded, prefetch
from emofeat.samples import write_audio

STALL = 2.0  # seconds


@contextlib.contextmanager
def stalling_pipe(path: Path, data: bytes) -> Iterator[Path]:
    """A named pipe whose writer writes ``data``, then holds the pipe open, writing
    nothing, until the end."""
    os.mkfifo(path)
    release = threading.Event()

    def writer() -> None:
        try:
            with open(path, "wb") as f:  # waits for a reader
                f.write(data)
                f.flush()
                release.wait()
        except OSError:
            pass

    thread = threading.Thread(target=writer, name="stalling-writer", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        release.set()
        # be a reader until the writer is done: its open returns, its write completes
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            end = time.monotonic() + 10
            while thread.is_alive() and time.monotonic() < end:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 1 << 16)
                thread.join(0.01)
        finally:
            os.close(fd)
        assert not thread.is_alive(), "the pipe's writer is still blocked"


def wait_for_threads(prefix: str, timeout: float = 10.0) -> int:
    """Tasks (probe, hash, decode) named with ``prefix`` still at work in the runner's
    threads after ``timeout`` seconds (their threads are kept for reuse once done)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _THREADS.at_work(prefix):
            return 0
        time.sleep(0.05)
    return _THREADS.at_work(prefix)


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    return write_audio(tmp_path_factory.mktemp("stall") / "voice.wav", duration=10.0)


def test_a_stalled_input_fails_and_the_run_goes_on(wav, tmp_path):
    good = tmp_path / "good.wav"
    good.write_bytes(wav.read_bytes())
    out = tmp_path / "feats.h5"
    jobs = build_jobs(["egemaps"], ["egemaps.functionals=false"], None)
    with stalling_pipe(tmp_path / "stuck.wav", wav.read_bytes()[:32000]) as pipe:
        t0 = time.monotonic()
        with FeatureStore(out, mode="a") as store:
            summary = run(store, [pipe, good], jobs, RunOptions(stall_timeout=STALL))
        took = time.monotonic() - t0
    assert took < 4 * STALL + 10, f"the run took {took:.1f} s"
    by_input = {Path(r.input).name: r for r in summary.results}
    stuck = by_input["stuck.wav"]
    assert stuck.status == "failed"
    assert re.fullmatch(r".* stalled: no progress for 2 s", stuck.message), stuck.message
    assert by_input["good.wav"].status == "done"
    assert summary.failed  # the CLI's exit status 1
    store = open_store(out)
    log = store.run_log()
    (entry,) = log[(log["event"] == "input") & (log["input"] == str(pipe))].to_dict("records")
    assert entry["status"] == "failed" and "stalled" in entry["message"]
    assert store.items() == ["good"]
    assert store.read("good", "egemaps", "lld").data.shape[0] > 250
    assert wait_for_threads("emofeat-") == 0  # the abandoned reader ended with the pipe


@pytest.mark.parametrize("depth", [2, 0])
def test_decoding_stall_fails_the_input(wav, tmp_path, depth):
    """The decoder itself stops getting data: the chunks so far come, then the error."""
    info = probe(wav)
    data = wav.read_bytes()
    header = data.index(b"data") + 8
    held = 6.0  # seconds of audio in the pipe (FFmpeg reads 5 s to open it)
    with stalling_pipe(tmp_path / "stuck.wav", data[: header + int(held * 16000) * 2]) as pipe:
        decoder = Decoder(replace(info, path=pipe), audio_rates=[16000], audio_chunk=0.25)
        got: list[AudioChunk] = []
        t0 = time.monotonic()
        with pytest.raises(MediaError) as err:
            for chunk in prefetch(decoder, depth, STALL, pipe):
                got.append(chunk)
        took = time.monotonic() - t0
    assert err.value.path == str(pipe)
    assert err.value.problem == "decoding stalled: no progress for 2 s"
    assert STALL <= took < STALL + 5, took
    assert 0.25 <= sum(len(c.samples) for c in got) / 16000 <= held
    assert np.isfinite(np.concatenate([c.samples for c in got])).all()
    assert wait_for_threads("emofeat-decode") == 0


def test_guarded_call_gives_up_and_reports_the_input():
    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(MediaError) as err:
        guarded(release.wait, 0.5, "/data/talk.mp4", "reading the file's header")
    assert time.monotonic() - t0 < 3
    assert (
        str(err.value) == "/data/talk.mp4: reading the file's header stalled: no progress for 0.5 s"
    )
    release.set()
    assert guarded(lambda: 42, 1.0, "x") == 42
    assert guarded(lambda: 42, 0, "x") == 42  # 0: no guard, no thread
    with pytest.raises(ZeroDivisionError):
        guarded(lambda: 1 / 0, 1.0, "x")
