"""The Aff-Wild2 reader on hand-built trees in every layout variant users have
(docs/affwild2.md)."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from emofeat.samples import write_image_sequence, write_video
from emofeat_recipes.datasets.affwild2 import (
    EXPR_LABELS,
    AffWild2,
    AnnotationError,
    DatasetError,
    DatasetWarning,
    Track,
    read_expr,
    read_template,
    read_va,
)

EXPR_HEADER = ",".join(EXPR_LABELS)


def write_va(path: Path, rows, header: str = "valence,arousal") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{v},{a}\n" for v, a in rows))
    return path


def write_expr(path: Path, classes, header: str = EXPR_HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{k}\n" for k in classes))
    return path


def va_rows(n: int) -> list[tuple[float, float]]:
    return [(round(np.sin(i / 5) * 0.9, 3), round(np.cos(i / 7) * 0.5, 3)) for i in range(n)]


def build_tree(
    root: Path,
    prefix: str = "6th_ABAW_Annotations",
    expr_folder: str = "EXPR_Recognition_Challenge",
) -> Path:
    """Annotations for 2 VA train, 1 VA validation, 1 EXPR train, 1 EXPR validation track."""
    ann = root / prefix
    va = ann / "VA_Estimation_Challenge"
    write_va(va / "Train_Set" / "video5_left.txt", va_rows(10))
    write_va(va / "Train_Set" / "video5_right.txt", va_rows(12))
    write_va(va / "Validation_Set" / "10-60-1280x720.txt", va_rows(8))
    ex = ann / expr_folder
    write_expr(ex / "Train_Set" / "video2.txt", [0, 1, 2, 7])
    write_expr(ex / "Validation_Set" / "video2_left.txt", [4, 4, -1])
    return root


@pytest.mark.parametrize(
    "prefix",
    ["6th_ABAW_Annotations", "6th ABAW Annotations", "ABAW Annotations", "8th_ABAW_Annotations"],
)
@pytest.mark.parametrize(
    "expr_folder", ["EXPR_Recognition_Challenge", "EXPR_Classification_Challenge"]
)
def test_annotation_root_variants(tmp_path, prefix, expr_folder):
    ds = AffWild2(build_tree(tmp_path, prefix, expr_folder))
    assert ds.tasks == ["VA", "EXPR"]
    assert [t.name for t in ds.tracks("VA", "train")] == ["video5_left", "video5_right"]
    assert [t.name for t in ds.tracks("va", "val")] == ["10-60-1280x720"]
    assert [t.name for t in ds.tracks("EXPR", "train")] == ["video2"]
    assert ds.annotation_dir("EXPR").name == expr_folder
    assert ds.annotation_dir("VA").parent.name == prefix
    assert ds.splits == {
        "VA": {"train": 2, "validation": 1, "test": 0},
        "EXPR": {"train": 1, "validation": 1, "test": 0},
    }
    t = ds.tracks("VA", "train")[0]
    assert (t.task, t.split, t.subject, t.video_name) == ("VA", "train", "left", "video5")
    assert t.annotation == tmp_path / prefix / "VA_Estimation_Challenge/Train_Set/video5_left.txt"


def test_nested_root_and_annotation_root_itself(tmp_path):
    build_tree(tmp_path / "data" / "Aff-Wild2")
    assert len(AffWild2(tmp_path).tracks("VA", "train")) == 2
    # pointing straight at the annotation folder works as well
    ann = AffWild2(tmp_path / "data" / "Aff-Wild2" / "6th_ABAW_Annotations")
    assert len(ann.tracks("EXPR", "validation")) == 1


def test_no_annotations_is_a_clear_error(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "video1.mp4").write_bytes(b"")
    with pytest.raises(DatasetError, match="no Aff-Wild2 annotations found") as err:
        AffWild2(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(DatasetError, match="not a folder"):
        AffWild2(tmp_path / "missing")


def test_newest_release_wins_and_is_reported(tmp_path):
    build_tree(tmp_path, "5th_ABAW_Annotations", "EXPR_Classification_Challenge")
    write_va(tmp_path / "6th_ABAW_Annotations/VA_Estimation_Challenge/Train_Set/new.txt", [(0, 0)])
    ds = AffWild2(tmp_path)
    assert [t.name for t in ds.tracks("VA", "train")] == ["new"]
    assert any("several annotation folders" in w for w in ds.warnings)
    # EXPR exists only in the 5th release: still found
    assert [t.name for t in ds.tracks("EXPR", "train")] == ["video2"]


def test_unknown_task_and_split(tmp_path):
    ds = AffWild2(build_tree(tmp_path))
    with pytest.raises(DatasetError, match="unknown task 'AU'"):
        ds.tracks("AU", "train")
    with pytest.raises(DatasetError, match="unknown split 'holdout'"):
        ds.tracks("VA", "holdout")


def test_videos_pairs_and_batches(tmp_path):
    build_tree(tmp_path)
    ex = tmp_path / "6th_ABAW_Annotations/EXPR_Recognition_Challenge/Train_Set"
    write_expr(ex / "video59.txt", [0])
    write_expr(ex / "video59_right.txt", [0])
    va = tmp_path / "6th_ABAW_Annotations/VA_Estimation_Challenge/Train_Set"
    write_va(va / "10-60-1280x720_right.txt", [(0, 0)])
    for rel in ("batch1/video5.mp4", "batch2/video2.avi", "batch1/10-60-1280x720.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "raw_videos").mkdir()
    (tmp_path / "raw_videos" / "video59.mp4").write_bytes(b"")
    ds = AffWild2(tmp_path)
    assert ds.video_for("video5_left") == tmp_path / "batch1/video5.mp4"
    assert ds.video_for("video5_right") == tmp_path / "batch1/video5.mp4"
    # the three irregular pairs: an unsuffixed track plus one suffixed track share a file
    assert ds.video_for("video2") == ds.video_for("video2_left") == tmp_path / "batch2/video2.avi"
    assert ds.video_for("video59") == ds.video_for("video59_right")
    assert ds.video_for("10-60-1280x720") == ds.video_for("10-60-1280x720_right")
    assert ds.video_for("video7") is None
    assert ds.video_for("video7_left") is None
    by_name = {t.name: t for t in ds.tracks("EXPR", "train")}
    assert by_name["video59"].subject == "" and by_name["video59_right"].subject == "right"
    assert by_name["video59_right"].video_name == "video59"
    assert by_name["video59_right"].video == tmp_path / "raw_videos/video59.mp4"


def test_fps_and_frame_count_from_the_container(tmp_path):
    build_tree(tmp_path)
    (tmp_path / "batch1").mkdir()
    (tmp_path / "batch2").mkdir()
    write_video(
        tmp_path / "batch1/video5.mp4", duration=1.0, fps=Fraction(30000, 1001), size=(64, 48)
    )
    write_video(
        tmp_path / "batch2/10-60-1280x720.avi", duration=2.0, fps=7, size=(64, 48), codec="mpeg4"
    )
    ds = AffWild2(tmp_path)
    left, right = ds.tracks("VA", "train")
    assert ds.fps(left) == pytest.approx(30000 / 1001, abs=1e-3)
    assert ds.fps(right) == pytest.approx(29.97, abs=1e-2)
    assert ds.frame_count(left) == 30  # round(1.0 s * 29.97)
    odd = ds.tracks("VA", "validation")[0]
    # the 60 in the name is not the frame rate: the container says 7
    assert ds.fps(odd) == pytest.approx(7.0)
    assert ds.frame_count(odd) == 14
    assert ds.fps("video5_right") == ds.fps(left)
    no_video = ds.tracks("EXPR", "train")[0]
    assert ds.frame_count(no_video) is None
    assert ds.fps(no_video, default=30.0) == 30.0
    with pytest.raises(DatasetError, match="'video2': no video found"):
        ds.fps(no_video)


def test_crops_with_gaps_and_the_extra_crop_folder(tmp_path):
    build_tree(tmp_path)
    write_image_sequence(
        tmp_path / "cropped_aligned/video5_left", n_frames=10, size=(16, 16), missing=(3, 4, 9)
    )
    write_image_sequence(
        tmp_path / "cropped_aligned_new_50_vids/video5_right", n_frames=5, size=(16, 16)
    )
    ds = AffWild2(tmp_path)
    left, right = ds.tracks("VA", "train")
    assert left.crops == tmp_path / "cropped_aligned/video5_left"
    assert right.crops == tmp_path / "cropped_aligned_new_50_vids/video5_right"
    np.testing.assert_array_equal(ds.crop_frames(left), [1, 2, 5, 6, 7, 8, 10])
    np.testing.assert_array_equal(ds.crop_frames("video5_right"), [1, 2, 3, 4, 5])
    assert ds.crop_frames("10-60-1280x720").size == 0
    summary = ds.summary()
    assert summary["crop_tracks"] == 2
    assert summary["tracks_without_crops"]["VA/validation"] == ["10-60-1280x720"]
    assert summary["tracks_without_video"]["VA/train"] == ["video5_left", "video5_right"]


def test_invalid_markers_become_masks(tmp_path):
    va = read_va(write_va(tmp_path / "a.txt", [(0.5, -0.25), (-5, -5), (0.1, -5), (-1, 1)]))
    assert va.values.dtype == np.float32 and va.values.shape == (4, 2)
    np.testing.assert_array_equal(va.valid, [True, False, False, True])
    np.testing.assert_allclose(va.values[0], [0.5, -0.25])
    ex = read_expr(write_expr(tmp_path / "e.txt", [0, -1, 7, 3]))
    assert ex.values.dtype == np.int64
    np.testing.assert_array_equal(ex.values, [0, -1, 7, 3])
    np.testing.assert_array_equal(ex.valid, [True, False, True, True])
    assert ex.path == tmp_path / "e.txt"


def test_bom_crlf_and_trailing_blank_lines(tmp_path):
    p = tmp_path / "win.txt"
    p.write_bytes(b"\xef\xbb\xbfvalence,arousal\r\n0.2,0.3\r\n-0.4,0.1\r\n\r\n")
    labels = read_va(p)
    np.testing.assert_allclose(labels.values, [[0.2, 0.3], [-0.4, 0.1]], rtol=1e-6)


@pytest.mark.parametrize(
    ("reader", "content", "line", "problem"),
    [
        (read_va, "", 1, "empty file"),
        (read_va, "valence;arousal\n0.1;0.2\n", 1, "wrong header"),
        (read_va, "arousal,valence\n0.1,0.2\n", 1, "wrong header"),
        (read_va, "valence,arousal\n", 2, "no label lines"),
        (read_va, "valence,arousal\n0.1,0.2\n0.3,abc\n", 3, "arousal is not a number: 'abc'"),
        (read_va, "valence,arousal\n0.1,0.2\n0.3,0.2\n1.5,0\n", 4, "valence 1.5 outside [-1, 1]"),
        (read_va, "valence,arousal\n-4,0\n", 2, "outside [-1, 1]"),
        (read_va, "valence,arousal\n0.1,0.2,0.3\n", 2, "expected 2 values"),
        (read_va, "valence,arousal\n0.1,0.2\n\n0.1,0.2\n", 3, "expected 2 values"),
        (read_va, "valence,arousal\nnan,0.2\n", 2, "outside [-1, 1]"),
        (read_expr, "Neutral,Anger\n0\n", 1, "wrong header"),
        (read_expr, EXPR_HEADER + "\n0\n8\n", 3, "class 8 outside 0..7"),
        (read_expr, EXPR_HEADER + "\n-2\n", 2, "outside 0..7"),
        (read_expr, EXPR_HEADER + "\n2.5\n", 2, "must be an integer"),
        (read_expr, EXPR_HEADER + "\nhappy\n", 2, "not a number: 'happy'"),
        (read_expr, EXPR_HEADER + "\n1,2\n", 2, "expected 1 value"),
        (read_expr, "\n\n", 1, "empty file"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, reader, content, line, problem):
    p = tmp_path / "video12_left.txt"
    p.write_text(content)
    with pytest.raises(AnnotationError) as err:
        reader(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}, line {line}: "), msg
    assert problem in msg
    assert err.value.line == line and err.value.path == p
    assert isinstance(err.value, ValueError)


def test_labels_through_the_dataset(tmp_path):
    ds = AffWild2(build_tree(tmp_path))
    t = ds.tracks("EXPR", "validation")[0]
    labels = ds.labels(t)
    np.testing.assert_array_equal(labels.values, [4, 4, -1])
    with pytest.raises(DatasetError, match="has no labels"):
        ds.labels(Track("x", "VA", "test"))
    assert ds.track("VA", "10-60-1280x720").split == "validation"


def test_aligned_labels_off_by_one_or_two_and_larger(tmp_path):
    ds = AffWild2(build_tree(tmp_path))
    t = ds.tracks("VA", "train")[0]  # 10 label lines
    raw = ds.labels(t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a difference of 1-2 frames is normal: no warning
        shorter = ds.aligned_labels(t, 9)
        longer = ds.aligned_labels(t, 12)
    np.testing.assert_array_equal(shorter.values, raw.values[:9])
    assert longer.values.shape == (12, 2)
    np.testing.assert_array_equal(longer.values[10:], np.repeat(raw.values[-1:], 2, axis=0))
    np.testing.assert_array_equal(longer.valid, np.r_[raw.valid, raw.valid[-1], raw.valid[-1]])
    with pytest.warns(DatasetWarning, match="10 label lines for 20 video frames"):
        assert len(ds.aligned_labels(t, 20)) == 20
    with pytest.warns(DatasetWarning, match="truncated"):
        assert len(ds.aligned_labels(t, 5)) == 5
    e = ds.tracks("EXPR", "validation")[0]  # [4, 4, -1]: the invalid last frame stays invalid
    np.testing.assert_array_equal(ds.aligned_labels(e, 4).valid, [True, True, False, False])


def test_test_set_from_a_template(tmp_path):
    build_tree(tmp_path)
    tmpl = tmp_path / "test_set" / "CVPR_6th_ABAW_VA_test_set_sample.txt"
    tmpl.parent.mkdir()
    rows = [f"videoB/{k:05d}.jpg,0,0" for k in (1, 2, 3)] + ["videoA_left/00001.jpg,0,0"]
    tmpl.write_text("image_location,valence,arousal\n" + "\n".join(rows) + "\n")
    ds = AffWild2(tmp_path)
    assert ds.template("VA") == tmpl
    assert ds.template("EXPR") is None
    assert [t.name for t in ds.test_tracks("VA")] == ["videoA_left", "videoB"]
    assert [t.name for t in ds.tracks("VA", "test")] == ["videoA_left", "videoB"]
    assert ds.test_rows("VA") == [("videoB", 1), ("videoB", 2), ("videoB", 3), ("videoA_left", 1)]
    assert ds.test_tracks("VA")[0].split == "test"
    assert ds.test_tracks("VA")[0].annotation is None
    header, got = read_template(tmpl)
    assert header == ["image_location", "valence", "arousal"] and len(got) == 4


def test_test_set_from_a_plain_list(tmp_path):
    build_tree(tmp_path)
    lst = tmp_path / "Expression_Recognition_Challenge_test_set_release.txt"
    lst.write_text("videoT\nvideoU_right\n\n")
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos/videoT.mp4", duration=0.5, fps=10, size=(32, 32), audio=False)
    write_image_sequence(tmp_path / "cropped_aligned/videoU_right", n_frames=4, size=(16, 16))
    ds = AffWild2(tmp_path)
    assert ds.test_list("EXPR") == lst and ds.template("EXPR") is None
    assert [t.name for t in ds.test_tracks("EXPR")] == ["videoT", "videoU_right"]
    rows = ds.test_rows("EXPR")
    # videoT: 5 frames from the container; videoU_right has no video: its highest crop number
    assert rows == [("videoT", k) for k in range(1, 6)] + [("videoU_right", k) for k in range(1, 5)]
    assert ds.summary()["test_sources"]["EXPR"] == [{"path": str(lst), "kind": "list"}]
    with pytest.raises(DatasetError, match="no VA test-set list or template"):
        ds.test_rows("VA")


def test_test_list_without_frames_is_an_error(tmp_path):
    build_tree(tmp_path)
    (tmp_path / "VA_test_set_release.txt").write_text("ghost\n")
    with pytest.raises(DatasetError, match="test track\\(s\\) ghost"):
        AffWild2(tmp_path).test_rows("VA")


def test_malformed_template_names_line(tmp_path):
    p = tmp_path / "va_test_template.txt"
    p.write_text("image_location,valence,arousal\nv1/00001.jpg,0,0\nv1-00002.jpg,0,0\n")
    with pytest.raises(AnnotationError, match=r"line 3: image_location 'v1-00002.jpg'"):
        read_template(p)
    p.write_text("valence,arousal\n0,0\n")
    with pytest.raises(AnnotationError, match=r"line 1: not a submission template"):
        read_template(p)


def test_reads_the_synthetic_generator_tree(tmp_path):
    from emofeat_recipes.datasets.synth import generate

    generate(tmp_path / "synth", videos=4, duration=3.0, seed=3)
    ds = AffWild2(tmp_path / "synth")
    assert ds.warnings == []
    for task in ("VA", "EXPR"):
        tracks = ds.tracks(task, "train") + ds.tracks(task, "validation")
        assert tracks
        for t in tracks:
            assert t.video is not None and t.crops is not None
            n = ds.frame_count(t)
            assert n and 5 <= ds.fps(t) <= 30
            assert len(ds.aligned_labels(t, n)) == n
            assert 0 < len(ds.crop_frames(t)) <= n
        rows = ds.test_rows(task)
        names = [t.name for t in ds.test_tracks(task)]
        assert sorted({r[0] for r in rows}) == names


# -- crop layouts ----------------------------------------------------------------------------


def crops(folder: Path, n: int = 4, missing=()) -> Path:
    return write_image_sequence(folder, n_frames=n, size=(16, 16), missing=missing)


def test_nested_abaw6_crops_with_a_duplicate_track(tmp_path):
    """ROOT/cropped_aligned/{cropped_aligned,cropped_aligned_new_50_vids}/<track> as ABAW6
    unpacks; a track in both folders: the first (cropped_aligned proper) wins, reported."""
    build_tree(tmp_path)
    outer = tmp_path / "cropped_aligned"
    # no 00001.jpg: found by peeking at the folder's entries
    crops(outer / "cropped_aligned" / "video5_left", n=6, missing=(1, 2))
    crops(outer / "cropped_aligned_new_50_vids" / "video5_right", n=5)
    crops(outer / "cropped_aligned_new_50_vids" / "video5_left", n=3)  # duplicate
    crops(tmp_path / "cropped" / "10-60-1280x720")  # unaligned crops: never used
    crops(outer / "cropped" / "video2")  # unaligned, even inside a crop root
    ds = AffWild2(tmp_path)
    left, right = ds.tracks("VA", "train")
    assert left.crops == outer / "cropped_aligned" / "video5_left"
    assert right.crops == outer / "cropped_aligned_new_50_vids" / "video5_right"
    np.testing.assert_array_equal(ds.crop_frames(left), [3, 4, 5, 6])
    assert ds.crop_frames("10-60-1280x720").size == 0
    assert ds.crop_frames("video2").size == 0
    assert set(ds.crop_dirs) == {"video5_left", "video5_right"}
    # the real crop roots, in precedence order (not the outer cropped_aligned)
    assert ds.crop_roots == [outer / "cropped_aligned", outer / "cropped_aligned_new_50_vids"]
    dup = [w for w in ds.warnings if "video5_left" in w]
    assert len(dup) == 1 and len(ds.warnings) == 1
    assert str(outer / "cropped_aligned" / "video5_left") in dup[0]
    assert str(outer / "cropped_aligned_new_50_vids" / "video5_left") in dup[0]
    summary = ds.summary()
    assert summary["crop_folders"] == [str(p) for p in ds.crop_roots]
    # track folders each root holds (the duplicate included)
    assert list(summary["crop_folder_tracks"].values()) == [1, 2]
    assert summary["crop_tracks"] == 2
    assert summary["tracks_without_crops"] == {
        "VA/validation": ["10-60-1280x720"],
        "EXPR/train": ["video2"],
        "EXPR/validation": ["video2_left"],
    }


def test_batch_folder_crops(tmp_path):
    build_tree(tmp_path)
    crops(tmp_path / "batch1" / "cropped_aligned" / "video5_left")
    crops(tmp_path / "batch2" / "cropped_aligned_new_50_vids" / "video5_right")
    crops(tmp_path / "batch2" / "cropped" / "10-60-1280x720")  # unaligned: ignored
    ds = AffWild2(tmp_path)
    assert ds.crop_dirs == {
        "video5_left": tmp_path / "batch1/cropped_aligned/video5_left",
        "video5_right": tmp_path / "batch2/cropped_aligned_new_50_vids/video5_right",
    }
    assert ds.crop_roots == [
        tmp_path / "batch1/cropped_aligned",
        tmp_path / "batch2/cropped_aligned_new_50_vids",
    ]
    assert ds.tracks("VA", "validation")[0].crops is None
    assert ds.warnings == []


def test_crop_root_precedence(tmp_path):
    """cropped_aligned proper before the extra folders, then shallower before deeper."""
    build_tree(tmp_path)
    flat = crops(tmp_path / "cropped_aligned" / "video5_left")
    crops(tmp_path / "copy" / "cropped_aligned" / "cropped_aligned" / "video5_left")
    extra = crops(tmp_path / "cropped_aligned_new_50_vids" / "video2")
    deep = crops(tmp_path / "copy" / "cropped_aligned" / "cropped_aligned" / "video2")
    # a folder of track folders inside a crop root is another crop root
    grouped = crops(tmp_path / "cropped_aligned" / "group" / "video5_right")
    ds = AffWild2(tmp_path)
    assert ds.crop_dirs["video5_left"] == flat
    assert ds.crop_dirs["video2"] == deep  # proper (deeper) before an extra folder
    assert ds.crop_dirs["video5_right"] == grouped
    assert ds.crop_roots == [
        tmp_path / "cropped_aligned",
        tmp_path / "cropped_aligned" / "group",
        tmp_path / "copy" / "cropped_aligned" / "cropped_aligned",
        tmp_path / "cropped_aligned_new_50_vids",
    ]
    assert any(str(extra) in w and str(deep) in w for w in ds.warnings)
    assert len(ds.warnings) == 2


def test_many_duplicates_are_reported_once(tmp_path):
    build_tree(tmp_path)
    for k in range(12):
        (tmp_path / "cropped_aligned" / "cropped_aligned" / f"t{k:02d}").mkdir(parents=True)
        (tmp_path / "cropped_aligned_new_50_vids" / f"t{k:02d}").mkdir(parents=True)
    ds = AffWild2(tmp_path)
    assert len(ds.crop_dirs) == 12  # empty track folders are tracks without crop images
    assert ds.crop_frames("t00").size == 0
    assert len(ds.warnings) == 1
    assert "12 tracks" in ds.warnings[0]
    assert str(tmp_path / "cropped_aligned" / "cropped_aligned") in ds.warnings[0]
    assert str(tmp_path / "cropped_aligned_new_50_vids") in ds.warnings[0]


def test_nested_layout_of_the_generator(tmp_path):
    import json

    from emofeat_recipes.datasets.synth import generate

    root = tmp_path / "synth"
    generate(root, videos=5, duration=3.0, seed=4, crops_layout="nested", workers=1)
    meta = json.loads((root / "synth.json").read_text())
    ds = AffWild2(root)
    assert ds.warnings == []
    assert ds.crop_roots == [
        root / "cropped_aligned" / "cropped_aligned",
        root / "cropped_aligned" / "cropped_aligned_new_50_vids",
    ]
    assert set(ds.crop_dirs) == set(meta["tracks"])
    for name, tmeta in meta["tracks"].items():
        assert ds.crop_dirs[name] == root / tmeta["crops"]
    summary = ds.summary()
    assert summary["tracks_without_crops"] == {} and summary["tracks_without_video"] == {}
    for task in ("VA", "EXPR"):
        for t in ds.tracks(task, "train") + ds.tracks(task, "validation"):
            assert 0 < len(ds.crop_frames(t)) <= ds.frame_count(t)


# -- frame counts ------------------------------------------------------------------------


def grid_length(video: Path) -> int:
    """Rows of the frame grid emofeat extract aligns to (the decoder's grid)."""
    from emofeat.media import Decoder, probe

    info = probe(video)
    decoder = Decoder(info, video=True, audio_rates=[16000] if info.has_audio else [])
    for _ in decoder:
        pass
    return len(decoder.grid)


def test_frame_count_is_the_grid_not_the_avi_header(tmp_path):
    """A 6 fps MPEG-4 AVI: the header declares 13 frames, the file holds 12."""
    from emofeat.media import probe

    build_tree(tmp_path)
    video = write_video(
        tmp_path / "batch2" / "10-60-1280x720.avi", 2.0, 6, (64, 48), codec="mpeg4",
        audio=False, skipped_frame=True,
    )  # fmt: skip
    assert probe(video).n_frames == 13
    ds = AffWild2(tmp_path)
    t = ds.tracks("VA", "validation")[0]
    assert ds.frame_count(t) == 12 == grid_length(video)
    assert ds.fps(t) == 6.0
    assert ds.summary()["warnings"] == []


@pytest.mark.parametrize(
    ("suffix", "codec", "fps", "duration"),
    [
        (".mp4", "libx264", Fraction(30000, 1001), 2.0),  # B-frames
        (".mp4", "libx264", 6, 2.0),
        (".avi", "mpeg4", Fraction(30000, 1001), 2.0),
        (".avi", "mpeg4", 6, 2.0),
        (".avi", "mpeg4", Fraction(15, 2), 3.0),
        (".mkv", "libx264", 25, 1.0),  # Matroska declares no frame count
    ],
)
def test_frame_count_equals_the_grid_length(tmp_path, suffix, codec, fps, duration):
    build_tree(tmp_path)
    (tmp_path / "batch1").mkdir()
    video = write_video(
        tmp_path / "batch1" / f"video5{suffix}", duration, fps, size=(64, 48), codec=codec
    )
    ds = AffWild2(tmp_path)
    n = ds.frame_count("video5_left")
    assert n == grid_length(video) == round(duration * float(fps))
    assert ds.fps("video5_right") == pytest.approx(float(fps))
