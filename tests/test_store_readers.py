"""Readers during writes: ``emofeat.open_store`` while a real run writes sees a consistent
snapshot (only committed items, each complete and readable), and so does plain h5py."""

from __future__ import annotations

import json
import os
import subprocess
import time
import traceback
from pathlib import Path

import h5py
import pytest
from conftest import emofeat_cmd

import emofeat
from emofeat.errors import StoreError
from emofeat.samples import speech_like, write_audio
from emofeat.store import FeatureStore

N_INPUTS = 40
LLD_DIMS = 25  # eGeMAPS low-level descriptors
DEADLINE_S = 90.0


def _check_store(s: FeatureStore, seen: set[str]) -> list[str]:
    """Every item ``s`` lists reads completely; committed inputs never disappear.

    Raises AssertionError (or the reader's own exception) on anything inconsistent.
    """
    keys = s.items()
    lost = seen - set(keys)
    assert not lost, f"committed inputs disappeared from a later snapshot: {sorted(lost)[:5]}"
    for key in keys:
        exs = s.extractors(key)
        assert exs == ["egemaps"], f"{key}: extractors {exs}"
        for ex in exs:
            sd = s.read(key, ex, "lld")
            assert sd.data.ndim == 2 and sd.data.shape[1] == LLD_DIMS, (key, sd.data.shape)
            assert sd.data.shape[0] > 0, f"{key} x {ex}: no rows"
            assert len(sd.labels) == LLD_DIMS and len(sd.times) == len(sd.data)
            attrs = s.item_attrs(key, ex)
            assert attrs is not None, f"{key} x {ex}: listed, but item_attrs() is None"
            assert attrs.get("complete") is True or attrs.get("complete") == 1, attrs
            assert attrs.get("key") == key and attrs.get("extractor") == ex, attrs
            for name in ("item_id", "config_hash", "created", "alignment"):
                assert attrs.get(name), f"{key} x {ex}: attribute {name!r} missing or empty"
            assert (attrs.get("source") or {}).get("path"), f"{key}: no source path"
            assert (attrs.get("media") or {}).get("kind") == "audio", attrs.get("media")
            assert (attrs.get("config") or {}).get("settings", {}).get("functionals") is False
    catalog = s.catalog()
    listed = {(c.key, c.extractor) for c in catalog}
    missing = {(k, "egemaps") for k in keys} - listed
    assert not missing, f"items listed by items() but left out of catalog(): {sorted(missing)}"
    for c in catalog:
        assert c.streams == ("lld",) and c.n_frames > 0, (c.key, c.streams, c.n_frames)
    return keys


def _check_snapshot(out: Path, seen: set[str], live: FeatureStore | None) -> tuple[int, int]:
    """One reader pass: a fresh ``open_store``, the long-lived reader ``live`` (which must
    follow the writer), plain h5py. Returns (inputs listed by open_store, by h5py)."""
    keys = _check_store(emofeat.open_store(out), seen)
    if live is not None:
        _check_store(live, seen)
    with h5py.File(out, "r") as f:  # plain h5py: the external links resolve
        group = f["items"]
        names = list(group.keys())
        for name in names:
            for ex in group[name].keys():
                item = group[name][ex]
                # provenance is one JSON attribute (of the item file, or of its group in a
                # shard); an item file also has ``complete`` beside it
                attrs = dict(item.attrs)
                attrs = {**json.loads(attrs.pop("provenance")), **attrs}
                assert bool(attrs["complete"]), f"h5py: {name}/{ex} incomplete"
                shape = item["lld/data"].shape
                assert shape[0] > 0 and shape[1] == LLD_DIMS, f"h5py: {name}/{ex} {shape}"
    seen.update(keys)
    return len(keys), len(names)


@pytest.mark.parametrize(
    "compact_at",
    [0, N_INPUTS // 2],
    ids=["no-compaction", "compaction-at-end"],
)
def test_readers_see_a_consistent_snapshot_while_a_run_writes(tmp_path, compact_at):
    """A reader loop during a real ``emofeat extract`` run; with ``compaction-at-end`` the
    run merges its item files into a shard at the end while the readers keep reading."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i in range(N_INPUTS):
        seconds = 0.3 + 0.1 * (i % 3)
        signal = speech_like(seconds, 16000, f0=100.0 + 3 * i, seed=i)
        write_audio(folder / f"utt{i:03d}.wav", duration=seconds, signal=signal)
    out = tmp_path / "feats.h5"
    args = ["extract", "-q", "-p", "egemaps", "--set", "egemaps.functionals=false"]
    args += ["--threads", "1", "--compact-at", str(compact_at), "-o", str(out), str(folder)]
    log_out, log_err = (tmp_path / "stdout.txt").open("w"), (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [*emofeat_cmd(), *args],
        stdout=log_out,
        stderr=log_err,
        env={**os.environ, "COLUMNS": "200"},
    )
    seen: set[str] = set()
    counts: list[int] = []
    h5py_counts: list[int] = []
    passes = 0
    existed = False
    live: FeatureStore | None = None  # opened once, read on every pass
    deadline = time.monotonic() + DEADLINE_S
    try:
        while True:
            running = proc.poll() is None
            try:
                n, n_h5py = _check_snapshot(out, seen, live)
            except StoreError as exc:
                if not existed and "no such store" in str(exc):
                    assert running or out.exists(), "the run ended without creating the store"
                    assert time.monotonic() < deadline, "the store did not appear in time"
                    time.sleep(0.005)
                    continue
                raise AssertionError(f"reader pass {passes}: {traceback.format_exc()}") from exc
            except Exception as exc:  # any reader failure is a failure, with the message
                raise AssertionError(
                    f"reader pass {passes} ({len(seen)} inputs seen so far): "
                    f"{traceback.format_exc()}"
                ) from exc
            existed = True
            if live is None:
                live = emofeat.open_store(out)
            passes += 1
            counts.append(n)
            h5py_counts.append(n_h5py)
            if not running:  # one full pass after the run ended
                break
            assert time.monotonic() < deadline, "the run took too long"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log_out.close()
        log_err.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    assert counts[-1] == N_INPUTS and h5py_counts[-1] == N_INPUTS, (counts[-1], h5py_counts[-1])
    assert counts == sorted(counts), f"item counts went down between snapshots: {counts}"
    assert live is not None and len(live.items()) == N_INPUTS, "the long-lived reader is stale"
    mid_run = sorted({c for c in counts if 0 < c < N_INPUTS})
    assert len(set(counts)) > 1 and mid_run, (
        f"the reader saw no snapshot during the run ({passes} passes, counts {sorted(set(counts))})"
    )
    if compact_at:
        with h5py.File(out, "r") as f:  # the run did merge its items (else this tests nothing new)
            link = f["items"]["utt000"].get("egemaps", getlink=True)
            assert "shard" in link.filename, link.filename
    print(f"{passes} reader passes, {len(set(counts))} distinct item counts: {sorted(set(counts))}")
