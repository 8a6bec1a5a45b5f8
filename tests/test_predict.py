"""``emofeat predict`` (issue 15): a trained ABAW run applied to new media.

A tiny real run of each recipe (synthetic Aff-Wild2 set, ``--config quick``, a few epochs),
then ``emofeat predict`` on its test videos: one CSV row per decoded video frame, and the
values equal the run's own test predictions (the same saved models, normalisation, fusion
and smoothing applied to the same stored features), for every model of the run, the
random-forest stacker and the Kernel ELM included. Also: the predictions as the store's
``predict`` item, a corrupt input among good ones, runs that cannot be applied, and
``emofeat render --run``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import run_cli

import emofeat
from emofeat.recipes import RecipeError, predict_run

QUICK = ["--config", "quick", "--set", "train.epochs=3", "--set", "decision.draws=20", "-q"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("predict")
    data = base / "aw2"
    res = run_cli("datasets", "synth", str(data), "--videos", "8", "--duration", "4", "-q")
    assert res.returncode == 0, res.stderr
    env = {"EMOFEAT_CACHE_DIR": str(base / "models")}
    out = {"data": data, "base": base, "env": env}
    for recipe, extra in (
        ("abaw_va", []),
        ("abaw_expr", ["--set", "functionals.enabled=true"]),
    ):
        res = run_cli(
            "recipe", "run", recipe, "--data", str(data), "-o", str(base / "runs"),
            *QUICK, *extra, env=env, timeout=900,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        (run_dir,) = (base / "runs").glob(f"{recipe}-*")
        out[recipe] = run_dir
    (out["store"],) = (base / "runs" / "features").glob("*.h5")
    return out


def _test_videos(data: Path, task: str) -> list[Path]:
    """The raw videos of the run's test tracks (tracks named after their video)."""
    sample = next((data / "test").glob(f"CVPR_6th_ABAW_{task}_test_set_sample.txt"))
    names = {line.split("/")[0] for line in sample.read_text().splitlines()[1:]}
    videos = {p.stem: p for p in (data / "videos").rglob("*") if p.suffix in (".mp4", ".avi")}
    return [videos[n] for n in sorted(names) if n in videos]


def _decoded_frames(video: Path) -> int:
    with av.open(str(video)) as c:
        return sum(1 for _ in c.decode(video=0))


def _csv(path: Path) -> tuple[list[str], np.ndarray]:
    header = path.read_text().splitlines()[0].split(",")
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def _store_copy(runs: dict, tmp_path: Path) -> Path:
    """A copy of the run's store (the items the run used; predict adds its own)."""
    src = runs["store"]
    dst = tmp_path / src.name
    shutil.copy2(src, dst)
    shutil.copytree(src.with_name(src.name + ".d"), dst.with_name(dst.name + ".d"))
    return dst


def test_va_predictions_equal_the_runs_own_for_every_model(runs, tmp_path):
    run_dir, data = runs["abaw_va"], runs["data"]
    videos = _test_videos(data, "VA")
    assert len(videos) >= 2
    store = _store_copy(runs, tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    spec = json.loads((run_dir / "predict.json").read_text())
    assert spec["normalise"]["kind"] == "global_zscore" and spec["normalise"]["stats"]
    assert {"decision_weights", "decision_rf"} <= set(spec["models"])
    # the command: the run's best model by default
    out = tmp_path / "out"
    res = run_cli(
        "predict", str(run_dir), *map(str, videos), "-o", str(out), "--store", str(store),
        "--crops", str(data / "cropped_aligned"), env=runs["env"],
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"predictions of model {metrics['best']}" in res.stderr
    for video in videos:
        header, rows = _csv(out / f"{video.stem}.csv")
        assert header == ["frame", "time", "valence", "arousal", "valid"]
        assert len(rows) == _decoded_frames(video)  # one row per video frame
        assert rows[:, 0].tolist() == list(range(len(rows)))
        assert np.all(np.diff(rows[:, 1]) > 0) and rows[0, 1] == 0.0
        assert set(np.unique(rows[:, 4])) <= {0.0, 1.0} and rows[:, 4].mean() > 0.5
        own = np.loadtxt(
            run_dir / "predictions/test" / metrics["best"] / f"{video.stem}.csv",
            delimiter=",",
            skiprows=1,
        )
        np.testing.assert_allclose(rows[: len(own), 2:4], own, atol=1e-6)
        # the same values as the store's predict item, its mask the valid column
        st = emofeat.open_store(store)
        (item,) = [
            it for it in st.catalog() if it.extractor == "predict" and it.source == video.resolve()
        ]
        sd = st.read(item.key, "predict", "va", aligned=True)
        assert sd.labels == ["valence", "arousal"] and len(sd.data) == len(rows)
        np.testing.assert_allclose(sd.data, rows[:, 2:4], atol=1e-6)
        np.testing.assert_array_equal(sd.mask, rows[:, 4] == 1)
        assert item.settings["runs"]["va"]["model"] == metrics["best"]
    # every other model through the library call
    for name in metrics["models"]:
        res2 = predict_run(
            run_dir, videos, tmp_path / name, store=store, model=name, quiet=True,
            crops=data / "cropped_aligned",
        )  # fmt: skip
        assert not res2.failed and res2.model == name
        for o in res2.outcomes:
            rows = np.loadtxt(o.csv, delimiter=",", skiprows=1)
            own = np.loadtxt(
                run_dir / "predictions/test" / name / f"{o.input.stem}.csv",
                delimiter=",",
                skiprows=1,
            )
            np.testing.assert_allclose(rows[: len(own), 2:4], own, atol=1e-6, err_msg=name)


def test_expr_predictions_equal_the_runs_own_and_share_the_predict_item(runs, tmp_path):
    run_dir, data = runs["abaw_expr"], runs["data"]
    videos = _test_videos(data, "EXPR")[:1]
    store = _store_copy(runs, tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"video_kelm", "audio_kelm", "decision_gated"} <= set(metrics["models"])
    for name in metrics["models"]:
        res = predict_run(
            run_dir, videos, tmp_path / name, store=store, model=name, quiet=True,
            crops=data / "cropped_aligned",
        )  # fmt: skip
        assert not res.failed, res.failed
        (o,) = res.outcomes
        header, rows = _csv(o.csv)
        assert header[:3] == ["frame", "time", "class"] and header[-1] == "valid"
        assert len(header) == 3 + 8 + 1 and len(rows) == _decoded_frames(videos[0])
        own = np.loadtxt(
            run_dir / "predictions/test" / name / f"{videos[0].stem}.csv",
            delimiter=",",
            skiprows=1,
        )
        # the run writes probabilities with 5 decimals
        np.testing.assert_allclose(rows[: len(own), 3:11], own[:, 1:], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(rows[:, 3:11].sum(axis=1), 1.0, atol=1e-6)
        clear = np.sort(own[:, 1:], axis=1)[:, -1] - np.sort(own[:, 1:], axis=1)[:, -2] > 1e-4
        assert (rows[: len(own), 2][clear] == own[clear, 0]).all()
    # a VA prediction into the same store: the input's predict item holds both streams
    predict_run(
        runs["abaw_va"], videos, tmp_path / "va", store=store, quiet=True,
        crops=data / "cropped_aligned",
    )  # fmt: skip
    st = emofeat.open_store(store)
    (item,) = [
        it for it in st.catalog() if it.extractor == "predict" and it.source == videos[0].resolve()
    ]
    assert set(item.streams) == {"va", "expr"}
    assert st.read(item.key, "predict", "expr").labels[0] == "Neutral"
    assert set(item.settings["runs"]) == {"va", "expr"}


def test_raw_video_and_a_corrupt_input(runs, tmp_path):
    """Extraction from the raw video into a fresh store (OUT/features.h5); a corrupt file
    among the inputs is named, the other input is still predicted, exit status 1."""
    run_dir, data = runs["abaw_va"], runs["data"]
    video = _test_videos(data, "VA")[0]
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    out = tmp_path / "out"
    res = run_cli(
        "predict", str(run_dir), str(video), str(bad), "-o", str(out), "--model", "audio",
        "-q", env=runs["env"],
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert "notes.mp4" in res.stderr and "1 input(s) failed" in res.stderr
    assert (out / "features.h5").exists() and not (out / "notes.csv").exists()
    _, rows = _csv(out / f"{video.stem}.csv")
    assert len(rows) == _decoded_frames(video)
    own = np.loadtxt(
        run_dir / "predictions/test/audio" / f"{video.stem}.csv", delimiter=",", skiprows=1
    )
    # the same extractors and settings on the same video: the same features and values
    np.testing.assert_allclose(rows[: len(own), 2:4], own, atol=1e-6)


def test_runs_that_cannot_be_applied_are_refused(runs, tmp_path):
    run_dir = runs["abaw_va"]
    video = _test_videos(runs["data"], "VA")[0]

    def refused(rd: Path, match: str, **kw) -> None:
        with pytest.raises(RecipeError, match=match):
            predict_run(rd, [video], tmp_path / "o", **kw)

    res = run_cli("predict", str(run_dir), str(video), "-o", str(tmp_path / "o"), "--model", "x")
    assert res.returncode == 2 and "no model 'x'" in res.stderr and "decision_weights" in res.stderr
    failed = tmp_path / "failed"
    shutil.copytree(run_dir, failed)
    info = json.loads((failed / "run.json").read_text())
    (failed / "run.json").write_text(json.dumps({**info, "status": "failed", "error": "boom"}))
    refused(failed, r"the run failed \(boom\)")
    (failed / "run.json").write_text(json.dumps({**info, "status": "running"}))
    refused(failed, "did not finish.*--resume")
    (failed / "run.json").write_text(json.dumps(info))
    (failed / "predict.json").unlink()
    refused(failed, "no predict.json.*run the recipe again")
    refused(tmp_path, "not a recipe run directory")
    assert not (tmp_path / "o" / f"{video.stem}.csv").exists()


def test_render_with_a_run_draws_its_predictions(runs, tmp_path):
    run_dir = runs["abaw_va"]
    video = _test_videos(runs["data"], "VA")[0]
    store = _store_copy(runs, tmp_path)
    out = tmp_path / "overlay.mp4"
    res = run_cli(
        "render", str(video), "--store", str(store), "--run", str(run_dir), "--model", "audio",
        "-o", str(out), "-q", env=runs["env"],
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "va from predict/va" in res.stderr
    with av.open(str(out)) as c:
        assert c.streams.audio and sum(1 for _ in c.decode(video=0)) == _decoded_frames(video)
