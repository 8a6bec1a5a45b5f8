"""Bad input: a clear message naming the file and the problem, recorded in the run log,
never stopping the other inputs nor losing what is already stored.

Requirement: missing path, permission denied, zero-byte file, truncated or corrupt video,
a text file named .mp4, a video with no audio track given to an audio extractor (skipped,
with the reason), an audio file given to a video extractor, an image folder with missing
frame numbers, an unwritable output. Exit status 1 when any input failed; skipped is not
a failure.

Most cases run the real CLI in a subprocess with the built-in ``egemaps`` extractor (audio,
openSMILE) on one good input plus the bad one. Cases that need a video extractor run the
engine in-process with :class:`MeanGrey`, a small real video extractor defined here.

Permission tests: root reads a ``chmod 000`` file anyway, so as root the CLI runs with
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from its capability bounding set (it stays
uid 0 but obeys file permissions, like any user). Switching to ``nobody`` is the fallback;
it does not work where the interpreter lives under ``/root`` (mode 700), as it does here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import emofeat_cmd, run_cli

from emofeat import Extractor, FeatureStore, Rows, StreamSpec, open_store
from emofeat.engine import Job, RunOptions, RunSummary, run
from emofeat.samples import _frame_image, write_audio, write_image_sequence, write_video

GOOD_SECONDS = 2.0
GOOD_FPS = 30


# --------------------------------------------------------------------------------------
# media and helpers


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """Good inputs shared by the tests of this module (read only; tests copy to change)."""
    d = tmp_path_factory.mktemp("bad_input_media")
    write_video(d / "good.mp4", duration=GOOD_SECONDS, fps=GOOD_FPS)
    write_video(d / "long.mp4", duration=3.0, fps=25)
    write_video(d / "silent.mp4", duration=1.0, fps=25, audio=False)
    write_audio(d / "voice.wav", duration=1.0)
    write_image_sequence(d / "crops", n_frames=20, size=(64, 48), missing=(5, 6, 7))
    return d


def norm(text: str) -> str:
    """Output with every run of whitespace made one space (rich wraps long lines)."""
    return " ".join(text.split())


def extract(*args: str | Path, output: Path, **kw) -> subprocess.CompletedProcess:
    """``emofeat extract --plugin egemaps ARGS -o OUTPUT`` in a subprocess."""
    proc = run_cli("extract", "--plugin", "egemaps", *map(str, args), "-o", str(output), **kw)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def input_entries(store: FeatureStore, path: Path | str) -> list[dict]:
    """Run-log ``input`` entries of one input (as given on the command line), oldest first."""
    log = store.run_log()
    rows = log[(log["event"] == "input") & (log["input"] == str(path))]
    return rows.to_dict("records")


def item_entries(store: FeatureStore, path: Path | str, extractor: str) -> list[dict]:
    log = store.run_log()
    rows = log[
        (log["event"] == "item") & (log["input"] == str(path)) & (log["extractor"] == extractor)
    ]
    return rows.to_dict("records")


def assert_good_stored(store_path: Path, good: Path, key: str = "good") -> dict:
    """The good input's egemaps item is complete and holds real features; returns its attrs."""
    store = open_store(store_path)
    assert key in store.items()
    attrs = store.item_attrs(key, "egemaps")
    assert attrs is not None, f"{key} x egemaps missing or incomplete"
    assert attrs["source"]["path"] == str(good.resolve())
    lld = store.read(key, "egemaps", "lld")
    assert lld.data.shape[1] == 25  # eGeMAPSv02 low-level descriptors
    assert abs(len(lld.data) - GOOD_SECONDS * 100) <= 5  # 10 ms frames
    assert np.isfinite(lld.data[lld.mask]).all()
    aligned = store.read(key, "egemaps", "lld", aligned=True)
    assert len(aligned.mask) == GOOD_SECONDS * GOOD_FPS  # one row per video frame
    assert aligned.mask.mean() > 0.9
    last = input_entries(store, good)[-1]
    assert last["status"] in ("done", "unchanged"), last
    return attrs


def assert_failed_input(
    proc: subprocess.CompletedProcess, store_path: Path, bad: Path, *problem: str
) -> dict:
    """Exit 1; stderr names the bad input and the problem; the run log records the failure."""
    assert proc.returncode == 1, proc.stderr
    err = norm(proc.stderr).lower()
    assert str(bad).lower() in err, proc.stderr
    for word in problem:
        assert word.lower() in err, (word, proc.stderr)
    # the summary lists the failure as "PATH: MESSAGE"
    assert f"{bad}: ".lower() in err, proc.stderr
    store = open_store(store_path)
    (entry,) = input_entries(store, bad)
    assert entry["status"] == "failed"
    for word in problem:
        assert word.lower() in entry["message"].lower(), entry
    (item,) = item_entries(store, bad, "egemaps")
    assert item["status"] == "failed"
    assert item["message"], item
    assert not store.extractors(entry["key"]), "a failed input left an item behind"
    return entry


# --------------------------------------------------------------------------------------
# inputs that cannot be read


def test_missing_path(media, tmp_path):
    bad = tmp_path / "nowhere" / "absent.mp4"
    out = tmp_path / "feats.h5"
    proc = extract(media / "good.mp4", bad, output=out)
    assert_failed_input(proc, out, bad, "no such file")
    assert_good_stored(out, media / "good.mp4")


def test_glob_pattern_matching_nothing(media, tmp_path):
    pattern = str(tmp_path / "videos" / "*.mp4")
    out = tmp_path / "feats.h5"
    proc = extract(media / "good.mp4", pattern, output=out)
    assert proc.returncode == 1, proc.stderr
    assert f"{pattern}: the pattern matches nothing" in norm(proc.stderr)
    (entry,) = input_entries(open_store(out), pattern)
    assert entry["status"] == "failed"
    assert "matches nothing" in entry["message"]
    assert_good_stored(out, media / "good.mp4")


def test_zero_byte_file(media, tmp_path):
    bad = tmp_path / "empty.mp4"
    bad.touch()
    out = tmp_path / "feats.h5"
    proc = extract(media / "good.mp4", bad, output=out)
    assert_failed_input(proc, out, bad, "empty file", "0 bytes")
    assert_good_stored(out, media / "good.mp4")


def test_text_file_named_mp4(media, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("these are meeting notes, not a video\n" * 20)
    out = tmp_path / "feats.h5"
    proc = extract(bad, media / "good.mp4", output=out)  # the bad one first: the good one follows
    assert_failed_input(proc, out, bad, "not a media file")
    assert_good_stored(out, media / "good.mp4")


def test_truncated_video_without_index(media, tmp_path):
    """An mp4 whose index (moov atom, at the end by default) is cut off cannot be read."""
    data = (media / "long.mp4").read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "feats.h5"
    proc = extract(media / "good.mp4", bad, output=out)
    assert_failed_input(proc, out, bad, "truncated")
    assert_good_stored(out, media / "good.mp4")


def _faststart(src: Path, dst: Path) -> None:
    """Remux ``src`` with its index at the front (``movflags=faststart``), no re-encoding."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            o.mux(packet)
    data = dst.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat"), "remux did not put the index first"


def test_truncated_video_with_index_first(media, tmp_path):
    """With the index first, the part that is there is processed and the truncation reported."""
    whole = tmp_path / "whole.mp4"
    _faststart(media / "long.mp4", whole)
    data = whole.read_bytes()
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "feats.h5"
    proc = extract(media / "good.mp4", bad, output=out)
    assert proc.returncode == 0, proc.stderr
    err = norm(proc.stderr)
    assert f"{bad}: truncated?" in err, proc.stderr
    store = open_store(out)
    (entry,) = input_entries(store, bad)
    assert entry["status"] == "done"
    assert any(w.startswith(f"{bad}: truncated?") for w in entry["warnings"]), entry
    attrs = store.item_attrs("cut", "egemaps")
    assert attrs is not None
    assert any("truncated?" in w for w in attrs["warnings"])  # the warning travels with the item
    lld = store.read("cut", "egemaps", "lld")
    assert 0.3 < lld.times[-1, 1] < 2.5  # only what could be decoded of the 3 s
    assert_good_stored(out, media / "good.mp4")


def test_corrupt_video_does_not_crash_the_run(media, tmp_path):
    """Random bytes in the middle of a valid mp4: done with a warning, or failed with a message."""
    data = bytearray((media / "long.mp4").read_bytes())
    mid = len(data) // 2
    data[mid - 2000 : mid + 2000] = np.random.default_rng(7).bytes(4000)
    bad = tmp_path / "garbled.mp4"
    bad.write_bytes(bytes(data))
    out = tmp_path / "feats.h5"
    proc = extract(bad, media / "good.mp4", output=out)
    assert proc.returncode in (0, 1), proc.stderr
    err = norm(proc.stderr)
    store = open_store(out)
    (entry,) = input_entries(store, bad)
    assert entry["status"] in ("done", "failed"), entry
    if entry["status"] == "failed":
        assert proc.returncode == 1
        assert entry["message"] and f"{bad}: {entry['message']}" in err
    else:
        assert proc.returncode == 0
        assert entry["warnings"], "a corrupt input was processed without any warning"
        assert all(w.startswith(f"{bad}:") for w in entry["warnings"])
        assert entry["warnings"][0] in err
        assert store.item_attrs("garbled", "egemaps") is not None
    assert_good_stored(out, media / "good.mp4")


# --------------------------------------------------------------------------------------
# permission denied (the ``unprivileged`` and ``open_dir`` fixtures are in conftest.py)


def extract_unprivileged(
    unprivileged, *args: str | Path, output: Path, cwd: Path
) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "HOME": str(cwd)}
    proc = subprocess.run(
        [*emofeat_cmd(), "extract", "--plugin", "egemaps", *map(str, args), "-o", str(output)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        preexec_fn=unprivileged,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_permission_denied_file(media, open_dir, unprivileged):
    good = open_dir / "good.mp4"
    shutil.copy(media / "good.mp4", good)
    good.chmod(0o644)
    bad = open_dir / "locked.mp4"
    shutil.copy(media / "good.mp4", bad)
    bad.chmod(0)
    out = open_dir / "feats.h5"
    proc = extract_unprivileged(unprivileged, good, bad, output=out, cwd=open_dir)
    assert_failed_input(proc, out, bad, "permission denied")
    assert_good_stored(out, good)


def test_permission_denied_folder(media, open_dir, unprivileged):
    good = open_dir / "good.mp4"
    shutil.copy(media / "good.mp4", good)
    good.chmod(0o644)
    closed = open_dir / "closed"
    closed.mkdir()
    shutil.copy(media / "good.mp4", closed / "inside.mp4")
    closed.chmod(0)
    out = open_dir / "feats.h5"
    proc = extract_unprivileged(unprivileged, good, closed, output=out, cwd=open_dir)
    assert proc.returncode == 1, proc.stderr
    err = norm(proc.stderr).lower()
    assert f"{closed}: permission denied".lower() in err, proc.stderr
    store = open_store(out)
    (entry,) = input_entries(store, closed)
    assert entry["status"] == "failed"
    assert "permission denied" in entry["message"]
    assert_good_stored(out, good)


# --------------------------------------------------------------------------------------
# the wrong kind of input for the extractor


def test_video_without_audio_is_skipped_by_audio_extractor(media, tmp_path):
    silent = media / "silent.mp4"
    out = tmp_path / "feats.h5"
    proc = extract(media / "good.mp4", silent, output=out)
    assert proc.returncode == 0, proc.stderr  # skipped is not a failure
    err = norm(proc.stderr)
    assert f"skipped {silent} - egemaps: no audio track" in err, proc.stderr
    store = open_store(out)
    (entry,) = input_entries(store, silent)
    assert entry["status"] == "skipped"
    assert "no audio track" in entry["message"]
    (item,) = item_entries(store, silent, "egemaps")
    assert item["status"] == "skipped"
    assert item["message"] == "no audio track in this input"
    assert store.extractors("silent") == []
    run_end = store.run_log().query("event == 'run-end'").iloc[-1]
    assert (run_end["done"], run_end["skipped"], run_end["failed"]) == (1, 1, 0)
    assert_good_stored(out, media / "good.mp4")


class MeanGrey(Extractor):
    """Mean grey level of every frame (a real, if small, video extractor)."""

    name = "mean_grey"
    version = "1"
    modality = "video"
    description = "mean of the RGB values of each frame"

    def streams(self) -> list[StreamSpec]:
        return [StreamSpec("grey", ("grey",), "frame", "per frame")]

    def begin(self, info) -> None:
        self.period = 1.0 / float(info.fps or 30.0)

    def process(self, chunk):
        grey = chunk.frames.reshape(len(chunk.frames), -1).mean(axis=1)
        yield Rows("grey", grey, chunk.times, chunk.times + self.period)


def run_mean_grey(store_path: Path, inputs: list[Path]) -> RunSummary:
    job = Job(MeanGrey.name, MeanGrey, MeanGrey().config)
    with FeatureStore(store_path, mode="a") as store:
        return run(store, inputs, [job], RunOptions(), command="test")


def expected_grey(index: int, size: tuple[int, int]) -> float:
    return float(_frame_image(index, *size).mean())


def assert_video_good_stored(store_path: Path, key: str = "good") -> None:
    store = open_store(store_path)
    sd = store.read(key, "mean_grey", "grey", aligned=True)
    n = int(GOOD_SECONDS * GOOD_FPS)
    assert sd.data.shape == (n, 1)
    assert sd.mask.all()
    want = np.array([expected_grey(i, (320, 240)) for i in range(n)])
    np.testing.assert_allclose(sd.data[:, 0], want, atol=3.0)


def test_audio_file_given_to_video_extractor(media, tmp_path):
    voice = media / "voice.wav"
    out = tmp_path / "feats.h5"
    summary = run_mean_grey(out, [voice, media / "good.mp4"])
    by_input = {Path(r.input).name: r for r in summary.results}
    assert by_input["good.mp4"].status == "done"
    res = by_input["voice.wav"]
    assert res.status == "skipped"
    assert "no video stream" in res.message and "mean_grey" in res.message
    assert not summary.failed  # skipped, not failed: the run's exit status stays 0
    store = open_store(out)
    (entry,) = input_entries(store, voice)
    assert entry["status"] == "skipped"
    assert "no video stream" in entry["message"]
    (item,) = item_entries(store, voice, "mean_grey")
    assert item["status"] == "skipped"
    assert "audio only" in item["message"]
    assert store.extractors("voice") == []
    assert_video_good_stored(out)


def test_image_folder_with_missing_frame_numbers(media, tmp_path):
    crops = media / "crops"  # 00001.jpg .. 00020.jpg without 00005..00007
    out = tmp_path / "feats.h5"
    summary = run_mean_grey(out, [crops, media / "good.mp4"])
    by_input = {Path(r.input).name: r for r in summary.results}
    assert by_input["good.mp4"].status == "done"
    res = by_input["crops"]
    assert res.status == "done", res.message
    (warning,) = res.warnings
    assert warning.startswith(f"{crops}:")
    assert "3 of 20 frame numbers are missing" in warning and "00005" in warning
    assert not summary.failed
    store = open_store(out)
    (entry,) = input_entries(store, crops)
    assert entry["status"] == "done"
    assert entry["warnings"] == [warning]
    assert store.item_attrs("crops", "mean_grey")["warnings"] == [warning]
    sd = store.read("crops", "mean_grey", "grey", aligned=True)
    assert len(sd.mask) == 20
    assert np.flatnonzero(~sd.mask).tolist() == [4, 5, 6]  # frames 00005..00007, 0-based
    present = np.flatnonzero(sd.mask)
    want = np.array([expected_grey(i, (64, 48)) for i in present])
    np.testing.assert_allclose(sd.data[present, 0], want, atol=3.0)
    assert_video_good_stored(out)


def test_image_folder_with_unreadable_frame(media, tmp_path):
    crops = tmp_path / "track"
    shutil.copytree(media / "crops", crops)
    broken = crops / "00010.jpg"
    broken.write_text("not a jpeg")
    out = tmp_path / "feats.h5"
    summary = run_mean_grey(out, [crops, media / "good.mp4"])
    by_input = {Path(r.input).name: r for r in summary.results}
    res = by_input["track"]
    assert res.status == "done", res.message
    assert any(w.startswith(f"{broken}: cannot read image") for w in res.warnings), res.warnings
    sd = open_store(out).read("track", "mean_grey", "grey", aligned=True)
    assert np.flatnonzero(~sd.mask).tolist() == [4, 5, 6, 9]
    assert by_input["good.mp4"].status == "done"
    assert_video_good_stored(out)


# --------------------------------------------------------------------------------------
# unwritable output


@pytest.mark.parametrize("where", ["proc", "parent_is_file", "parent_missing", "is_folder"])
def test_unwritable_output(media, tmp_path, where):
    if where == "proc":
        out = Path("/proc/feats.h5")
    elif where == "parent_is_file":
        (tmp_path / "plain").write_text("a file, not a folder\n")
        out = tmp_path / "plain" / "feats.h5"
    elif where == "parent_missing":
        out = tmp_path / "no" / "such" / "folder" / "feats.h5"
    else:
        out = tmp_path / "a_folder.h5"
        out.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = extract(media / "good.mp4", output=out)
    assert proc.returncode != 0
    assert str(out) in norm(proc.stderr), proc.stderr
    assert "error" in proc.stderr.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written anywhere


def test_output_parent_is_a_file_says_so(media, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("a file, not a folder\n")
    out = plain / "feats.h5"
    proc = extract(media / "good.mp4", output=out)
    assert proc.returncode != 0
    err = norm(proc.stderr)
    assert str(out) in err, proc.stderr
    # the folder exists: saying it does not is wrong; say what is wrong with it
    assert "does not exist" not in err, proc.stderr
    assert "not a folder" in err or "not a directory" in err, proc.stderr


def test_output_folder_not_writable(media, open_dir, unprivileged):
    good = open_dir / "good.mp4"
    shutil.copy(media / "good.mp4", good)
    good.chmod(0o644)
    ro = open_dir / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    out = ro / "feats.h5"
    proc = extract_unprivileged(unprivileged, good, output=out, cwd=open_dir)
    assert proc.returncode != 0
    err = norm(proc.stderr)
    assert f"{out}: cannot write here" in err, proc.stderr
    assert "permission denied" in err.lower()
    assert list(ro.iterdir()) == []


def test_existing_store_in_folder_no_longer_writable(media, open_dir, unprivileged):
    """The store's folder turned read-only: a clear error, no traceback, nothing lost."""
    good = open_dir / "good.mp4"
    shutil.copy(media / "good.mp4", good)
    good.chmod(0o644)
    voice = open_dir / "voice.wav"
    shutil.copy(media / "voice.wav", voice)
    voice.chmod(0o644)
    folder = open_dir / "results"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    out = folder / "feats.h5"
    first = extract_unprivileged(unprivileged, good, output=out, cwd=open_dir)
    assert first.returncode == 0, first.stderr
    item_id = assert_good_stored(out, good)["item_id"]
    index_before = out.read_bytes()
    folder.chmod(0o555)
    proc = extract_unprivileged(unprivileged, good, voice, output=out, cwd=open_dir)
    assert proc.returncode != 0
    err = norm(proc.stderr)
    assert str(out) in err, proc.stderr
    assert "permission denied" in err.lower() or "not writable" in err.lower(), proc.stderr
    assert out.read_bytes() == index_before
    assert open_store(out).item_attrs("good", "egemaps")["item_id"] == item_id


def test_existing_file_that_is_not_a_store(media, tmp_path):
    out = tmp_path / "out.h5"
    text = "results: see the spreadsheet\n" * 10
    out.write_text(text)
    mtime = out.stat().st_mtime_ns
    proc = extract(media / "good.mp4", output=out)
    assert proc.returncode != 0
    err = norm(proc.stderr)
    assert f"{out}: not an HDF5 file" in err, proc.stderr
    assert out.read_text() == text and out.stat().st_mtime_ns == mtime
    assert not out.with_name("out.h5.d").exists()


def test_existing_hdf5_file_that_is_not_a_store(media, tmp_path):
    import h5py

    out = tmp_path / "other.h5"
    with h5py.File(out, "w") as f:
        f["data"] = np.arange(10)
    before = out.read_bytes()
    proc = extract(media / "good.mp4", output=out)
    assert proc.returncode != 0
    assert f"{out}: an HDF5 file, but not an emofeat store" in norm(proc.stderr), proc.stderr
    assert out.read_bytes() == before
    assert not out.with_name("other.h5.d").exists()


# --------------------------------------------------------------------------------------
# nothing already written is lost


def test_bad_input_does_not_lose_earlier_items(media, tmp_path):
    clip = tmp_path / "clip.mp4"
    shutil.copy(media / "good.mp4", clip)
    good, voice = media / "good.mp4", media / "voice.wav"
    out = tmp_path / "feats.h5"
    first = extract(good, voice, clip, output=out)
    assert first.returncode == 0, first.stderr
    store = open_store(out)
    keys = ["clip", "good", "voice"]
    assert store.items() == keys
    ids = {k: store.item_attrs(k, "egemaps")["item_id"] for k in keys}
    data = {k: store.read(k, "egemaps", "lld").data for k in keys}

    # a second run with bad inputs added, into the same store
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n" * 50)
    missing = tmp_path / "gone.mp4"
    second = extract(good, notes, voice, missing, clip, output=out)
    assert_failed_input(second, out, notes, "not a media file")
    assert str(missing) in norm(second.stderr)

    # the source of an item is replaced by garbage: that input fails, its item stays
    clip.write_bytes(np.random.default_rng(3).bytes(5000))
    third = extract(clip, good, output=out)
    assert third.returncode == 1, third.stderr
    assert f"{clip}: " in norm(third.stderr)

    store = open_store(out)
    assert store.items() == keys
    for k in keys:
        assert store.item_attrs(k, "egemaps")["item_id"] == ids[k], k
        np.testing.assert_array_equal(store.read(k, "egemaps", "lld").data, data[k])
    statuses = [e["status"] for e in input_entries(store, clip)]
    assert statuses == ["done", "unchanged", "failed"]
    log = store.run_log()
    assert (log["event"] == "run-start").sum() == 3
    assert (log["event"] == "run-end").sum() == 3
    assert_good_stored(out, good)


def test_many_bad_inputs_in_one_run(media, tmp_path):
    """Several kinds of bad input at once: each is reported, the good ones are all stored."""
    empty = tmp_path / "empty.mp4"
    empty.touch()
    notes = tmp_path / "notes.mp4"
    notes.write_text("hello\n")
    missing = tmp_path / "gone.mp4"
    silent, good, voice = media / "silent.mp4", media / "good.mp4", media / "voice.wav"
    out = tmp_path / "feats.h5"
    proc = extract(empty, good, notes, silent, missing, voice, output=out)
    assert proc.returncode == 1, proc.stderr
    err = norm(proc.stderr)
    assert "3 input(s) failed" in err
    for path in (empty, notes, missing):
        assert f"{path}: " in err
    store = open_store(out)
    log = store.run_log().query("event == 'input'")
    status = {Path(p).name: s for p, s in zip(log["input"], log["status"], strict=True)}
    assert status == {
        "empty.mp4": "failed",
        "good.mp4": "done",
        "notes.mp4": "failed",
        "silent.mp4": "skipped",
        "gone.mp4": "failed",
        "voice.wav": "done",
    }
    assert store.items() == ["good", "voice"]
    assert store.item_attrs("voice", "egemaps") is not None
    assert_good_stored(out, good)


def test_non_finite_audio_samples_become_silence_with_a_warning(tmp_path):
    """A float WAV holding NaN and infinity: no garbage stored, no raw numpy warning."""
    import soundfile

    rate = 16000
    x = np.random.default_rng(0).normal(0, 0.1, 3 * rate).astype(np.float32)
    x[8000:8100] = np.nan
    x[20000:20010] = np.inf
    soundfile.write(tmp_path / "nan.wav", x, rate, subtype="FLOAT")
    write_audio(tmp_path / "fine.wav", duration=1.0)
    res = run_cli("extract", "-p", "egemaps", "-q", str(tmp_path), "-o", "f.h5", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "RuntimeWarning" not in res.stderr and "invalid value" not in res.stderr
    assert (
        "nan.wav: 110 audio samples (0.007 s at 16000 Hz) were not finite (NaN or infinity); "
        "they were replaced by silence" in res.stderr
    )
    with open_store(tmp_path / "f.h5") as store:
        for stream in ("lld", "functionals"):
            data = store.read("nan", "egemaps", stream)
            assert np.isfinite(data.data).all()
        log = store.run_log()
        warned = log[(log["event"] == "input") & (log["key"] == "nan")]["warnings"].iloc[-1]
        assert any("not finite" in w for w in warned)
        assert store.read("fine", "egemaps", "lld").data.shape[0] > 0
