"""The feature store: layout readable with plain h5py, atomic items, reruns, locking, SIGKILL."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import as_store_format_1, emofeat_cmd, run_cli

import emofeat
from emofeat import jobs
from emofeat.engine import Job, RunOptions, process_input, run
from emofeat.extractor import Rows, StreamSpec
from emofeat.media import FrameGrid
from emofeat.samples import write_audio, write_video
from emofeat.store import (
    ALIGNMENT_RULE,
    STORE_VERSION,
    FeatureStore,
    StoreError,
    StoreInUseError,
)


def _egemaps_job(**settings) -> Job:
    entry = emofeat.get_extractor("egemaps")
    cfg = {k: s.default for k, s in entry.cls.settings.items()}
    cfg.update(settings)
    return Job.from_entry(entry, cfg)


@pytest.fixture()
def two_inputs(tmp_path) -> list[Path]:
    a = write_video(tmp_path / "clip_a.mp4", duration=2.5, fps=25, size=(96, 64))
    b = write_audio(tmp_path / "clip_b.wav", duration=3.0)
    return [a, b]


def test_layout_is_plain_hdf5_with_provenance(tmp_path, two_inputs):
    store_path = tmp_path / "feats.h5"
    with FeatureStore(store_path, mode="a") as store:
        summary = run(store, two_inputs, [_egemaps_job()], RunOptions())
    assert [r.status for r in summary.results] == ["done", "done"]
    # read back without emofeat's reader: plain h5py follows the external links
    with h5py.File(store_path, "r") as f:
        assert f.attrs["format"] == "emofeat-store"
        assert int(f.attrs["format_version"]) == STORE_VERSION
        item = f["items/clip_a/egemaps"]
        lld = item["lld"]
        assert lld["data"].dtype == np.float32
        # a small item is written plain (compaction compresses it into a shard)
        assert lld["data"].compression is None
        assert lld["data"].shape[1] == 25 and lld["times"].shape == (lld["data"].shape[0], 2)
        assert lld["mask"].dtype == bool
        frames = item["frames/times"][:]
        assert frames.shape == (int(2.5 * 25), 2)  # one row per video frame
        assert lld["aligned/data"].shape == (len(frames), 25)
        assert lld["aligned/mask"].shape == (len(frames),)
        labels = [s.decode() for s in lld["labels"][:]]
        assert labels[0] == "Loudness_sma3"
        # provenance: one JSON object (one HDF5 attribute costs more than its bytes)
        assert set(item.attrs) == {"provenance", "complete"} and item.attrs["complete"]
        attrs = json.loads(item.attrs["provenance"])
        assert attrs["format_version"] == 2 and attrs["streams"] == ["lld", "functionals"]
        assert attrs["config"]["settings"]["win"] == 4.0
        source = attrs["source"]
        assert source["size"] == two_inputs[0].stat().st_size
        assert source["hash"].startswith("sha256:")
        assert attrs["emofeat_version"] == emofeat.__version__
        assert attrs["plugin_package"] == "emofeat"
        assert "audEERING" in attrs["license"]
        # audio-only input: the fixed grid at the default 100 Hz
        assert f["items/clip_b/egemaps/frames/times"].shape[0] == 300
        # no object (pickle) dtypes anywhere: every dataset is numeric, bool or a string
        kinds = set()
        f.visititems(lambda n, o: kinds.add(o.dtype.kind) if isinstance(o, h5py.Dataset) else 0)
        # 'O' only for h5py variable-length strings, 'u' for the index's JSON-lines bytes
        assert kinds <= {"f", "b", "i", "O", "u"}
        f.visititems(
            lambda n, o: (
                h5py.check_string_dtype(o.dtype) is not None
                if isinstance(o, h5py.Dataset) and o.dtype.kind == "O"
                else None
            )
        )


def test_dataframe_like_opensmile(tmp_path, two_inputs):
    store_path = tmp_path / "feats.h5"
    with FeatureStore(store_path, mode="a") as store:
        run(store, two_inputs, [_egemaps_job()], RunOptions())
    store = emofeat.open_store(store_path)
    df = store.to_frame("egemaps", "lld")
    assert list(df.index.names) == ["file", "start", "end"]
    assert isinstance(df.index.get_level_values("start")[0], pd.Timedelta)
    assert set(df.index.get_level_values("file")) == {str(p.resolve()) for p in two_inputs}
    assert df.shape[1] == 25
    aligned = store.to_frame("egemaps", "lld", keys=["clip_a"], aligned=True)
    assert len(aligned) == int(2.5 * 25)
    # openSMILE LLD frames: 10 ms hop, start at 0
    first = df.xs(str(two_inputs[1].resolve()), level="file")
    starts = first.index.get_level_values("start").total_seconds().to_numpy()
    np.testing.assert_allclose(np.diff(starts)[:10], 0.01, atol=1e-9)
    # what a features extractor reads: the aligned view in blocks, the same as one read
    stored = store.stored_input("clip_a")
    blocks = list(stored.aligned_blocks("egemaps", "lld", block=16))
    assert [first for first, _, _ in blocks] == [0, 16, 32, 48]  # 62 frames
    data, mask = stored.read_aligned("egemaps", "lld", 0, len(aligned))
    np.testing.assert_array_equal(np.concatenate([d for _, d, _ in blocks]), data)
    np.testing.assert_array_equal(np.concatenate([m for _, _, m in blocks]), mask)
    assert len(data) == len(aligned)


def test_rerun_skips_unchanged_and_redoes_changed(tmp_path, two_inputs):
    store_path = tmp_path / "feats.h5"
    with FeatureStore(store_path, mode="a") as store:
        run(store, two_inputs, [_egemaps_job()], RunOptions())
        ids = {k: store.item_attrs(k, "egemaps")["item_id"] for k in ("clip_a", "clip_b")}
        again = run(store, two_inputs, [_egemaps_job()], RunOptions())
        assert [r.status for r in again.results] == ["unchanged", "unchanged"]
        assert {k: store.item_attrs(k, "egemaps")["item_id"] for k in ids} == ids
        # a changed setting redoes the items
        changed = run(store, two_inputs, [_egemaps_job(hop=1.0)], RunOptions())
        assert [r.status for r in changed.results] == ["done", "done"]
        assert store.item_attrs("clip_a", "egemaps")["item_id"] != ids["clip_a"]
        # a changed file is redone, the other one is not
        ids = {k: store.item_attrs(k, "egemaps")["item_id"] for k in ("clip_a", "clip_b")}
        write_audio(two_inputs[1], duration=2.0)
        third = run(store, two_inputs, [_egemaps_job(hop=1.0)], RunOptions())
        assert [r.status for r in third.results] == ["unchanged", "done"]
        assert store.item_attrs("clip_a", "egemaps")["item_id"] == ids["clip_a"]
        assert store.read("clip_b", "egemaps", "lld").data.shape[0] < 250
        # --overwrite redoes everything
        forced = run(store, two_inputs, [_egemaps_job(hop=1.0)], RunOptions(overwrite=True))
        assert [r.status for r in forced.results] == ["done", "done"]
    log = emofeat.open_store(store_path).run_log()
    assert (log["event"] == "run-start").sum() == 5
    assert set(log.loc[log["event"] == "input", "status"]) == {"done", "unchanged"}


def test_items_aligned_under_an_older_rule_are_reported_then_redone(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", duration=2.0, fps=30, size=(96, 64))
    voice = write_audio(tmp_path / "voice.wav", duration=2.0)
    out = tmp_path / "feats.h5"
    res = run_cli("extract", "-q", "-p", "egemaps", str(clip), str(voice), "-o", str(out))
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(out)
    assert ALIGNMENT_RULE == "nearest-centre-covering-v2"
    assert store.item_attrs("clip", "egemaps")["alignment"] == ALIGNMENT_RULE
    ids = {k: store.item_attrs(k, "egemaps")["item_id"] for k in ("clip", "voice")}
    # what an older emofeat left: a store of format 1 with an item recording the v1 rule
    as_store_format_1(out)
    with h5py.File(store.item_path("clip", "egemaps"), "r+") as f:
        f.attrs["alignment"] = "nearest-centre-covering-v1"
    insp = run_cli("inspect", str(out))
    assert insp.returncode == 0, insp.stderr
    assert (
        "1 item(s) aligned under an older rule (nearest-centre-covering-v1): rerun the "
        "extract command to redo them" in insp.stdout
    )
    assert "clip x egemaps" in insp.stdout and "voice x egemaps" not in insp.stdout
    data = json.loads(run_cli("inspect", "--json", str(out)).stdout)
    assert data["alignment_rule"] == ALIGNMENT_RULE
    assert data["stale_alignment"] == [
        {"key": "clip", "extractor": "egemaps", "alignment": "nearest-centre-covering-v1"}
    ]
    # the rerun redoes that item only
    again = run_cli("extract", "-q", "-p", "egemaps", str(clip), str(voice), "-o", str(out))
    assert again.returncode == 0, again.stderr
    assert store.item_attrs("clip", "egemaps")["alignment"] == ALIGNMENT_RULE
    redone = store.item_attrs("clip", "egemaps")["item_id"]
    assert redone != ids["clip"]
    assert store.item_attrs("voice", "egemaps")["item_id"] == ids["voice"]
    log = store.run_log()
    last = log[(log["event"] == "input")].tail(2)
    assert dict(zip(last["key"], last["status"], strict=True)) == {
        "clip": "done",
        "voice": "unchanged",
    }
    insp = run_cli("inspect", str(out))
    assert insp.returncode == 0 and "older rule" not in insp.stdout
    data = json.loads(run_cli("inspect", "--json", str(out)).stdout)
    assert data["stale_alignment"] == []
    # a third run finds everything unchanged
    third = run_cli("extract", "-q", "-p", "egemaps", str(clip), str(voice), "-o", str(out))
    assert third.returncode == 0, third.stderr
    assert store.item_attrs("clip", "egemaps")["item_id"] == redone
    log = store.run_log()
    assert set(log[(log["event"] == "input")].tail(2)["status"]) == {"unchanged"}


class _Counter(emofeat.Extractor):
    """Per-frame extractor writing the frame's mean grey level (a real computation)."""

    name = "grey"
    version = "1"
    modality = "video"

    def streams(self):
        return [StreamSpec("level", ("grey",), "frame", "video frames")]

    def process(self, chunk):
        starts = chunk.times
        yield Rows("level", chunk.frames.reshape(len(starts), -1).mean(1), starts, starts + 0.04)


def test_item_visible_only_when_complete(tmp_path):
    store_path = tmp_path / "feats.h5"
    store = FeatureStore(store_path, mode="a")
    writer = store.new_item("k", "grey", [StreamSpec("level", ("grey",))])
    writer.append(Rows("level", np.ones((3, 1)), [0, 1, 2], [1, 2, 3]))
    # staged but not committed: invisible to readers
    assert emofeat.open_store(store_path).items() == []
    grid = FrameGrid(np.arange(3.0), np.arange(1.0, 4.0), 1.0, "fixed")
    writer.finalize(grid, {"source": {"path": "x"}})
    assert emofeat.open_store(store_path).items() == []
    store.commit([("k", "grey", writer.path)], [])
    assert emofeat.open_store(store_path).items() == ["k"]
    np.testing.assert_array_equal(emofeat.open_store(store_path).read("k", "grey").data, 1)
    store.close()


def test_process_input_is_plain_data_in_staged_items_out(tmp_path):
    """The per-input work (what a worker or a Dask task runs) stages items, never commits."""
    clip = write_audio(tmp_path / "voice.wav", duration=2.0)
    store_path = tmp_path / "feats.h5"
    with FeatureStore(store_path, mode="a") as store:
        args = (str(clip), "voice", [_egemaps_job()], RunOptions(), str(store.staging_dir))
        assert pickle.loads(pickle.dumps(process_input)) is process_input
        res = pickle.loads(pickle.dumps(process_input(*pickle.loads(pickle.dumps(args)))))
        assert res.status == "done" and [o.status for o in res.outcomes] == ["done"]
        ((key, extractor, staged),) = res.items
        assert (key, extractor) == ("voice", "egemaps")
        assert Path(staged).parent == store.staging_dir
        assert Path(staged).name.startswith("voice.egemaps.")  # staged_item_path's layout
        assert store.new_item("voice", "egemaps", []).path.name.startswith("voice.egemaps.")
        assert emofeat.open_store(store_path).items() == []  # nothing visible yet
        store.commit([(key, extractor, Path(staged))], [])
        assert store.item_attrs("voice", "egemaps")["complete"]


def test_extractor_instances_live_for_one_run(tmp_path):
    """A run keeps its extractors (a repeated run reuses them) and drops those of others."""
    clip = write_audio(tmp_path / "voice.wav", duration=1.0)
    with FeatureStore(tmp_path / "feats.h5", mode="a") as store:
        run(store, [clip], [_egemaps_job()], RunOptions())
        (first,) = jobs._EXTRACTORS.values()
        run(store, [clip], [_egemaps_job()], RunOptions(overwrite=True))
        assert list(jobs._EXTRACTORS.values()) == [first]
        run(store, [clip], [_egemaps_job(hop=1.0)], RunOptions())
        (second,) = jobs._EXTRACTORS.values()
        assert second is not first
    jobs.release_extractors()
    assert not jobs._EXTRACTORS


def test_second_writer_gets_in_use_error(tmp_path):
    store_path = tmp_path / "feats.h5"
    first = FeatureStore(store_path, mode="a")
    code = (
        "import sys; from emofeat.store import FeatureStore, StoreInUseError\n"
        f"try:\n    FeatureStore({str(store_path)!r}, mode='a')\n"
        "except StoreInUseError as e:\n    print(e); sys.exit(3)\n"
    )
    import sys

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 3, res.stderr
    assert "in use" in res.stdout and str(os.getpid()) in res.stdout
    # in-process too, and the store stays readable meanwhile
    with pytest.raises(StoreInUseError):
        FeatureStore(store_path, mode="a")
    assert emofeat.open_store(store_path).items() == []
    first.close()
    FeatureStore(store_path, mode="a").close()  # free again


def test_cli_second_process_in_use(tmp_path):
    """A store held by another writer: the CLI says so (exit 2) and touches nothing.

    The lock is held by this process, so the test does not depend on how fast another
    extraction runs."""
    inputs = [write_audio(tmp_path / f"in{i}.wav", duration=2.0) for i in range(2)]
    out = tmp_path / "feats.h5"
    holder = FeatureStore(out, mode="a")
    try:
        second = run_cli("extract", "-q", "-p", "egemaps", "-o", str(out), *map(str, inputs))
        assert second.returncode == 2
        assert "in use" in second.stderr and str(out) in second.stderr
        assert "Traceback" not in second.stderr
        assert emofeat.open_store(out).items() == []  # nothing written meanwhile
    finally:
        holder.close()
    again = run_cli("extract", "-q", "-p", "egemaps", "-o", str(out), *map(str, inputs))
    assert again.returncode == 0, again.stderr
    assert emofeat.open_store(out).items() == ["in0", "in1"]


def _visible_items(store_path: Path) -> dict[tuple[str, str], str]:
    store = emofeat.open_store(store_path)
    out = {}
    for key in store.items():
        for ex in store.extractors(key):
            attrs = store.item_attrs(key, ex)
            assert attrs is not None and attrs["complete"], f"{key} x {ex} visible but incomplete"
            for stream in store.streams(key, ex):
                sd = store.read(key, ex, stream, aligned=True)
                assert np.isfinite(sd.data[sd.mask]).all()
                store.read(key, ex, stream)
            out[(key, ex)] = attrs["item_id"]
    return out


def _staged_items(staging: Path) -> set[str]:
    """Item files being written (``<key>.<extractor>.<uuid>.h5``; not the index's copies)."""
    try:
        return {p.name for p in staging.iterdir() if not p.name.startswith("index-")}
    except FileNotFoundError:
        return set()


def _committed_inputs(store_path: Path) -> int:
    """Inputs holding committed items (0 before the store exists)."""
    try:
        return len(emofeat.open_store(store_path).items())
    except StoreError:
        return 0


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 180.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if the run ends before that."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before reaching the kill point"
        assert time.monotonic() < deadline, "kill point not reached in time"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def test_sigkill_at_any_moment_leaves_a_consistent_store(tmp_path):
    """Kill the writer at well-defined points, a fixed number of times, then finish the run.

    Kill points: while an item file is being written (a new file in ``.staging/``), and
    just after an input was committed (one more input in the index). Ten inputs and at most
    three committed kill points leave the run work to do at every kill."""
    inputs = [
        write_audio(tmp_path / f"in{i:02d}.wav", duration=4.0, f0=110 + 10 * i) for i in range(10)
    ]
    out = tmp_path / "feats.h5"
    staging = Path(str(out) + ".d") / ".staging"
    args = ["extract", "-q", "-p", "egemaps", "-p", "functionals", "-o", str(out)]
    args += [str(p) for p in inputs]
    seen: dict[tuple[str, str], str] = {}
    points = ["staged", "committed", "staged", "committed", "committed", "staged"]
    for point in points:
        leftovers = _staged_items(staging)  # of the previous kill: removed by the next writer
        committed = _committed_inputs(out)
        proc = subprocess.Popen(
            [*emofeat_cmd(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if point == "staged":
            _kill_when(proc, lambda old=leftovers: bool(_staged_items(staging) - old))
        else:
            _kill_when(proc, lambda n=committed: _committed_inputs(out) > n)
        visible = _visible_items(out)  # opens, every visible item reads completely
        for item, item_id in seen.items():
            assert visible.get(item) == item_id, f"{item} lost or changed after a kill ({point})"
        seen.update(visible)
    assert len(seen) >= 2 * points.count("committed")  # egemaps + functionals per input
    assert len(seen) < 2 * len(inputs)
    final = run_cli(*args)
    assert final.returncode == 0, final.stderr
    visible = _visible_items(out)
    assert len(visible) == 2 * len(inputs)
    for item, item_id in seen.items():
        assert visible[item] == item_id  # completed before a kill: kept, not redone
    assert not any(staging.iterdir())


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(StoreError, match="no such store"):
        emofeat.open_store(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        emofeat.open_store(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not an emofeat store"):
        FeatureStore(other, mode="a")
    with h5py.File(other, "r") as f:  # untouched
        assert list(f.keys()) == ["x"]


def test_a_large_item_is_compressed_and_equal_to_what_was_appended(tmp_path):
    """Items of COMPRESS_FROM bytes and more are gzip-compressed, written as they come."""
    from emofeat.itemfile import COMPRESS_FROM, ItemWriter
    from emofeat.media.grid import fixed_grid

    rng = np.random.default_rng(3)
    n, d = 3000, 64  # 768 KB of values, appended in blocks
    assert n * d * 4 >= COMPRESS_FROM
    data = np.round(rng.standard_normal((n, d)), 2).astype(np.float32)
    starts = np.arange(n) * 0.01
    writer = ItemWriter(tmp_path / "big.h5", "k", "x", [])
    for a in range(0, n, 700):
        writer.append(Rows("s", data[a : a + 700], starts[a : a + 700], starts[a : a + 700] + 0.01))
    writer.finalize(fixed_grid(n * 0.01, 100.0), {"extractor": "x"})
    with h5py.File(tmp_path / "big.h5", "r") as f:
        g = f["s"]
        for name in ("data", "times", "mask", "aligned/data", "aligned/mask", "aligned/row"):
            assert g[name].compression == "gzip", name
        np.testing.assert_array_equal(g["data"][:], data)
        np.testing.assert_array_equal(g["aligned/data"][:], data[g["aligned/row"][:]])
