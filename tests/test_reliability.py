"""Reliability of the store under faults: a full disk, damaged item files, kills at every
step of a commit, readers during a run (the reader loop is in test_store_readers.py).

The disk-full tests mount small tmpfs file systems (root can; ``scripts/test.sh`` runs the
suite as root in CI). Kill tests set ``EMOFEAT_FAULT`` to a fault point of
:mod:`emofeat.faults`, which makes the writer SIGKILL itself exactly there.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import grow_tmpfs, run_cli

import emofeat
from emofeat import faults
from emofeat.samples import write_audio
from emofeat.store import FeatureStore

EXTRACT = ["extract", "-q", "-p", "egemaps", "-p", "functionals"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("reliability_inputs")
    return [write_audio(d / f"in{i}.wav", duration=3.0, f0=110 + 15 * i) for i in range(4)]


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory) -> Path:
    """The same run on a disk with room: what every recovered store must equal."""
    out = tmp_path_factory.mktemp("reliability_clean") / "feats.h5"
    res = run_cli(*EXTRACT, *map(str, inputs), "-o", str(out))
    assert res.returncode == 0, res.stderr
    return out


def _frames(store_path: Path) -> dict[tuple[str, str], pd.DataFrame]:
    """Every stream of every item, by (extractor, stream), with item-specific columns gone."""
    store = emofeat.open_store(store_path)
    out = {}
    for ex in sorted({e for k in store.items() for e in store.extractors(k)}):
        key0 = store.items()[0]
        for stream in store.streams(key0, ex):
            out[(ex, stream)] = store.to_frame(ex, stream, aligned=True).sort_index()
    return out


def assert_same_data(a: Path, b: Path) -> None:
    fa, fb = _frames(a), _frames(b)
    assert fa.keys() == fb.keys()
    for name in fa:
        pd.testing.assert_frame_equal(fa[name], fb[name], check_exact=True, obj=str(name))


def _store_bytes(store: Path) -> int:
    return store.stat().st_size + sum(
        p.stat().st_size for p in Path(f"{store}.d").rglob("*") if p.is_file()
    )


# each size runs out at a different step (the index, the journal, an item file, the
# checkpoint at the end): bytes, or a share of what the whole store takes (about 2 MB: its
# small items are written plain)
@pytest.mark.parametrize("size", [16 << 10, 48 << 10, 0.2, 0.5, 0.9])
def test_disk_full_stops_cleanly_keeps_commits_and_resumes(inputs, clean, tmpfs, size):
    if isinstance(size, float):
        size = (int(size * _store_bytes(clean)) // 4096 + 1) * 4096
    disk = tmpfs(size)
    out = disk / "feats.h5"
    args = [*EXTRACT, *map(str, inputs), "-o", str(out)]
    res = run_cli(*args)
    text = res.stdout + res.stderr
    assert res.returncode == 1, text  # not 139 (the segfault this replaced), not 0
    assert "Traceback" not in text
    assert "no space left on device" in text, text
    assert str(disk) in text  # the message names the file that could not be written
    if out.exists():
        committed = emofeat.open_store(out)  # opens; what it lists is intact
        verify = run_cli("verify", str(out))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        kept = {k: committed.item_attrs(k, "egemaps")["item_id"] for k in committed.items()}
    else:
        kept = {}
    grow_tmpfs(disk, 64 << 20)
    again = run_cli(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    store = emofeat.open_store(out)
    assert store.items() == sorted(f"in{i}" for i in range(4))
    for key, item_id in kept.items():  # committed before the disk filled: not redone
        assert store.item_attrs(key, "egemaps")["item_id"] == item_id
    assert_same_data(out, clean)
    assert not any((disk / "feats.h5.d" / ".staging").iterdir())


def test_damaged_items_are_found_by_verify_and_redone_by_a_rerun(inputs, clean, tmp_path):
    out = tmp_path / "feats.h5"
    args = [*EXTRACT, *map(str, inputs), "-o", str(out)]
    assert run_cli(*args).returncode == 0
    store = emofeat.open_store(out)
    ok = run_cli("verify", str(out))
    assert ok.returncode == 0 and "8 items" in ok.stdout and "all intact" in ok.stdout
    ids = {k: store.item_attrs(k, "egemaps")["item_id"] for k in store.items()}
    # one byte flipped in the middle of a data chunk (the cheap check does not read it),
    # one at the start (it does), one item file deleted
    middle = store.item_path("in0", "egemaps")
    raw = bytearray(middle.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    middle.write_bytes(bytes(raw))
    head = store.item_path("in1", "functionals")
    raw = bytearray(head.read_bytes())
    raw[100] ^= 0x01
    head.write_bytes(bytes(raw))
    store.item_path("in2", "egemaps").unlink()
    bad = run_cli("verify", "--json", str(out))
    assert bad.returncode == 1

    problems = {
        (p["key"], p["extractor"]): p["problem"] for p in json.loads(bad.stdout)["problems"]
    }
    assert problems.keys() == {("in0", "egemaps"), ("in1", "functionals"), ("in2", "egemaps")}
    assert "checksum mismatch" in problems[("in0", "egemaps")]
    assert "checksum mismatch" in problems[("in1", "functionals")]
    assert "missing" in problems[("in2", "egemaps")]
    table = run_cli("verify", str(out))
    assert "in1" in table.stdout and "functionals" in table.stdout and "3 damaged" in table.stdout
    # a plain rerun makes the cheap check: the flipped header and the missing file are redone
    cheap = run_cli(*args)
    assert cheap.returncode == 0, cheap.stderr
    store = emofeat.open_store(out)
    assert store.check_item("in1", "functionals") is None
    assert store.item_attrs("in2", "egemaps")["item_id"] != ids["in2"]
    assert store.item_attrs("in3", "egemaps")["item_id"] == ids["in3"]  # untouched: kept
    log = store.run_log()
    warned = log[(log["event"] == "input") & (log["key"] == "in1")].iloc[-1]["warnings"]
    assert any("functionals: the stored item was damaged" in w for w in warned)
    # ... the flipped data byte needs --verify (the whole file is hashed)
    assert run_cli("verify", str(out)).returncode == 1
    full = run_cli(*args, "--verify")
    assert full.returncode == 0, full.stderr
    assert emofeat.open_store(out).item_attrs("in0", "egemaps")["item_id"] != ids["in0"]
    assert run_cli("verify", str(out)).returncode == 0
    assert_same_data(out, clean)


# every step of a commit and of a checkpoint (the journal folded into the index), as the
# store declares them: a new point is tested without changing this file
COMMIT_POINTS = sorted(p for p in faults.POINTS if p.split(":")[0] in ("commit", "checkpoint"))
COMPACT_POINTS = sorted(p for p in faults.POINTS if p.startswith("compact:"))


def test_every_fault_point_has_a_kill_test():
    assert set(COMMIT_POINTS) | set(COMPACT_POINTS) == set(faults.POINTS)
    assert len(COMMIT_POINTS) >= 6 and len(COMPACT_POINTS) >= 4


@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_sigkill_at_each_commit_step(inputs, clean, tmp_path, point, monkeypatch):
    out = tmp_path / "feats.h5"
    args = [*EXTRACT, *map(str, inputs), "-o", str(out)]
    # the checkpoint points are reached at the end of the run (the journal is folded in
    # when the writer closes); the commit points at the first input
    killed = run_cli(*args, env={faults.ENV: point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
    store = emofeat.open_store(out)  # opens
    seen = {}
    for key in store.items():
        for ex in store.extractors(key):  # each listed item is wholly there
            assert store.check_item(key, ex, full=True) is None, (point, key, ex)
            for stream in store.streams(key, ex):
                sd = store.read(key, ex, stream, aligned=True)
                assert np.isfinite(sd.data[sd.mask]).all()
            seen[(key, ex)] = store.item_attrs(key, ex)["item_id"]
    if point.startswith("checkpoint"):
        assert len(seen) == 8  # every commit was in the journal: nothing lost
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    store = emofeat.open_store(out)
    for item, item_id in seen.items():
        assert store.item_attrs(*item)["item_id"] == item_id, (point, item)
    assert run_cli("verify", str(out)).returncode == 0
    assert_same_data(out, clean)
    assert not list((tmp_path / "feats.h5.d" / ".staging").iterdir())
    assert len(list((tmp_path / "feats.h5.d").glob("journal-*"))) == 1


def test_checkpoints_during_a_long_run_keep_readers_and_plain_h5py_consistent(
    inputs, tmp_path, monkeypatch
):
    """Many commits (JOURNAL_LIMIT lowered): the journal is folded in several times."""
    import h5py

    from emofeat import store as store_mod
    from emofeat.engine import RunOptions, run

    monkeypatch.setattr(store_mod, "JOURNAL_LIMIT", 3)
    out = tmp_path / "feats.h5"
    from emofeat.api import build_jobs

    jobs = build_jobs(["egemaps"], [])
    with FeatureStore(out, mode="a") as writer:
        reader = emofeat.open_store(out)
        for i, path in enumerate(inputs * 2):
            if i == len(inputs):
                jobs = build_jobs(["egemaps"], ["egemaps.hop=1.0"])  # redo: overwrites
            run(writer, [path], jobs, RunOptions())
            assert len(reader.items()) == min(i + 1, len(inputs))
        assert len(list((tmp_path / "feats.h5.d").glob("journal-*"))) == 1
    with h5py.File(out, "r") as f:  # after close every commit is in the plain index
        assert sorted(f["items"]) == [f"in{i}" for i in range(4)]
        assert f["items/in0/egemaps/lld/data"].shape[1] == 25
    hops = {json_hop(emofeat.open_store(out), k) for k in emofeat.open_store(out).items()}
    assert hops == {1.0}


def json_hop(store: FeatureStore, key: str) -> float:
    return float(store.item_attrs(key, "egemaps")["config"]["settings"]["hop"])


def test_disk_full_during_compaction_keeps_the_items_and_says_so(inputs, clean, tmpfs):
    """Room for the items but not for the shard that would merge them: the run succeeds,
    the items stay files of their own, a note says to compact later; then it can."""
    used = sum(p.stat().st_size for p in Path(f"{clean}.d").rglob("*") if p.is_file())
    # small items are written plain and compressed into the shard: leave less room than
    # the shard takes (a tenth to a half of the items)
    disk = tmpfs((int(used * 1.03) // 4096 + 1) * 4096 + 2 * clean.stat().st_size)
    out = disk / "feats.h5"
    res = run_cli(*EXTRACT, "--compact-at", "1", *map(str, inputs), "-o", str(out))
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    assert "compaction not done" in text and "no space left on device" in text, text
    assert "Traceback" not in text
    assert run_cli("verify", str(out)).returncode == 0
    assert not list((disk / "feats.h5.d").glob("shards/*.h5"))
    assert_same_data(out, clean)
    grow_tmpfs(disk, 64 << 20)
    again = run_cli("compact", str(out))
    assert again.returncode == 0 and "8 item files" in again.stdout, again.stdout + again.stderr
    assert_same_data(out, clean)
