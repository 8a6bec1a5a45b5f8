"""Compaction: small item files merged into shard files, with a commit's guarantees.

Real extraction (openSMILE eGeMAPS and the functionals extractor on generated audio), the
real CLI, real SIGKILLs at every step of a compaction (``EMOFEAT_FAULT``).
"""

from __future__ import annotations

import json
import signal

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from test_reliability import COMPACT_POINTS

import emofeat
from emofeat.itemfile import export_item, item_attrs_of, open_item
from emofeat.samples import write_audio
from emofeat.store import FeatureStore

N = 8
EXTRACT = ["extract", "-q", "-p", "egemaps", "-p", "functionals", "--compact-at", "0"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("compaction_inputs")
    return [write_audio(d / f"u{i}.wav", duration=0.6 + 0.1 * i, f0=120 + 9 * i) for i in range(N)]


def _extract(inputs, out, *more):
    res = run_cli(*EXTRACT, *map(str, inputs), "-o", str(out), *more)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _content(store_path):
    """Every stream of every item (native and aligned) and every item's attributes."""
    store = emofeat.open_store(store_path)
    out = {}
    for key in store.items():
        for ex in store.extractors(key):
            out[(key, ex, "attrs")] = store.item_attrs(key, ex)
            for stream in store.streams(key, ex):
                for aligned in (False, True):
                    sd = store.read(key, ex, stream, aligned=aligned)
                    out[(key, ex, stream, aligned)] = (sd.data, sd.times, sd.mask, sd.labels)
    return out


def assert_same_content(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k[-1] == "attrs":
            assert a[k] == b[k], k
            continue
        for x, y in zip(a[k], b[k], strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(k))


def _files(store_path):
    d = store_path.with_name(store_path.name + ".d")
    return sorted(d.glob("items/*/*.h5")), sorted(d.glob("shards/*.h5"))


def test_compact_keeps_every_value_and_plain_h5py_access(inputs, tmp_path):
    out = tmp_path / "feats.h5"
    _extract(inputs, out)
    before = _content(out)
    frame = emofeat.open_store(out).to_frame("egemaps", "lld")
    loose, _ = _files(out)
    assert len(loose) == 2 * N
    loose_bytes = sum(p.stat().st_size for p in loose)
    reader = emofeat.open_store(out)  # a snapshot from before the compaction

    res = run_cli("compact", str(out))
    assert res.returncode == 0, res.stderr
    assert f"{2 * N} item files" in res.stdout and "1 shard(s)" in res.stdout
    loose, shards = _files(out)
    assert loose == [] and len(shards) == 1
    assert shards[0].stat().st_size < loose_bytes / 1.5  # smaller on disk
    assert_same_content(_content(out), before)
    pd.testing.assert_frame_equal(emofeat.open_store(out).to_frame("egemaps", "lld"), frame)
    # the old snapshot's files are gone: the reader reads the index again
    sd = reader.read("u3", "egemaps", "lld")
    np.testing.assert_array_equal(sd.data, before[("u3", "egemaps", "lld", False)][0])
    # plain h5py follows the index's external links into the shard
    with h5py.File(out, "r") as f:
        data = f["items/u2/egemaps/lld/data"][:]
        provenance = json.loads(f["items/u2/egemaps"].attrs["provenance"])
        assert provenance["extractor"] == "egemaps" and provenance["key"] == "u2"
        # no stored aligned view in a shard: aligned/row says which native row each frame has
        row = f["items/u2/egemaps/lld/aligned/row"][:]
        ok = row >= 0
        aligned = before[("u2", "egemaps", "lld", True)][0]
        np.testing.assert_array_equal(f["items/u2/egemaps/lld/data"][:][row[ok]], aligned[ok])
    np.testing.assert_array_equal(data, before[("u2", "egemaps", "lld", False)][0])
    # an item exported from the shard is an item file of its own again
    ref = emofeat.open_store(out).item_ref("u1", "functionals")
    assert isinstance(ref, tuple)
    copy = tmp_path / "one.h5"
    copy.write_bytes(export_item(ref))
    with open_item(copy) as g, open_item(ref) as h:
        assert sorted(g) == sorted(h)
        np.testing.assert_array_equal(g["frames/times"][:], h["frames/times"][:])
        # in the layout its provenance names (format 2: one JSON attribute and complete)
        assert set(g.attrs) == {"provenance", "complete"} and g.attrs["complete"]
        assert item_attrs_of(g) == item_attrs_of(h)
    assert run_cli("verify", str(out)).returncode == 0
    # a rerun finds everything unchanged (cheap check through the shard), --verify too
    for extra in ((), ("--verify",)):
        again = _extract(inputs, out, *extra)
        log = emofeat.open_store(out).run_log()
        assert set(log[log["event"] == "input"].tail(N)["status"]) == {"unchanged"}, again.stderr
    assert run_cli("compact", str(out)).stdout.strip().endswith("no small item files to compact")


def test_extract_compacts_when_due_and_redone_items_leave_the_shard(inputs, tmp_path):
    out = tmp_path / "feats.h5"
    res = run_cli(*EXTRACT[:-1], str(N), *map(str, inputs), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert f"compacted {2 * N} small item files" in res.stderr
    assert _files(out)[0] == [] and len(_files(out)[1]) == 1
    log = emofeat.open_store(out).run_log()
    assert log[log["event"] == "run-end"].iloc[-1]["compacted"] == 2 * N
    # a changed setting redoes egemaps: new item files replace the shard's groups
    _extract(inputs, out, "--set", "egemaps.hop=1.0")
    store = emofeat.open_store(out)
    assert isinstance(store.item_ref("u0", "egemaps"), type(store.item_path("u0", "egemaps")))
    assert store.item_attrs("u0", "egemaps")["config"]["settings"]["hop"] == 1.0
    # functionals is made from egemaps: redone too; the shard holds no live item now
    assert len(_files(out)[0]) == 2 * N
    with FeatureStore(out, mode="a") as w:
        assert w.compact().items == 2 * N
    loose, shards = _files(out)
    assert loose == [] and len(shards) == 1  # the old shard, no longer referenced, is gone
    assert run_cli("verify", str(out)).returncode == 0


def test_damaged_shard_names_its_items_and_a_verified_rerun_redoes_them(inputs, tmp_path):
    out = tmp_path / "feats.h5"
    _extract(inputs, out)
    clean = _content(out)
    assert run_cli("compact", str(out)).returncode == 0
    shard = _files(out)[1][0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    shard.write_bytes(bytes(raw))
    bad = run_cli("verify", str(out))
    assert bad.returncode == 1 and f"{2 * N} damaged" in bad.stdout
    assert "u5" in bad.stdout and "in shard" in bad.stdout
    _extract(inputs, out, "--verify")
    log = emofeat.open_store(out).run_log()
    last = log[log["event"] == "input"].tail(N)
    assert set(last["status"]) == {"done"}
    assert all(any("the stored item was damaged" in w for w in ws) for ws in last["warnings"])
    assert run_cli("verify", str(out)).returncode == 0
    after = _content(out)
    for k in clean:  # redone from the same inputs: the same values (new item ids)
        if k[-1] != "attrs":
            for x, y in zip(clean[k], after[k], strict=True):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(k))


@pytest.mark.parametrize("point", COMPACT_POINTS)
def test_sigkill_at_each_compaction_step(inputs, tmp_path, point):
    out = tmp_path / "feats.h5"
    _extract(inputs, out)
    before = _content(out)
    killed = run_cli("compact", str(out), env={"EMOFEAT_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_same_content(_content(out), before)  # opens, every item there and unchanged
    assert run_cli("verify", str(out)).returncode == 0
    again = run_cli("compact", str(out))  # finishes or redoes the compaction
    assert again.returncode == 0, again.stderr
    assert_same_content(_content(out), before)
    loose, shards = _files(out)
    assert loose == [] and len(shards) == 1  # no orphan shard, no moved file left behind
    assert run_cli("verify", str(out)).returncode == 0
    _extract(inputs, out)  # a rerun after it all: unchanged
    log = emofeat.open_store(out).run_log()
    assert set(log[log["event"] == "input"].tail(N)["status"]) == {"unchanged"}


def test_inspect_of_a_large_store_reads_only_the_summary_in_the_index(tmp_path):
    folder = tmp_path / "utterances"
    folder.mkdir()
    n = 45  # more than inspect lists one by one
    for i in range(n):
        write_audio(folder / f"s{i:02d}.wav", duration=0.3, f0=100 + 2 * i)
    (folder / "broken.wav").write_text("not audio")
    out = tmp_path / "feats.h5"
    res = run_cli(
        "extract", "-q", "-p", "egemaps", "--set", "egemaps.functionals=false", str(folder),
        "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 1  # the broken file
    full = run_cli("inspect", "--all", str(out))
    fast = run_cli("inspect", str(out))
    assert fast.returncode == 0 and full.returncode == 0, fast.stderr + full.stderr
    assert f"{n} inputs, {n} items, 1 runs" in fast.stdout
    assert f"{n} items: --all lists each one" in fast.stdout
    store = emofeat.open_store(out)
    rows = sum(len(store.read(k, "egemaps", "lld").data) for k in store.items())
    frames = sum(len(store.read(k, "egemaps", "lld", aligned=True).data) for k in store.items())
    line = next(x for x in fast.stdout.splitlines() if "lld" in x and "egemaps" in x)
    assert f"{n} │" in line and f"{rows} │" in line and f"{frames} │" in line
    assert line in full.stdout  # the same totals as from every item's catalog entry
    assert "broken.wav" in fast.stdout and "1 problem(s)" in fast.stdout
    assert full.stdout.count("s44") == 1  # --all lists each item
    # the summary alone: a catalog that cannot be parsed does not matter to it
    with h5py.File(out, "r+") as f:
        f["catalog"][:] = np.frombuffer(b"x" * f["catalog"].shape[0], np.uint8)
    again = run_cli("inspect", str(out))
    assert again.returncode == 0 and again.stdout == fast.stdout
    damaged = run_cli("inspect", "--all", str(out))  # reads the catalog: says it is damaged
    assert damaged.returncode == 2 and "the index is damaged" in damaged.stderr
    assert "Traceback" not in damaged.stderr


def test_compaction_leaves_damaged_or_missing_item_files_and_names_them(inputs, tmp_path):
    out = tmp_path / "feats.h5"
    _extract(inputs, out)
    store = emofeat.open_store(out)
    store.item_path("u1", "egemaps").unlink()
    head = store.item_path("u2", "functionals")
    raw = bytearray(head.read_bytes())
    raw[50] ^= 0x08  # the first 32 KiB: the check before copying reads them
    head.write_bytes(bytes(raw))
    res = run_cli("compact", str(out))
    assert res.returncode == 0, res.stderr
    assert f"{2 * N - 2} item files" in res.stdout
    assert "left out: u1 x egemaps: file missing" in res.stderr
    assert "left out: u2 x functionals: checksum mismatch" in res.stderr
    bad = run_cli("verify", "--json", str(out))
    found = {(p["key"], p["extractor"]) for p in json.loads(bad.stdout)["problems"]}
    assert found == {("u1", "egemaps"), ("u2", "functionals")}
    _extract(inputs, out)  # redoes them (u1's functionals too: made from its egemaps)
    assert run_cli("verify", str(out)).returncode == 0
    again = run_cli("compact", str(out))
    assert again.returncode == 0 and "left out" not in again.stderr, again.stderr
