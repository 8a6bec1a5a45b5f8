"""The command line: extract / inspect / plugins / sample, settings, reruns, workers."""

from __future__ import annotations

import json

import numpy as np
from conftest import run_cli

import emofeat
from emofeat import media
from emofeat.engine import Job, RunOptions, run
from emofeat.store import FeatureStore


def test_version():
    res = run_cli("--version")
    assert res.returncode == 0 and emofeat.__version__ in res.stdout


def test_extract_folder_then_rerun_then_inspect(media_dir, tmp_path):
    out = tmp_path / "feats.h5"
    res = run_cli("extract", "-p", "egemaps,functionals", str(media_dir), "-o", str(out))
    assert res.returncode == 0, res.stderr
    # summary table with per-extractor throughput
    assert "emofeat extract" in res.stderr and "speed (x real time)" in res.stderr
    assert "(decoding)" in res.stderr
    store = emofeat.open_store(out)
    assert store.items() == ["talk", "voice"]  # silent video and image folder: no audio
    assert "silent.mp4" in res.stderr and "no audio track" in res.stderr
    log = store.run_log()
    skipped = log[(log["event"] == "input") & (log["status"] == "skipped")]
    assert set(skipped["key"]) == {"silent", "track_left"}
    talk = store.read("talk", "egemaps", "lld", aligned=True)
    assert len(talk.data) == 180  # 6 s at 29.97 fps
    again = run_cli("extract", "-p", "egemaps", "-p", "functionals", str(media_dir), "-o", str(out))
    assert again.returncode == 0
    counts = again.stderr.split("time")[1]
    assert "unchanged" in again.stderr and "│    0 │" in counts  # nothing done twice
    insp = run_cli("inspect", str(out))
    assert insp.returncode == 0, insp.stderr
    assert "talk" in insp.stdout and "egemaps" in insp.stdout and "100.0%" in insp.stdout
    assert "skipped" in insp.stdout and "no audio track" in insp.stdout
    data = json.loads(run_cli("inspect", "--json", str(out)).stdout)
    item = next(i for i in data["items"] if i["key"] == "talk" and i["extractor"] == "egemaps")
    assert {s["name"]: s["dims"] for s in item["streams"]} == {"functionals": 88, "lld": 25}
    assert item["source"].endswith("talk.mp4")
    assert item["config"]["win"] == 4.0
    assert len(data["runs"]) == 2


def test_glob_and_settings(media_dir, tmp_path):
    out = tmp_path / "g.h5"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("egemaps:\n  win: 1.0\n  hop: 1.0\n")
    res = run_cli(
        "extract",
        "-p",
        "egemaps",
        "-c",
        str(cfg),
        "--set",
        "egemaps.hop=0.5",
        f"{media_dir}/*.wav",
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(out)
    assert store.items() == ["voice"]
    times = store.read("voice", "egemaps", "functionals").times
    np.testing.assert_allclose(times[:3, 0], [0.0, 0.5, 1.0])  # --set overrides the file
    np.testing.assert_allclose(times[:3, 1] - times[:3, 0], 1.0)  # file setting kept
    assert store.item_attrs("voice", "egemaps")["config"]["settings"]["hop"] == 0.5


def test_bad_settings_are_usage_errors(media_dir, tmp_path):
    wav = str(media_dir / "voice.wav")
    cases = [
        (["--set", "egemaps.foo=1"], "unknown setting egemaps.foo"),
        (["--set", "egemaps.win=long"], "egemaps.win='long': expected a number"),
        (["--set", "functionals.win=2"], "not among the chosen extractors"),
        (["--set", "egemaps"], "expected NAME.KEY=VALUE"),
        (["--set", "egemaps.lld=false", "--set", "egemaps.functionals=false"], "both off"),
    ]
    for extra, message in cases:
        res = run_cli("extract", "-p", "egemaps", *extra, wav, "-o", str(tmp_path / "x.h5"))
        assert res.returncode == 2, (extra, res.stderr)
        assert message in res.stderr, (extra, res.stderr)
        assert "Traceback" not in res.stderr
    res = run_cli("extract", "-p", "nosuch", wav, "-o", str(tmp_path / "x.h5"))
    assert res.returncode == 2 and "no extractor named 'nosuch'" in res.stderr


def test_workers_give_identical_results(media_dir, tmp_path):
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    args = [
        "extract",
        "-q",
        "-p",
        "egemaps",
        str(media_dir / "talk.mp4"),
        str(media_dir / "voice.wav"),
    ]
    assert run_cli(*args, "-o", str(one)).returncode == 0
    res = run_cli(*args, "-j", "2", "-o", str(two))
    assert res.returncode == 0, res.stderr
    a, b = emofeat.open_store(one), emofeat.open_store(two)
    assert a.items() == b.items() == ["talk", "voice"]
    for key in a.items():
        for stream in ("lld", "functionals"):
            np.testing.assert_array_equal(
                a.read(key, "egemaps", stream).data, b.read(key, "egemaps", stream).data
            )


def test_each_input_is_decoded_once_for_all_extractors(media_dir, tmp_path, monkeypatch):
    passes: list[str] = []
    original = media.Decoder._iter_container

    def counting(self):
        passes.append(self.info.path.name)
        yield from original(self)

    monkeypatch.setattr(media.Decoder, "_iter_container", counting)
    jobs = []
    for name in ("egemaps", "compare"):
        entry = emofeat.get_extractor(name)
        cfg = {k: s.default for k, s in entry.cls.settings.items()}
        cfg["functionals"] = False
        jobs.append(Job.from_entry(entry, cfg))
    with FeatureStore(tmp_path / "d.h5", mode="a") as store:
        summary = run(store, [media_dir / "talk.mp4"], jobs, RunOptions())
    assert summary.results[0].status == "done"
    assert passes == ["talk.mp4"]
    store = emofeat.open_store(tmp_path / "d.h5")
    assert store.extractors("talk") == ["compare", "egemaps"]


def test_sample_command(tmp_path):
    res = run_cli("sample", str(tmp_path / "s"), "--duration", "3")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["crops_track", "speech.wav", "talk.mp4"]
    info = media.probe(tmp_path / "s" / "talk.mp4")
    assert info.has_audio and info.has_video and abs(info.duration - 3.0) < 0.2
