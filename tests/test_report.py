"""``emofeat report`` (issue 15): the store page and the run page, rendered in headless Chromium.

Real data: a synthetic Aff-Wild2 set extracted with the real face expression net (MTCNN +
face-api.js on the crops), eGeMAPS and Silero VAD on the video; a recipe run (quick config)
for the run page; an hour-long store written through the store's writing API for the size
limit. The browser (Debian's ``chromium`` driven through ``chromium-driver`` by Selenium) must
show no JavaScript error, draw the charts, and plot the values the store and the run's files
hold, downsampled as docs/report.md says (recomputed here frame by frame).
"""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

import emofeat
from emofeat import Rows, StreamSpec
from emofeat.media import FrameGrid
from emofeat.report import page_data, write_store_report
from emofeat.store import FeatureStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ABAW = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")

# --------------------------------------------------------------------------- helpers


def buckets(values: np.ndarray, valid: np.ndarray, k: int) -> dict[str, list[float]]:
    """docs/report.md's downsampling, written out frame by frame: per bucket of ``k`` frames
    the mean, min and max of the valid finite values, and the share of valid frames."""
    out: dict[str, list[float]] = {"mean": [], "min": [], "max": [], "valid": []}
    for b in range(0, len(values), k):
        v, m = values[b : b + k], valid[b : b + k]
        ok = [float(x) for x, good in zip(v, m, strict=True) if good and math.isfinite(x)]
        out["mean"].append(sum(ok) / len(ok) if ok else math.nan)
        out["min"].append(min(ok) if ok else math.nan)
        out["max"].append(max(ok) if ok else math.nan)
        out["valid"].append(float(np.count_nonzero(m)) / len(m))
    return out


def assert_plotted(got: list, expected: list[float], what: str, rtol: float = 2e-4) -> None:
    """``got`` (JSON numbers, null for a gap) equals ``expected`` (NaN for a gap)."""
    assert len(got) == len(expected), (what, len(got), len(expected))
    g = np.array([math.nan if v is None else v for v in got], dtype=float)
    e = np.asarray(expected, dtype=float)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(e), err_msg=what)
    np.testing.assert_allclose(g[~np.isnan(g)], e[~np.isnan(e)], rtol=rtol, atol=1e-6, err_msg=what)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's package) through chromium-driver, with the console and
    network logs on and every uncaught error recorded in ``window.__errors``."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.fail("apt-get install chromium chromium-driver (scripts/test.sh does this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1600"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.__errors = [];"
            "addEventListener('error', e => window.__errors.push(String(e.message)));"
            "addEventListener('unhandledrejection', e => window.__errors.push(String(e.reason)));"
        },
    )
    yield driver
    driver.quit()


def open_page(driver, path: Path) -> dict:
    """Load ``path`` from file://; assert no JavaScript error and no request leaving the
    file; return what the page plotted: ``{chart id: {kind, data, labels}}``."""
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get_log("performance")
    driver.get(path.resolve().as_uri())
    deadline = time.monotonic() + 15
    while not driver.execute_script(
        "return !!(window.emofeatReport && window.emofeatReport.ready)"
    ):
        assert time.monotonic() < deadline, "the page never finished drawing"
        time.sleep(0.05)
    errors = driver.execute_script("return window.__errors")
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors and not severe, (errors, severe)
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            url = msg["params"]["request"]["url"]
            assert url.startswith(("file:", "data:", "about:")), f"network request: {url}"
    return plotted(driver)


def plotted(driver) -> dict:
    rows = driver.execute_script(
        "return window.emofeatReport.plots.map(p => ({id: p.id, kind: p.kind, "
        "data: p.plot.data, labels: p.plot.series.map(s => s.label)}))"
    )
    return {r["id"]: r for r in rows}


def assert_offline_html(html: str) -> None:
    """Nothing in the page names a resource elsewhere, and the page forbids fetching."""
    assert "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"""url\(\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"@import", html)


# --------------------------------------------------------------------------- a real store


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> dict:
    """Two inputs of a synthetic Aff-Wild2 set: ``video1`` (its crop folder through the
    face expression net, its video through eGeMAPS LLDs and Silero VAD: one input key) and
    ``video4`` (eGeMAPS and VAD on the video)."""
    base = tmp_path_factory.mktemp("report_store")
    data = base / "aw2"
    res = run_cli("datasets", "synth", str(data), "--videos", "10", "--duration", "4", "-q")
    assert res.returncode == 0, res.stderr
    videos = {p.stem: p for p in (data / "videos").rglob("*") if p.suffix in (".mp4", ".avi")}
    store = base / "feats.h5"
    steps = [
        ["-p", "face_expr", str(data / "cropped_aligned" / "video1")],
        ["-p", "egemaps,vad", "--set", "egemaps.functionals=false",
         str(videos["video1"]), str(videos["video4"])],
    ]  # fmt: skip
    for step in steps:
        res = run_cli("extract", "-q", "--threads", "1", *step, "-o", str(store), timeout=600)
        assert res.returncode == 0, res.stderr
    return {"store": store, "base": base}


def test_store_page_plots_the_stores_values_in_chromium(real_store, browser, tmp_path):
    store_path = real_store["store"]
    page = tmp_path / "store.html"
    res = run_cli("report", str(store_path), "-o", str(page), "--max-points", "40")
    assert res.returncode == 0, res.stderr
    html = page.read_text()
    assert_offline_html(html)
    data = page_data(html)
    assert data["kind"] == "store" and [i["key"] for i in data["inputs"]] == ["video1", "video4"]
    store = emofeat.open_store(store_path)
    for index, inp in enumerate(data["inputs"]):
        if index:
            browser.execute_script(
                "const s = document.getElementById('input-select');"
                f"s.value = '{index}'; s.dispatchEvent(new Event('change'));"
            )
            shown = plotted(browser)
            assert not browser.execute_script("return window.__errors")
        else:
            shown = open_page(browser, page)
        key = inp["key"]
        kinds = {c["kind"] for c in inp["charts"]}
        # chosen by their column names: eGeMAPS loudness and F0, VAD; the crops' faces
        assert {"loudness", "pitch", "vad"} <= kinds, kinds
        if key == "video1":
            assert {"expression", "face"} <= kinds, kinds
            assert [h["id"] for h in inp["heatmaps"]] == ["face_expr.embedding:heatmap"]
        # one drawn chart per chart in the data, plus a coverage chart per frame grid
        n_cov = len(inp["grids"])
        assert len(shown) == len(inp["charts"]) + n_cov
        n_uplot = browser.execute_script("return document.querySelectorAll('#input .uplot').length")
        assert n_uplot == len(shown)
        n_canvas = browser.execute_script(
            "return document.querySelectorAll('#input .heatmap canvas').length"
        )
        assert n_canvas == len(inp["heatmaps"])
        for chart in inp["charts"]:
            sd = store.read(key, chart["extractor"], chart["stream"], aligned=True)
            grid = inp["grids"][chart["grid"]]
            n, k = len(sd.data), grid["k"]
            assert grid["frames"] == n and k == math.ceil(n / 40)
            drawn = shown[chart["id"]]
            assert_plotted(drawn["data"][0], list(sd.times[::k, 0]), f"{chart['id']} x")
            for j, series in enumerate(chart["series"]):
                what = f"{key} {chart['id']} {series['name']}"
                if "column" not in series:  # face presence: the share of valid frames
                    expected = buckets(np.zeros(n), sd.mask, k)["valid"]
                    assert_plotted(drawn["data"][1 + j], expected, what)
                    continue
                assert sd.labels[series["column"]] == series["name"]
                exp = buckets(sd.data[:, series["column"]], sd.mask, k)
                assert_plotted(drawn["data"][1 + j], exp["mean"], what)  # what is drawn
                assert_plotted(series["min"], exp["min"], what + " min")
                assert_plotted(series["max"], exp["max"], what + " max")
        for h in inp["heatmaps"]:
            sd = store.read(key, h["extractor"], h["stream"], aligned=True)
            check_heatmap(h, sd, inp["grids"][h["grid"]]["heat_k"])


def check_heatmap(h: dict, sd, kh: int) -> None:
    """The heatmap's bytes: the highest-variance columns' bucket means as z-scores."""
    valid = sd.mask[:, None] & np.isfinite(sd.data)
    x = np.where(valid, sd.data, np.nan).astype(np.float64)
    mean, sd_ = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
    top = sorted(np.argsort(-np.nan_to_num(sd_**2, nan=-1), kind="stable")[: len(h["columns"])])
    assert h["columns"] == [int(c) for c in top]
    q = np.frombuffer(base64.b64decode(h["data"]), np.uint8).reshape(len(top), h["buckets"])
    for r, c in enumerate(top[:8]):
        b = buckets(sd.data[:, c], sd.mask, kh)["mean"]
        z = [(v - mean[c]) / sd_[c] if not math.isnan(v) else math.nan for v in b]
        expected = [255 if math.isnan(v) else round((min(max(v, -3), 3) + 3) / 6 * 254) for v in z]
        assert np.abs(q[r].astype(int) - np.array(expected)).max() <= 1, (h["id"], c)


def test_damaged_item_is_listed_on_the_page_not_a_crash(real_store, browser, tmp_path):
    copy = tmp_path / "feats.h5"
    shutil.copy(real_store["store"], copy)
    shutil.copytree(f"{real_store['store']}.d", f"{copy}.d")
    store = emofeat.open_store(copy)
    ref = store.item_ref("video4", "vad")
    assert isinstance(ref, Path)
    with open(ref, "r+b") as fh:  # damage its end
        fh.seek(-64, 2)
        fh.write(b"\0" * 64)
    page = tmp_path / "damaged.html"
    res = run_cli("report", str(copy), "-o", str(page))
    assert res.returncode == 0, res.stderr
    assert "1 problem(s) listed on the page" in " ".join(res.stderr.split()), res.stderr
    data = page_data(page.read_text())
    (video4,) = [i for i in data["inputs"] if i["key"] == "video4"]
    (problem,) = video4["problems"]
    assert problem["extractor"] == "vad" and "checksum" in problem["message"]
    assert {c["kind"] for c in video4["charts"]} == {"loudness", "pitch"}  # the rest is shown
    open_page(browser, page)
    browser.execute_script(
        "const s = document.getElementById('input-select');"
        "s.value = '1'; s.dispatchEvent(new Event('change'));"
    )
    text = browser.execute_script("return document.querySelector('#input .problems').textContent")
    assert "vad" in text and "checksum" in text


def test_report_names_a_path_that_is_neither_store_nor_run(tmp_path):
    note = tmp_path / "notes.h5"
    note.write_text("not a store")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in (note, empty, tmp_path / "missing"):
        res = run_cli("report", str(path), "-o", str(tmp_path / "x.html"))
        assert res.returncode == 2, res.stderr
        assert str(path) in " ".join(res.stderr.split()), res.stderr
    assert not (tmp_path / "x.html").exists()


def test_unknown_input_is_a_usage_error(real_store, tmp_path):
    res = run_cli("report", str(real_store["store"]), "--input", "nope", "-o", str(tmp_path / "x"))
    assert res.returncode == 2 and "no input nope" in res.stderr and "video1" in res.stderr
    res = run_cli(
        "report", str(real_store["store"]), "--input", "video4", "-o", str(tmp_path / "y")
    )
    assert res.returncode == 0, res.stderr
    assert [i["key"] for i in page_data((tmp_path / "y").read_text())["inputs"]] == ["video4"]


# --------------------------------------------------------------------------- an hour


def _write_item(store: FeatureStore, key: str, ex: str, grid: FrameGrid, streams: dict) -> None:
    """One item through the store's writing API: ``streams`` maps a name to
    ``(labels, start times, end times, values, valid)``."""
    specs = [StreamSpec(name, labels) for name, (labels, *_rest) in streams.items()]
    writer = store.new_item(key, ex, specs)
    for name, (labels, start, end, values, valid) in streams.items():
        for a in range(0, len(start), 50_000):
            b = slice(a, a + 50_000)
            writer.append(Rows(name, values[b], start[b], end[b], valid[b]), tuple(labels))
    writer.finalize(grid, {"source": {"path": f"{key}.mp4"}, "media": {"kind": "video", "fps": 30}})
    store.commit([(key, ex, writer.path)], [])


def test_an_hour_of_video_gives_a_page_under_5_mb(tmp_path, browser):
    """An hour at 30 fps (108,000 frames): a prediction stream (valence, arousal; 8
    expression classes, masked where no face), a face box, VAD at 31.25 Hz, loudness and F0
    at 100 Hz and a 64-wide embedding."""
    rng = np.random.default_rng(0)
    n = 3600 * 30
    starts = np.arange(n) / 30
    grid = FrameGrid(starts, starts + 1 / 30, 30.0, "container")
    t = starts
    face = (np.sin(t / 37) > -0.7) & (rng.random(n) > 0.02)
    va = np.stack([np.sin(t / 50), np.cos(t / 80)], axis=1) + rng.normal(0, 0.1, (n, 2))
    logits = rng.normal(0, 1, (n, 8)) + 3 * np.sin(t[:, None] / 60 + np.arange(8))
    expr = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    box = rng.random((n, 17))
    ones = np.ones(n, bool)
    store_path = tmp_path / "hour.h5"
    with FeatureStore(store_path, mode="a") as store:
        _write_item(store, "hour", "predict", grid, {
            "va": (("valence", "arousal"), starts, starts + 1 / 30, va, face),
            "expr": (ABAW, starts, starts + 1 / 30, expr, face),
        })  # fmt: skip
        _write_item(store, "hour", "faces", grid, {
            "face": (("x1", "y1", "x2", "y2", "score", *[f"f{i}" for i in range(12)]),
                     starts, starts + 1 / 30, box, face),
        })  # fmt: skip
        emb = rng.normal(0, 1, (n, 64)).astype(np.float32) * np.linspace(0.1, 2, 64)
        _write_item(store, "hour", "face_cnn", grid, {
            "features": (tuple(f"f{i}" for i in range(64)), starts, starts + 1 / 30, emb, face)
        })  # fmt: skip
        m = 3600 * 100
        s100 = np.arange(m) / 100
        lld = np.stack([np.abs(np.sin(s100 / 3)), 30 + 5 * np.sin(s100 / 7)], axis=1)
        _write_item(store, "hour", "egemaps", grid, {
            "lld": (("Loudness_sma3", "F0semitoneFrom27.5Hz_sma3nz"), s100, s100 + 0.06, lld,
                    np.ones(m, bool)),
        })  # fmt: skip
        v = int(3600 * 31.25)
        sv = np.arange(v) * 0.032
        prob = (np.sin(sv / 11) > 0).astype(float)[:, None]
        _write_item(store, "hour", "vad", grid, {
            "probability": (("speech_probability",), sv, sv + 0.032, prob, np.ones(v, bool))
        })  # fmt: skip
        del ones
    page = tmp_path / "hour.html"
    t0 = time.perf_counter()
    write_store_report(store_path, page)
    seconds = time.perf_counter() - t0
    size = page.stat().st_size
    print(f"\nhour-long store: page {size / 1e6:.2f} MB written in {seconds:.1f} s")
    assert size < 5_000_000
    data = page_data(page.read_text())
    (inp,) = data["inputs"]
    assert inp["k"] == 54 and len(inp["grids"][0]["x"]) == 2000
    kinds = sorted(c["id"] for c in inp["charts"])
    assert kinds == [
        "egemaps.lld:loudness", "egemaps.lld:pitch", "faces.face:face", "predict.expr:expression",
        "predict.va:va", "vad.probability:vad",
    ]  # fmt: skip
    assert [h["id"] for h in inp["heatmaps"]] == ["face_cnn.features:heatmap"]
    (chart,) = [c for c in inp["charts"] if c["id"] == "predict.va:va"]
    exp = buckets(va[:, 0].astype(np.float32), face, 54)
    for what in ("mean", "min", "max"):
        assert_plotted(chart["series"][0][what], exp[what], f"valence {what}")
    shown = open_page(browser, page)
    assert_plotted(shown["predict.va:va"]["data"][1], exp["mean"], "valence drawn")
    assert len(shown) == len(inp["charts"]) + 1


# --------------------------------------------------------------------------- a run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """abaw_va and abaw_expr with the quick config on 12 synthetic videos of 8 s."""
    base = tmp_path_factory.mktemp("report_runs")
    data = base / "aw2"
    res = run_cli("datasets", "synth", str(data), "--videos", "12", "--duration", "8", "-q")
    assert res.returncode == 0, res.stderr
    out = base / "runs"
    dirs = {}
    for recipe in ("abaw_va", "abaw_expr"):
        res = run_cli(
            "recipe", "run", recipe, "--data", str(data), "-o", str(out), "--config", "quick",
            "--set", "train.epochs=6", "--set", "decision.methods=dirichlet", "-q", timeout=900,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        (dirs[recipe],) = [p for p in out.iterdir() if p.name.startswith(recipe)]
    return dirs


def _csv(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def test_va_run_page_in_chromium(runs, browser, tmp_path):
    from emofeat_recipes.metrics import ccc

    run_dir = runs["abaw_va"]
    page = tmp_path / "va.html"
    res = run_cli("report", str(run_dir), "-o", str(page), "--max-points", "50")
    assert res.returncode == 0, res.stderr
    html = page.read_text()
    assert_offline_html(html)
    data = page_data(html)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert data["task"] == "VA" and data["best"] == metrics["best"] and not data["problems"]
    assert {r["model"] for r in data["metrics"]} == set(metrics["models"])
    for row in data["metrics"]:
        assert row["smoothed.mean"] == metrics["models"][row["model"]]["smoothed"]["mean"]
    shown = open_page(browser, page)
    histories = sorted(p.parent.name for p in (run_dir / "models").glob("*/history.json"))
    assert sorted(i[len("curve:") :] for i in shown if i.startswith("curve:")) == histories
    for name in histories:
        hist = json.loads((run_dir / "models" / name / "history.json").read_text())
        curve = shown[f"curve:{name}"]
        assert curve["data"][0] == [e["epoch"] for e in hist]
        assert_plotted(curve["data"][1], [e["train_loss"] for e in hist], f"{name} loss")
    # predictions against labels of the best model, per validation track, with their CCC
    best = metrics["best"]
    tracks = sorted(p.stem for p in (run_dir / "labels" / "validation").glob("*.csv"))
    assert tracks and sorted({t["track"] for t in data["traces"]}) == tracks
    assert browser.execute_script("return document.querySelectorAll('#traces .uplot').length") == 2
    for track in tracks:
        lab = _csv(run_dir / "labels" / "validation" / f"{track}.csv")
        pred = _csv(run_dir / "predictions" / "validation" / best / f"{track}.csv")
        browser.execute_script(
            "const s = document.getElementById('trace-track');"
            f"s.value = '{track}'; s.dispatchEvent(new Event('change'));"
        )
        shown = plotted(browser)
        k = math.ceil(len(lab) / 50)
        ok = np.isfinite(lab).all(axis=1)
        for j, dim in enumerate(("valence", "arousal")):
            drawn = shown[f"trace:{best}:{track}:{dim}"]
            assert_plotted(drawn["data"][0], list(range(1, len(lab) + 1, k)), "frames")
            assert_plotted(drawn["data"][1], buckets(lab[:, j], ok, k)["mean"], f"{track} label")
            truth = buckets(pred[:, j], np.ones(len(pred), bool), k)["mean"]
            assert_plotted(drawn["data"][2], truth, f"{track} prediction", rtol=1e-3)
            (trace,) = [t for t in data["traces"] if t["track"] == track]
            assert trace["scores"][dim] == pytest.approx(ccc(pred[ok, j], lab[ok, j]), abs=1e-9)
            title = browser.execute_script(
                "return [...document.querySelectorAll('#traces .chart-title')]"
                ".map(e => e.textContent)"
            )
            assert f"{dim}: CCC {trace['scores'][dim]:.3f}" in title


def test_expr_run_page_confusion_and_f1_in_chromium(runs, browser, tmp_path):
    run_dir = runs["abaw_expr"]
    page = tmp_path / "expr.html"
    res = run_cli("report", str(run_dir), "-o", str(page))
    assert res.returncode == 0, res.stderr
    data = page_data(page.read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert data["task"] == "EXPR" and list(data["classes"]) == list(ABAW)
    shown = open_page(browser, page)
    best = metrics["best"]
    cm = np.zeros((8, 8), np.int64)
    for lab_path in (run_dir / "labels" / "validation").glob("*.csv"):
        y = _csv(lab_path)[:, 0].astype(int)
        c = _csv(run_dir / "predictions" / "validation" / best / lab_path.name)[:, 0].astype(int)
        for yi, ci in zip(y, c, strict=True):
            if yi >= 0:
                cm[yi, ci] += 1
    assert data["confusion"][best] == cm.tolist()
    # per-class F1 from the predictions equals the recipe's (metrics.json, smoothed)
    np.testing.assert_allclose(
        data["f1_from_predictions"][best], metrics["models"][best]["smoothed"]["per_class"]
    )
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#confusion table.cm tr')].slice(1)"
        ".map(r => [...r.querySelectorAll('td')].slice(0, 8).map(td => +td.textContent))"
    )
    assert cells == cm.tolist()
    assert any(i.startswith(f"trace:{best}:") for i in shown)
    assert browser.execute_script("return document.querySelectorAll('table.per-class tr').length")
