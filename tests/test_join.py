"""The join by identity: tracks find their stored items whatever key the store gave them.

Real extraction through the CLI on a small synthetic Aff-Wild2-shaped set (8 videos of 3 s:
a two-person video, an irregular pair, .avi files in batch2); items are looked up through
:class:`emofeat_recipes.datasets.join.FeatureIndex` and checked against the files they came from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import as_store_format_1, run_cli

from emofeat.store import open_store
from emofeat_recipes.datasets.affwild2 import SPLITS, AffWild2
from emofeat_recipes.datasets.join import FeatureIndex, JoinError, face_subject

EGEMAPS = ["-p", "egemaps", "--set", "egemaps.functionals=false"]


def _extract(*args: str, store: Path, cache: Path) -> None:
    res = run_cli(
        "extract", "-q", "--threads", "1", *args, "-o", str(store),
        env={"EMOFEAT_CACHE_DIR": str(cache)}, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("join") / "aw2"
    res = run_cli("datasets", "synth", str(root), "--videos", "8", "--duration", "3", "-q")
    assert res.returncode == 0, res.stderr
    return root


def _tracks(ds: AffWild2) -> list:
    return [t for task in ds.tasks for s in SPLITS for t in ds.tracks(task, s)]


def test_root_extracted_at_once_joins_every_track(small, tmp_path):
    """The reported failure: the whole root in one run keys items batch1__video1, ..."""
    store = tmp_path / "f.h5"
    _extract(*EGEMAPS, "-p", "face_expr", str(small), store=store, cache=tmp_path / "models")
    keys = open_store(store).items()
    assert any("__" in k for k in keys), keys  # the store really did disambiguate keys
    ds = AffWild2(small)
    index = FeatureIndex([open_store(store)])
    tracks = _tracks(ds)
    assert len({t.name for t in tracks}) >= 9
    for t in tracks:
        voice = index.lookup(t, "egemaps", "lld", "audio")
        assert voice is not None, t.name
        assert voice.source == t.video.resolve() and voice.kind == "video"
        face = index.lookup(t, "face_expr", "embedding", "video")
        assert face is not None, t.name
        # the organisers' crops win over the raw video's face stage
        assert face.kind == "images" and face.source == t.crops.resolve(), t.name
        assert face.n_frames == int(ds.crop_frames(t)[-1])  # image 00001.jpg is row 0


def test_separate_runs_globs_and_two_stores(small, tmp_path):
    crops, videos = tmp_path / "crops.h5", tmp_path / "videos.h5"
    cache = tmp_path / "models"
    _extract("-p", "face_expr", str(small / "cropped_aligned" / "*"), store=crops, cache=cache)
    _extract(*EGEMAPS, str(small / "videos" / "batch*" / "*.mp4"), store=videos, cache=cache)
    _extract(*EGEMAPS, str(small / "videos" / "batch*" / "*.avi"), store=videos, cache=cache)
    ds = AffWild2(small)
    index = FeatureIndex([open_store(crops), open_store(videos)])
    for t in _tracks(ds):
        assert index.lookup(t, "face_expr", "embedding", "video").store.path == crops
        assert index.lookup(t, "egemaps", "lld", "audio").store.path == videos
        # a crop folder has no sound: the audio join never takes a face item
        assert index.lookup(t, "face_expr", "embedding", "audio") is None


def test_the_same_input_in_two_runs_is_not_ambiguous(small, tmp_path):
    store = tmp_path / "f.h5"
    cache = tmp_path / "models"
    _extract(*EGEMAPS, str(small / "videos"), store=store, cache=cache)  # keys: video1, ...
    # the whole root: the crop folders share the videos' stems, so keys become batch1__video1
    _extract(*EGEMAPS, str(small), store=store, cache=cache)
    assert len({k for k in open_store(store).items() if "video1" in k}) >= 2
    index = FeatureIndex([open_store(store)])
    ds = AffWild2(small)
    for t in _tracks(ds):
        item = index.lookup(t, "egemaps", "lld", "audio")
        assert item is not None and item.source == t.video.resolve()


def test_two_person_video_faces_by_subject(small, tmp_path):
    """Without crops, ``_left``/``_right`` take the raw video's face stage for their side."""
    ds = AffWild2(small)
    pair = next(t for t in ds.tracks("VA", "train") + ds.tracks("VA", "validation") if t.subject)
    video = pair.video
    cache = tmp_path / "models"
    stores = {}
    for side in ("left", "right", "largest"):
        stores[side] = tmp_path / f"{side}.h5"
        _extract(
            "-p", "face_expr", "--set", f"faces.subject={side}", str(video),
            store=stores[side], cache=cache,
        )  # fmt: skip
    both = FeatureIndex([open_store(stores["left"]), open_store(stores["right"])])
    for side in ("left", "right"):
        track = ds.track("VA", f"{pair.video_name}_{side}")
        # hide the crop folder: the raw video's face stage is all there is
        track.crops = None
        assert face_subject(track) == side
        item = both.lookup(track, "face_expr", "embedding", "video")
        assert item is not None and item.store.path == stores[side], side
        assert item.kind == "video" and item.source == video.resolve()
        # a face stage that tracked the largest face does not stand for one side
        largest = FeatureIndex([open_store(stores["largest"])])
        assert largest.lookup(track, "face_expr", "embedding", "video") is None


def test_two_sources_claiming_one_track_is_an_error_naming_both(small, tmp_path):
    ds = AffWild2(small)
    track = ds.tracks("VA", "train")[0]
    copies = []
    for name in ("copyA", "copyB"):
        (tmp_path / name).mkdir()
        copies.append(shutil.copy(track.video, tmp_path / name / track.video.name))
    store = tmp_path / "f.h5"
    _extract(*EGEMAPS, *map(str, copies), store=store, cache=tmp_path / "models")
    index = FeatureIndex([open_store(store)])
    with pytest.raises(JoinError) as err:
        index.lookup(track, "egemaps", "lld", "audio")
    msg = str(err.value)
    assert "copyA" in msg and "copyB" in msg and track.name in msg
    # the reader's own copy decides when it is among them
    _extract(*EGEMAPS, str(track.video), store=store, cache=tmp_path / "models")
    item = FeatureIndex([open_store(store)]).lookup(track, "egemaps", "lld", "audio")
    assert item.source == track.video.resolve()


def test_plan_extracts_only_what_the_stores_lack(small, tmp_path):
    """``recipe run --features STORE`` fills that store with exactly the missing items."""
    import logging

    from emofeat_recipes.plan import build_plan, run_plan

    ds = AffWild2(small)
    tracks = [t for s in SPLITS for t in ds.tracks("VA", s)]
    store = tmp_path / "f.h5"
    done = sorted({t.crops for t in tracks})[:2]
    _extract("-p", "face_expr", *map(str, done), store=store, cache=tmp_path / "models")
    inputs = {"video": ["face_expr.embedding"], "audio": ["egemaps.lld"]}
    extract = {
        "video": ["face_expr"],
        "audio": ["egemaps"],
        "settings": {"egemaps": {"functionals": False}, "functionals": {"win": 1.0}},
    }
    plan = build_plan(ds, FeatureIndex([open_store(store)]), tracks, inputs, extract, store)
    video, audio = plan.steps
    assert sorted(video.inputs) == sorted({t.crops for t in tracks} - set(done))
    assert video.crop_folders == len(video.inputs) and video.videos == 0
    assert sorted(audio.inputs) == sorted({t.video for t in tracks})
    assert audio.settings == {"egemaps": {"functionals": False}}  # only the step's extractors
    text = "\n".join(plan.describe())
    assert f"face_expr on {len(video.inputs)} crop folders" in text and "about" in text
    failures = run_plan(plan, logging.getLogger("test"), progress=False)
    assert failures == []
    index = FeatureIndex([open_store(store)])
    for t in tracks:
        assert index.lookup(t, "face_expr", "embedding", "video") is not None
        assert index.lookup(t, "egemaps", "lld", "audio") is not None
    assert build_plan(ds, index, tracks, inputs, extract, store).empty
    # an item aligned under an older rule is planned again
    import h5py

    item = index.lookup(tracks[0], "egemaps", "lld", "audio")
    path = item.store.item_path(item.key, "egemaps")
    as_store_format_1(store)  # what an older emofeat left
    with h5py.File(path, "a") as f:
        f.attrs["alignment"] = "nearest-centre-covering-v1"
    again = build_plan(ds, FeatureIndex([open_store(store)]), tracks, inputs, extract, store)
    assert tracks[0].name in again.stale and tracks[0].video in again.steps[1].inputs
    assert "older alignment rule" in "\n".join(again.describe())
    # other settings than the config asks for: planned again (the engine then redoes them)
    other = {**extract, "settings": {"egemaps": {"functionals": False, "win": 2.0}}}
    redo = build_plan(ds, FeatureIndex([open_store(store)]), tracks, inputs, other, store)
    assert sorted(redo.steps[1].inputs) == sorted({t.video for t in tracks})
    assert sum("egemaps (settings)" in v for v in redo.stale.values()) >= len(tracks) - 2
    assert redo.steps[0].inputs == []  # the faces were made as asked
