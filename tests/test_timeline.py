"""The alignment rule: each frame takes the native row whose centre is nearest the frame's
centre; the frame is valid only if that row covers the frame's centre and is valid itself;
frames no row covers get -1 / NaN. Ties (distances equal within 1e-9 s): a row that covers
the frame's centre wins, else (both or neither cover) the earlier row. Coverage is decided
at the same 1e-9 s resolution: a centre that close to a row's start or end counts as on it.

Expected indices below are worked out by hand from that rule and written out literally.
"""

from __future__ import annotations

import numpy as np
import pytest

from emofeat.media import grid_from_starts
from emofeat.store import ALIGNMENT_RULE
from emofeat.timeline import align_to_frames, gather_rows

NTSC_PERIOD = 1001 / 30000  # seconds per frame at 29.97 fps


def _grid(starts, last_period: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame starts/ends: each frame ends where the next starts."""
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.append(starts[1:], starts[-1] + last_period)
    return starts, ends


def _ntsc_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n)
    return k * 1001 / 30000, (k + 1) * 1001 / 30000


TIE = 1e-9  # seconds: times closer than this are equal


def _reference(row_starts, row_ends, frame_starts, frame_ends, row_valid=None):
    """The rule, literally, one frame at a time (slow, independent of the module)."""
    index, valid = [], []
    for fs, fe in zip(frame_starts, frame_ends, strict=True):
        c = (fs + fe) / 2
        rows = list(zip(row_starts, row_ends, strict=True))
        distances = [abs((rs + re) / 2 - c) for rs, re in rows]
        nearest = min(distances)
        # the tied rows, earliest first (earlier centre, then position)
        tied = sorted(
            (i for i, d in enumerate(distances) if d <= nearest + TIE),
            key=lambda i: ((row_starts[i] + row_ends[i]) / 2, i),
        )
        covering = [i for i in tied if row_starts[i] - TIE <= c < row_ends[i] - TIE]
        best = covering[0] if covering else tied[0]
        covered = bool(covering)
        index.append(best if covered else -1)
        ok = covered and (row_valid is None or bool(row_valid[best]))
        valid.append(ok)
    return np.array(index), np.array(valid)


# -- per-frame rows ----------------------------------------------------------------------


def test_per_frame_rows_map_to_themselves_at_2997():
    starts, ends = _ntsc_grid(300)
    index, valid = align_to_frames(starts, ends, starts, ends)
    assert index.dtype == np.int64 and valid.dtype == bool
    np.testing.assert_array_equal(index, np.arange(300))
    assert valid.all()


def test_per_frame_rows_map_to_themselves_on_a_variable_rate_grid():
    starts, ends = _grid([0.0, 0.03, 0.1, 0.12, 0.2, 0.33, 0.35, 0.5, 0.52, 0.6], 1 / 30)
    index, valid = align_to_frames(starts, ends, starts, ends)
    np.testing.assert_array_equal(index, np.arange(10))
    assert valid.all()


def test_per_frame_rows_keep_their_own_validity():
    starts, ends = _ntsc_grid(6)
    row_valid = np.array([True, False, True, True, False, True])
    index, valid = align_to_frames(starts, ends, starts, ends, row_valid)
    np.testing.assert_array_equal(index, np.arange(6))  # index still points at the row
    np.testing.assert_array_equal(valid, row_valid)


# -- dense low-level descriptors ---------------------------------------------------------


def test_100hz_lld_rows_onto_a_2997_grid():
    # 100 rows: row i spans [0.01 i, 0.01 i + 0.02), centre 0.01 i + 0.01 (0.01 ... 1.00 s)
    i = np.arange(100)
    row_starts = i * 0.01
    row_ends = row_starts + 0.02
    starts, ends = _ntsc_grid(35)
    index, valid = align_to_frames(row_starts, row_ends, starts, ends)
    # frame k is centred at (2k + 1) * 1001 / 60000 s:
    #   k=0: 0.016683 -> row centres 0.01 (row 0, 6.7 ms) / 0.02 (row 1, 3.3 ms) -> 1
    #   k=1: 0.050050 -> 0.05 (row 4, 0.05 ms)                                   -> 4
    #   k=2: 0.083417 -> 0.08 (row 7, 3.4 ms) / 0.09 (row 8, 6.6 ms)              -> 7
    #   k=3: 0.116783 -> 0.11 (row 10, 6.8 ms) / 0.12 (row 11, 3.2 ms)            -> 11
    #   k=10: 0.350350 -> 0.35 (row 34)                                           -> 34
    #   k=29: 0.984317 -> 0.98 (row 97, 4.3 ms) / 0.99 (row 98, 5.7 ms)           -> 97
    #   k=30: 1.017683 -> nearest is the last row (99, [0.99, 1.01)): not covered -> -1
    #   k=34: 1.151150 -> beyond every row                                        -> -1
    expected = {0: 1, 1: 4, 2: 7, 3: 11, 10: 34, 29: 97, 30: -1, 34: -1}
    for k, row in expected.items():
        assert index[k] == row, f"frame {k}"
        assert valid[k] == (row >= 0)
    assert (index[:30] >= 0).all() and valid[:30].all()
    assert (index[30:] == -1).all() and not valid[30:].any()
    # the LLDs keep their own resolution: consecutive frames pick rows 3 or 4 apart
    steps = np.diff(index[:30])
    assert set(steps.tolist()) <= {3, 4}
    ref_index, ref_valid = _reference(row_starts, row_ends, starts, ends)
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_array_equal(valid, ref_valid)


# -- overlapping windows -----------------------------------------------------------------


def _windows() -> tuple[np.ndarray, np.ndarray]:
    # 4 s windows with a 0.5 s hop over 10 s: j = 0..12, [0.5 j, 0.5 j + 4), centre 0.5 j + 2
    j = np.arange(13)
    return j * 0.5, j * 0.5 + 4.0


def _frames_25fps(n: int) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(n)
    return k / 25, (k + 1) / 25


def test_windows_map_to_the_window_centred_nearest():
    row_starts, row_ends = _windows()
    starts, ends = _frames_25fps(275)  # 11 s of frames, 1 s more than the windows span
    index, valid = align_to_frames(row_starts, row_ends, starts, ends)
    # frame k is centred at 0.04 k + 0.02 s; window centres are 2.0, 2.5, ..., 8.0
    expected = {
        0: 0,  # 0.02: window 0 (centre 2.0) is the nearest and covers [0, 4)
        37: 0,  # 1.50
        50: 0,  # 2.02
        60: 1,  # 2.42: 2.5 is 0.08 away, 2.0 is 0.42 away
        93: 3,  # 3.74: 3.5 is 0.24 away, 4.0 is 0.26 away
        94: 4,  # 3.78: 4.0 is 0.22 away
        105: 4,  # 4.22
        106: 5,  # 4.26: 4.5 is 0.24 away, 4.0 is 0.26 away
        200: 12,  # 8.02: the last window, [6, 10)
        249: 12,  # 9.98: still inside the last window
        250: -1,  # 10.02: past the end of every window
        274: -1,
    }
    for k, row in expected.items():
        assert index[k] == row, f"frame {k}"
    assert valid[:250].all() and (index[:250] >= 0).all()
    assert not valid[250:].any() and (index[250:] == -1).all()
    # nearest centre, checked against every window
    centres = (starts + ends) / 2
    window_centres = (row_starts + row_ends) / 2
    distances = np.abs(centres[:250, None] - window_centres[None, :])
    np.testing.assert_allclose(
        distances[np.arange(250), index[:250]], distances.min(axis=1), rtol=0, atol=1e-12
    )


def test_an_invalid_window_invalidates_its_frames_only():
    row_starts, row_ends = _windows()
    starts, ends = _frames_25fps(275)
    row_valid = np.ones(13, dtype=bool)
    row_valid[4] = False
    index, valid = align_to_frames(row_starts, row_ends, starts, ends, row_valid)
    # window 4 (centre 4.0) is the nearest for frames 94 .. 105 (centres 3.78 .. 4.22)
    np.testing.assert_array_equal(np.flatnonzero(index == 4), np.arange(94, 106))
    assert not valid[94:106].any()
    assert valid[93] and index[93] == 3
    assert valid[106] and index[106] == 5
    assert valid[:94].all() and valid[106:250].all()
    assert not valid[250:].any()


# -- ties, order, edges ------------------------------------------------------------------


def test_a_tie_goes_to_the_earlier_row():
    # centres 0.5 and 1.0; the frame [0.5, 1.0) is centred at 0.75, 0.25 from both
    index, valid = align_to_frames([0.0, 0.5], [1.0, 1.5], [0.5], [1.0])
    assert index.tolist() == [0] and valid.tolist() == [True]
    # same two rows listed the other way round: the earlier one is now row 1
    index, valid = align_to_frames([0.5, 0.0], [1.5, 1.0], [0.5], [1.0])
    assert index.tolist() == [1] and valid.tolist() == [True]
    # a tie in which the earlier row is invalid: it still wins, so the frame is invalid
    index, valid = align_to_frames([0.0, 0.5], [1.0, 1.5], [0.5], [1.0], [False, True])
    assert index.tolist() == [0] and valid.tolist() == [False]


def test_rows_with_the_same_centre_tie_to_the_covering_row():
    # [0, 2) and [0.5, 1.5) are both centred at 1.0; the frame is centred at 1.7, which
    # only [0, 2) covers: it wins the tie wherever it is listed
    index, valid = align_to_frames([0.0, 0.5], [2.0, 1.5], [1.6], [1.8])
    assert index.tolist() == [0] and valid.tolist() == [True]
    index, valid = align_to_frames([0.5, 0.0], [1.5, 2.0], [1.6], [1.8])
    assert index.tolist() == [1] and valid.tolist() == [True]
    # behind a run of identical rows that do not cover
    index, valid = align_to_frames([0.5, 0.5, 0.5, 0.0], [1.5, 1.5, 1.5, 2.0], [1.6], [1.8])
    assert index.tolist() == [3] and valid.tolist() == [True]
    # both cover (frame centred at 1.2): the first row
    index, valid = align_to_frames([0.5, 0.0], [1.5, 2.0], [1.1], [1.3])
    assert index.tolist() == [0] and valid.tolist() == [True]
    # two identical rows: the first one
    index, valid = align_to_frames([0.0, 0.0], [1.0, 1.0], [0.6], [0.8])
    assert index.tolist() == [0] and valid.tolist() == [True]


def test_the_rule_has_a_versioned_name():
    # stored items record it; items aligned under v1 (ties to the earlier row even when it
    # did not cover the frame) are redone by the next extract run
    assert ALIGNMENT_RULE == "nearest-centre-covering-v2"


def test_a_tie_goes_to_the_covering_row():
    # centres 0.5 and 1.5; the frame [0.9, 1.1) is centred at 1.0, 0.5 from both: only the
    # later row [1, 2) covers it
    index, valid = align_to_frames([0.0, 1.0], [1.0, 2.0], [0.9], [1.1])
    assert index.tolist() == [1] and valid.tolist() == [True]
    # listed the other way round
    index, valid = align_to_frames([1.0, 0.0], [2.0, 1.0], [0.9], [1.1])
    assert index.tolist() == [0] and valid.tolist() == [True]
    # the covering row wins even when it is invalid (the frame is then invalid)
    index, valid = align_to_frames([0.0, 1.0], [1.0, 2.0], [0.9], [1.1], [True, False])
    assert index.tolist() == [1] and valid.tolist() == [False]


def test_a_tie_within_rounding_is_a_tie():
    # windows [0, 0.1) and [0.1, 0.2) and the frame [0.08, 0.12) of a 25 fps video: the
    # frame's centre is 0.1 and the window centres 0.05 and 0.15000000000000002, so the
    # earlier window looks 1.4e-17 s nearer; it is a tie, and the later window covers 0.1
    centre = (0.08 + 0.12) / 2
    assert centre == 0.1 and (0.1 + 0.2) / 2 - centre > centre - 0.05
    index, valid = align_to_frames([0.0, 0.1], [0.1, 0.2], [0.08], [0.12])
    assert index.tolist() == [1] and valid.tolist() == [True]


def test_a_tie_neither_row_covers_gives_an_invalid_frame():
    # rows [0, 0.2) and [0.3, 0.5), centres 0.1 and 0.4; the frame centred at 0.25 lies in
    # the gap, 0.15 from both
    index, valid = align_to_frames([0.0, 0.3], [0.2, 0.5], [0.2], [0.3])
    assert index.tolist() == [-1] and valid.tolist() == [False]


def test_a_nearer_row_wins_without_a_tie_even_when_it_does_not_cover():
    # a short row [0.2, 0.3) (centre 0.25) and a long one [0.3, 1.5) (centre 0.9): the
    # frame centred at 0.4 is nearest the short row, which does not cover it
    index, valid = align_to_frames([0.2, 0.3], [0.3, 1.5], [0.35], [0.45])
    assert index.tolist() == [-1] and valid.tolist() == [False]


def _container_grid(fps: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A video's frame grid, built the way the decoder builds it."""
    if fps == 30000 / 1001:
        starts = np.arange(n) * 1001 / 30000
    else:
        starts = np.arange(n) / fps
    grid = grid_from_starts(starts, fps, "container")
    return grid.starts, grid.ends


@pytest.mark.parametrize(
    ("win", "fps", "n_frames", "on_boundary"),
    [
        (0.25, 30, 600, 40),  # 20 s: frames 7, 22, 37, ... are centred on a boundary
        (0.2, 25, 500, 0),
        (0.1, 30, 600, 0),
        (0.1, 25, 500, 100),  # 20 s: frames 2, 7, 12, ...
        (0.05, 30, 600, 200),
        (0.25, 30000 / 1001, 600, 0),
        (1.5 * NTSC_PERIOD, 30000 / 1001, 600, 200),  # one and a half frames per window
        (0.5 * NTSC_PERIOD, 30000 / 1001, 600, 600),  # two windows per frame
    ],
)
@pytest.mark.parametrize("ends", ["next start", "start + win"])
def test_contiguous_windows_fill_every_frame(win, fps, n_frames, on_boundary, ends):
    starts, frame_ends = _container_grid(fps, n_frames)
    centres = (starts + frame_ends) / 2
    j = np.arange(int(np.ceil(frame_ends[-1] / win)) + 1)
    row_starts = j * win
    row_ends = (j + 1) * win if ends == "next start" else row_starts + win
    # how many frames sit (within rounding) on a window boundary, where the v1 rule lost them
    position = centres / win
    assert (np.abs(position - np.round(position)) < 1e-6).sum() == on_boundary
    index, valid = align_to_frames(row_starts, row_ends, starts, frame_ends)
    assert valid.all() and (index >= 0).all()
    # a frame centred on a boundary takes the window that starts there
    on = np.abs(position - np.round(position)) < 1e-6
    np.testing.assert_array_equal(index[on], np.round(position[on]).astype(int))
    # every frame takes a window that covers its centre (up to rounding: with end = start +
    # win, neighbouring windows can be an ulp apart), and one of the nearest
    assert ((row_starts[index] - 1e-12 <= centres) & (centres < row_ends[index])).all()
    distances = np.abs(centres[:, None] - ((row_starts + row_ends) / 2)[None, :])
    np.testing.assert_allclose(
        distances[np.arange(n_frames), index], distances.min(axis=1), rtol=0, atol=1e-9
    )
    ref_index, ref_valid = _reference(row_starts, row_ends, starts, frame_ends)
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_array_equal(valid, ref_valid)


def test_quarter_second_windows_at_30fps_boundary_frames_take_the_window_starting_there():
    starts, ends = _container_grid(30, 600)
    j = np.arange(81)
    index, valid = align_to_frames(j * 0.25, (j + 1) * 0.25, starts, ends)
    assert valid.sum() == 600  # the v1 rule left 40 of 600 frames invalid
    # frame 15 i + 7 is centred at 0.5 i + 0.25 s, the start of window 2 i + 1
    np.testing.assert_array_equal(index[7::15], np.arange(1, 80, 2))
    np.testing.assert_array_equal(index, np.floor((np.arange(600) + 0.5) / 7.5).astype(int))


def test_overlapping_windows_tie_to_the_earlier_window_when_both_cover():
    # 0.5 s windows, 0.25 s hop: window j spans [0.25 j, 0.25 j + 0.5), centre 0.25 j + 0.25;
    # at 20 fps frame 5 j + 7 is centred at 0.25 j + 0.375, between two window centres,
    # both windows cover it: the earlier one (j) wins
    j = np.arange(40)
    row_starts, row_ends = j * 0.25, j * 0.25 + 0.5
    starts, ends = _container_grid(20, 200)
    index, valid = align_to_frames(row_starts, row_ends, starts, ends)
    assert valid.all()
    tied = np.arange(7, 200, 5)
    np.testing.assert_array_equal(index[tied], np.arange(len(tied)))
    ref_index, _ = _reference(row_starts, row_ends, starts, ends)
    np.testing.assert_array_equal(index, ref_index)


def test_unsorted_rows_are_handled():
    # rows C [2, 3), A [0, 1), B [1, 2) in that order; frames [0,1) [1,2) [2,3) [3,4)
    row_starts = [2.0, 0.0, 1.0]
    row_ends = [3.0, 1.0, 2.0]
    frame_starts = [0.0, 1.0, 2.0, 3.0]
    frame_ends = [1.0, 2.0, 3.0, 4.0]
    index, valid = align_to_frames(row_starts, row_ends, frame_starts, frame_ends)
    assert index.tolist() == [1, 2, 0, -1]
    assert valid.tolist() == [True, True, True, False]
    # validity is given in the rows' own (unsorted) order
    index, valid = align_to_frames(
        row_starts, row_ends, frame_starts, frame_ends, [True, False, True]
    )
    assert index.tolist() == [1, 2, 0, -1]
    assert valid.tolist() == [False, True, True, False]  # frame 0 takes the invalid row A


def test_coverage_is_half_open():
    # one row [1, 2): a frame centred on its start is covered, one centred on its end is not
    index, valid = align_to_frames([1.0], [2.0], [0.5, 1.5, 1.0], [1.5, 2.5, 1.5])
    # centres: 1.0 (row start), 2.0 (row end), 1.25
    assert index.tolist() == [0, -1, 0]
    assert valid.tolist() == [True, False, True]
    # frames before the first row are uncovered too
    index, valid = align_to_frames([1.0], [2.0], [0.0], [0.5])
    assert index.tolist() == [-1] and valid.tolist() == [False]


def test_coverage_is_decided_at_a_nanosecond():
    # a centre within 1e-9 s of a row's start or end counts as on it: just before the start
    # of [1, 2) is covered, just before its end is not (half-open, up to rounding)
    index, valid = align_to_frames([1.0], [2.0], [0.9, 1.9], [1.1 - 2e-10, 2.1 - 2e-10])
    assert index.tolist() == [0, -1] and valid.tolist() == [True, False]
    # farther than that, as before
    index, valid = align_to_frames([1.0], [2.0], [0.9, 1.9], [1.1 - 2e-8, 2.1 - 2e-8])
    assert index.tolist() == [-1, 0] and valid.tolist() == [False, True]


def test_empty_rows_give_all_minus_one():
    starts, ends = _ntsc_grid(5)
    index, valid = align_to_frames(np.array([]), np.array([]), starts, ends)
    assert index.tolist() == [-1] * 5
    assert valid.tolist() == [False] * 5
    assert index.dtype == np.int64 and valid.dtype == bool
    # and no frames give empty results
    index, valid = align_to_frames([0.0], [1.0], np.array([]), np.array([]))
    assert index.shape == (0,) and valid.shape == (0,)


def test_random_rows_on_a_coarse_grid_follow_the_rule_literally():
    # rows and frames on multiples of 0.05 s: many exact and rounding-level ties
    rng = np.random.default_rng(11)
    for _ in range(30):
        n_rows = int(rng.integers(1, 20))
        row_starts = rng.integers(0, 60, n_rows) * 0.05
        row_ends = row_starts + rng.integers(1, 10, n_rows) * 0.05
        row_valid = rng.random(n_rows) > 0.2
        starts, ends = _grid(np.unique(rng.integers(0, 80, 40)) * 0.05, 0.05)
        index, valid = align_to_frames(row_starts, row_ends, starts, ends, row_valid)
        ref_index, ref_valid = _reference(row_starts, row_ends, starts, ends, row_valid)
        np.testing.assert_array_equal(index, ref_index)
        np.testing.assert_array_equal(valid, ref_valid)


def test_random_rows_follow_the_rule_literally():
    rng = np.random.default_rng(7)
    for _ in range(20):
        n_rows = int(rng.integers(1, 30))
        row_starts = np.round(rng.uniform(0, 5, n_rows), 2)  # unsorted, some overlapping
        row_ends = row_starts + np.round(rng.uniform(0.01, 1.5, n_rows), 2)
        row_valid = rng.random(n_rows) > 0.2
        starts, ends = _grid(np.sort(np.round(rng.uniform(0, 6, 40), 3)), 0.04)
        index, valid = align_to_frames(row_starts, row_ends, starts, ends, row_valid)
        ref_index, ref_valid = _reference(row_starts, row_ends, starts, ends, row_valid)
        np.testing.assert_array_equal(index, ref_index)
        np.testing.assert_array_equal(valid, ref_valid)


# -- gather_rows -------------------------------------------------------------------------


def test_gather_rows_fills_nan_for_uncovered_frames():
    data = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    out = gather_rows(data, np.array([2, -1, 0, 0, -1]))
    assert out.dtype == np.float32
    assert out.shape == (5, 2)
    np.testing.assert_array_equal(out[0], [5.0, 6.0])
    assert np.isnan(out[1]).all() and np.isnan(out[4]).all()
    np.testing.assert_array_equal(out[2], [1.0, 2.0])
    np.testing.assert_array_equal(out[3], [1.0, 2.0])


def test_gather_rows_one_dimensional_all_missing_and_custom_fill():
    values = np.array([10.0, 20.0, 30.0])
    np.testing.assert_array_equal(gather_rows(values, np.array([1, 1, 2])), [20.0, 20.0, 30.0])
    assert np.isnan(gather_rows(values, np.array([-1, -1]))).all()
    np.testing.assert_array_equal(gather_rows(values, np.array([-1, 0]), fill=0.0), [0.0, 10.0])
    assert gather_rows(np.zeros((3, 4)), np.array([], dtype=np.int64)).shape == (0, 4)


def test_align_then_gather_end_to_end():
    # 100 Hz rows carrying their own index as a value, onto 3 frames of 29.97 fps; the
    # third frame lies past the rows
    i = np.arange(5)
    starts, ends = _ntsc_grid(3)
    index, valid = align_to_frames(i * 0.01, i * 0.01 + 0.02, starts, ends)
    values = gather_rows(i.astype(float)[:, None], index)
    # frame 0 (centre 0.0167) -> row 1; frame 1 (centre 0.0501) -> row 4, which spans
    # [0.04, 0.06); frame 2 (centre 0.0834) -> nearest row 4 does not reach it
    assert index.tolist() == [1, 4, -1]
    assert valid.tolist() == [True, True, False]
    assert values[0, 0] == 1.0 and values[1, 0] == 4.0 and np.isnan(values[2, 0])


@pytest.mark.parametrize("n_frames", [1, 2])
def test_a_single_row_spanning_everything(n_frames):
    starts, ends = _ntsc_grid(n_frames)
    index, valid = align_to_frames([0.0], [10.0], starts, ends)
    assert index.tolist() == [0] * n_frames
    assert valid.all()
