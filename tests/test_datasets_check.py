"""``emofeat datasets check``: every planted mismatch is found and named; a clean tree passes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

from emofeat.samples import write_video
from emofeat_recipes.datasets.affwild2 import AffWild2


def _synth(root: Path, *extra: str) -> Path:
    res = run_cli("datasets", "synth", str(root), "--videos", "8", "--duration", "3", "-q", *extra)
    assert res.returncode == 0, res.stderr
    return root


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return _synth(tmp_path_factory.mktemp("check") / "aw2")


def _check(root: Path, *args: str) -> tuple[int, dict]:
    res = run_cli("datasets", "check", str(root), "--json", *args)
    return res.returncode, json.loads(res.stdout)


def test_a_clean_tree_passes_and_counts_every_track(clean):
    code, report = _check(clean)
    assert code == 0, report["summary"]
    ds = AffWild2(clean)
    tracks = {(t["task"], t["split"], t["name"]) for t in report["tracks"]}
    for task in ds.tasks:
        for split in ("train", "validation", "test"):
            assert {(task, split, t.name) for t in ds.tracks(task, split)} <= tracks
    for t in report["tracks"]:
        assert t["errors"] == []
        if t["video"]:
            # frames on the engine's grid, counted the way the engine builds it
            assert t["video_frames"] == ds.frame_count(Path(t["video"]).stem)
        if t["crops"]:
            assert t["crop_images"] == len(ds.crop_frames(t["name"])) > 0
    # the text form says so too
    res = run_cli("datasets", "check", str(clean))
    assert res.returncode == 0 and "no errors" in res.stderr


def test_nested_crops_are_found(tmp_path):
    root = _synth(tmp_path / "nested", "--crops-layout", "nested")
    assert (root / "cropped_aligned" / "cropped_aligned").is_dir()
    code, report = _check(root)
    assert code == 0, [t["errors"] for t in report["tracks"] if t["errors"]]
    assert all(t["crops"] and t["crop_images"] > 0 for t in report["tracks"])
    assert any("cropped_aligned_new_50_vids" in t["crops"] for t in report["tracks"])


def test_planted_mismatches_are_errors_that_name_the_track(clean, tmp_path):
    root = tmp_path / "aw2"
    shutil.copytree(clean, root)
    ds = AffWild2(root)
    va = ds.tracks("VA", "train") + ds.tracks("VA", "validation")
    single = [t for t in va if not t.subject and t.video is not None and t.crops is not None]
    short, gone, stale = single[0], single[1], single[2]
    # 1. a label file 10 lines shorter than its video
    lines = short.annotation.read_text().splitlines()
    short.annotation.write_text("\n".join(lines[:-10]) + "\n")
    # 2. a track whose video and crops are both missing
    shutil.rmtree(gone.crops)
    gone.video.unlink()
    # 3. a stored item made from another, shorter copy of a video
    other = tmp_path / "elsewhere" / stale.video.name
    other.parent.mkdir()
    write_video(other, duration=1.0, fps=30)
    store = tmp_path / "f.h5"
    res = run_cli("extract", "-q", "-p", "egemaps", "--set", "egemaps.functionals=false",
                  str(other), "-o", str(store))  # fmt: skip
    assert res.returncode == 0, res.stderr
    code, report = _check(root, "--features", str(store))
    assert code == 1
    by = {(t["task"], t["name"]): t for t in report["tracks"]}
    errs = " ".join(by[("VA", short.name)]["errors"])
    assert f"{len(lines) - 11} label lines for" in errs, errs
    assert "no raw video and no crop folder" in " ".join(by[("VA", gone.name)]["errors"])
    errs = " ".join(by[("VA", stale.name)]["errors"])
    assert "stored egemaps item" in errs and "30 frames" in errs, errs
    assert report["summary"]["errors"] >= 3
    # the text form names them and exits 1
    res = run_cli("datasets", "check", str(root), "--features", str(store))
    assert res.returncode == 1
    text = " ".join(res.stdout.split())
    for t in (short, gone, stale):
        assert t.name in text
