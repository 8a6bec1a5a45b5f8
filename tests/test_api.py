"""``emofeat.extract``: the library form of ``emofeat extract``."""

from __future__ import annotations

import numpy as np
import pytest

import emofeat
from emofeat.samples import write_audio, write_video


def test_extract_writes_the_same_items_as_the_cli(tmp_path):
    (tmp_path / "in").mkdir()
    write_video(tmp_path / "in" / "talk.mp4", duration=3.0, fps=25)
    write_audio(tmp_path / "in" / "voice.wav", duration=2.0)
    (tmp_path / "in" / "notes.mp4").write_text("not a video")
    store = tmp_path / "f.h5"
    seen = []
    summary = emofeat.extract(
        [tmp_path / "in"],
        ["egemaps"],
        store,
        settings={"egemaps": {"functionals": False}},
        on_result=lambda r: seen.append(r.status),
    )
    # the bad file fails, the others are committed, nothing is lost
    assert summary.failed and summary.count("done") == 2 and summary.count("failed") == 1
    assert sorted(seen) == ["done", "done", "failed"]
    fs = emofeat.open_store(store)
    assert fs.items() == ["talk", "voice"]
    sd = fs.read("talk", "egemaps", "lld", aligned=True)
    assert sd.data.shape == (75, 25) and sd.mask.mean() > 0.9
    assert fs.streams("talk", "egemaps") == ["lld"]  # the settings were applied
    # a second call skips what is complete and unchanged
    again = emofeat.extract([tmp_path / "in" / "talk.mp4"], ["egemaps"], store,
                            settings={"egemaps": {"functionals": False}})  # fmt: skip
    assert again.count("unchanged") == 1 and not again.failed
    # catalog: one entry per item, with the source each was made from
    (item,) = [i for i in fs.catalog() if i.key == "talk"]
    assert item.source == (tmp_path / "in" / "talk.mp4").resolve() and item.n_frames == 75
    assert item.kind == "video" and item.settings["functionals"] is False
    assert np.isfinite(sd.data[sd.mask]).all()


def test_bad_settings_fail_before_any_input(tmp_path):
    write_audio(tmp_path / "voice.wav", duration=1.0)
    with pytest.raises(emofeat.ConfigError, match="nosuch"):
        emofeat.extract([tmp_path / "voice.wav"], ["egemaps"], tmp_path / "f.h5",
                        settings={"egemaps": {"nosuch": 1}})  # fmt: skip
    assert not (tmp_path / "f.h5").exists()
    with pytest.raises(emofeat.UnknownExtractorError):
        emofeat.extract([tmp_path / "voice.wav"], ["nosuch"], tmp_path / "f.h5")


def test_process_file_returns_frames_without_a_store(tmp_path):
    video = write_video(tmp_path / "talk.mp4", duration=2.0, fps=30)
    frames = emofeat.process_file(video, "egemaps", ["egemaps.functionals=false"])
    assert list(frames) == ["egemaps.lld"]
    df = frames["egemaps.lld"]
    assert df.shape[1] == 25 and df.index.names == ["file", "start", "end"]
    assert set(df.index.get_level_values("file")) == {str(video.resolve())}
    # the same values as a store written by emofeat.extract
    emofeat.extract(video, "egemaps", tmp_path / "f.h5", {"egemaps": {"functionals": False}})
    stored = emofeat.open_store(tmp_path / "f.h5").to_frame("egemaps", "lld")
    np.testing.assert_array_equal(df.to_numpy(), stored.to_numpy())
    aligned = emofeat.process_file(video, "egemaps", aligned=True)
    assert len(aligned["egemaps.lld"]) == 60 and len(aligned["egemaps.functionals"]) == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5", "f.h5.d", "talk.mp4"]
    with pytest.raises(emofeat.MediaError, match="missing.mp4"):
        emofeat.process_file(tmp_path / "missing.mp4", "egemaps")


def test_settings_are_strict_and_defaults_not_shared():
    with pytest.raises(emofeat.ConfigError, match="egemaps.win"):
        emofeat.build_jobs(["egemaps"], ["egemaps.win=true"])  # not taken as 1.0
    faces = emofeat.get_extractor("faces").cls
    a, b = faces(), faces()
    a.config["thresholds"].append(0.9)
    assert len(b.config["thresholds"]) == 3
