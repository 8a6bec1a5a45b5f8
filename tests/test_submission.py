"""Submission writer: template order, nearest fill, clipping, refusal (nothing written)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from emofeat.samples import write_image_sequence
from emofeat_recipes.datasets.affwild2 import EXPR_LABELS, AffWild2, AnnotationError, DatasetWarning
from emofeat_recipes.submission import (
    SubmissionError,
    fill_nearest,
    read_template,
    write_submission,
)

VA_HEADER = "image_location,valence,arousal"
EXPR_HEADER = "image_location," + ",".join(EXPR_LABELS)


def make_template(path: Path, header: str, rows: list[tuple[str, int]], filler: str) -> Path:
    body = "".join(f"{t}/{k:05d}.jpg{filler}\n" for t, k in rows)
    path.write_text(header + "\n" + body)
    return path


def read_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


# template order on purpose not sorted: videoB before videoA_left
ROWS = [("videoB", k) for k in range(1, 7)] + [("videoA_left", k) for k in range(1, 4)]


def test_va_rows_in_template_order_with_nearest_fill_and_clipping(tmp_path):
    tmpl = make_template(tmp_path / "va_template.txt", VA_HEADER, ROWS, ",0,0")
    nan = np.nan
    preds = {
        # frames 2 and 3 missing; frames 5 and 6 beyond the predictions
        "videoB": np.array([[0.1, -0.1], [nan, nan], [nan, nan], [0.4, 1.7]]),
        "videoA_left": np.array([[-3.0, 0.25], [0.5, 0.5], [0.6, 0.6]]),
    }
    out = write_submission(tmpl, preds, tmp_path / "sub" / "VA.txt", "VA")
    lines = read_rows(out)
    assert lines[0] == VA_HEADER.split(",")
    assert [r[0] for r in lines[1:]] == [f"{t}/{k:05d}.jpg" for t, k in ROWS]
    got = np.array([[float(r[1]), float(r[2])] for r in lines[1:]])
    expected = [
        [0.1, -0.1],  # frame 1
        [0.1, -0.1],  # frame 2: frame 1 is 1 away, frame 4 is 2 away
        [0.4, 1.0],  # frame 3: frame 4 is nearer; arousal 1.7 clipped
        [0.4, 1.0],
        [0.4, 1.0],  # frames 5, 6: past the end -> the last prediction
        [0.4, 1.0],
        [-1.0, 0.25],  # videoA_left: valence -3 clipped
        [0.5, 0.5],
        [0.6, 0.6],
    ]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert len(lines) - 1 == len(read_template(tmpl)[1])
    assert [p.name for p in out.parent.iterdir()] == ["VA.txt"]  # no temporary file left


def test_expr_one_class_per_row_from_indices_and_scores(tmp_path):
    tmpl = make_template(tmp_path / "expr_template.txt", EXPR_HEADER, ROWS, ",0")
    scores = np.full((6, 8), 0.01)
    scores[np.arange(6), [4, 4, 0, 7, 7, 1]] = 0.9
    scores[2] = np.nan  # missing frame: nearest is frame 2 (tie with 4 -> earlier)
    preds = {"videoB": scores, "videoA_left": np.array([5, -1])}
    out = write_submission(tmpl, preds, tmp_path / "EXPR.txt", "expr")
    lines = read_rows(out)
    assert ",".join(lines[0]) == EXPR_HEADER  # the template's header, 8 names
    assert all(len(r) == 2 for r in lines[1:])
    assert [int(r[1]) for r in lines[1:]] == [4, 4, 4, 7, 7, 1, 5, 5, 5]


def test_rows_from_a_plain_test_list(tmp_path):
    ann = tmp_path / "6th_ABAW_Annotations/VA_Estimation_Challenge/Train_Set"
    ann.mkdir(parents=True)
    (ann / "v1.txt").write_text("valence,arousal\n0,0\n")
    (tmp_path / "Valence_Arousal_Estimation_Challenge_test_set_release.txt").write_text("t1\n")
    write_image_sequence(tmp_path / "cropped_aligned/t1", n_frames=5, size=(16, 16), missing=(2,))
    rows = AffWild2(tmp_path).test_rows("VA")
    out = write_submission(rows, {"t1": np.zeros((5, 2)) + 0.5}, tmp_path / "sub.txt", "VA")
    lines = out.read_text().splitlines()
    assert lines[0] == VA_HEADER  # the official header
    assert lines[1:] == [f"t1/{k:05d}.jpg,0.500000,0.500000" for k in range(1, 6)]


def test_refuses_missing_tracks_and_writes_nothing(tmp_path):
    tmpl = make_template(tmp_path / "va_template.txt", VA_HEADER, ROWS, ",0,0")
    out = tmp_path / "VA.txt"
    out.write_text("previous submission\n")
    with pytest.raises(SubmissionError) as err:
        write_submission(tmpl, {"other": np.zeros((3, 2))}, out, "VA")
    assert "videoB" in str(err.value) and "videoA_left" in str(err.value)
    assert "nothing written" in str(err.value)
    assert out.read_text() == "previous submission\n"
    all_nan = {"videoB": np.full((6, 2), np.nan), "videoA_left": np.zeros((3, 2))}
    with pytest.raises(SubmissionError, match=r"only missing values for 1 track\(s\): videoB"):
        write_submission(tmpl, all_nan, tmp_path / "new.txt", "VA")
    assert not (tmp_path / "new.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VA.txt", "va_template.txt"]


def test_refuses_wrong_task_shape_and_bad_classes(tmp_path):
    va_tmpl = make_template(tmp_path / "va.txt", VA_HEADER, ROWS, ",0,0")
    preds = {"videoB": np.zeros(6, int), "videoA_left": np.zeros(3, int)}
    with pytest.raises(SubmissionError, match="a VA template, but task is EXPR"):
        write_submission(va_tmpl, preds, tmp_path / "x.txt", "EXPR")
    with pytest.raises(SubmissionError, match=r"VA predictions must be \(n, 2\)"):
        write_submission(va_tmpl, preds, tmp_path / "x.txt", "VA")
    ex_tmpl = make_template(tmp_path / "ex.txt", EXPR_HEADER, ROWS, ",0")
    bad = {"videoB": np.array([0, 9, 1]), "videoA_left": np.zeros(3, int)}
    with pytest.raises(SubmissionError, match="'videoB': EXPR prediction 9 at frame 2"):
        write_submission(ex_tmpl, bad, tmp_path / "x.txt", "EXPR")
    assert not (tmp_path / "x.txt").exists()


def test_malformed_template_is_reported_with_its_line(tmp_path):
    tmpl = tmp_path / "va.txt"
    tmpl.write_text(VA_HEADER + "\nv/00001.jpg,0,0\nv/0000x.jpg,0,0\n")
    with pytest.raises(AnnotationError, match=r"va.txt, line 3: image_location 'v/0000x.jpg'"):
        write_submission(tmpl, {"v": np.zeros((2, 2))}, tmp_path / "o.txt", "VA")
    assert not (tmp_path / "o.txt").exists()


def test_warns_on_short_predictions_and_unknown_tracks(tmp_path):
    tmpl = make_template(tmp_path / "va.txt", VA_HEADER, ROWS, ",0,0")
    preds = {"videoB": np.zeros((6, 2)), "videoA_left": np.zeros((3, 2))}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_submission(tmpl, preds, tmp_path / "ok.txt", "VA")
    preds["videoB"] = np.zeros((2, 2))
    preds["stray"] = np.zeros((2, 2))
    with pytest.warns(DatasetWarning) as rec:
        write_submission(tmpl, preds, tmp_path / "short.txt", "VA")
    text = " ".join(str(w.message) for w in rec)
    assert "videoB (2 predicted, 6 in template)" in text and "stray" in text
    assert len(read_rows(tmp_path / "short.txt")) == len(ROWS) + 1


def test_fill_nearest_ties_take_the_earlier_frame():
    vals = np.array([10, 0, 0, 40, 0])
    got = fill_nearest(vals, np.array([True, False, False, True, False]), 7)
    np.testing.assert_array_equal(got, [10, 10, 40, 40, 40, 40, 40])
    got = fill_nearest(np.array([1, 0, 3]), np.array([True, False, True]), 3)
    np.testing.assert_array_equal(got, [1, 1, 3])
    with pytest.raises(SubmissionError):
        fill_nearest(vals, np.zeros(5, bool), 3)
