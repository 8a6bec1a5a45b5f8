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
