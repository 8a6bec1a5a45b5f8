"""A plugin written from docs/plugins.md alone, installed as a real package, gets every promise.

The example package ``tests/plugins/emofeat-loudness`` (extractors ``loudness`` and
``arousal``, the non-commercial model ``loudness-arousal``, the command ``loudness-peak``) is
pip-installed into a site folder of its own, then used through the command line (a
subprocess given that folder on ``PYTHONPATH``) and through the Python API (the folder on
``sys.path`` for this module's in-process tests). Also here: every runnable code block of
docs/plugins.md runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, run_cli

import emofeat
from emofeat import plugins as plugin_mod
from emofeat.models import LicenseNotAcceptedError, ModelCache, get_model
from emofeat.samples import write_audio
from emofeat.testing import check_extractor

PLUGIN_SRC = REPO / "tests" / "plugins" / "emofeat-loudness"
DOC = REPO / "docs" / "plugins.md"


def pip_install(src: Path, site: Path) -> None:
    """``pip install --target site src`` (no dependencies, no build isolation: offline)."""
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(site), str(src)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    pip_install(PLUGIN_SRC, site)
    assert list(site.glob("emofeat_loudness-0.3.0.dist-info"))
    return site


@pytest.fixture(scope="module")
def env(site, tmp_path_factory) -> dict[str, str]:
    """The environment of CLI runs: the package on the path, an empty model cache."""
    return {"PYTHONPATH": str(site), "EMOFEAT_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="module")
def installed(site):
    """The package importable in this process and loaded through its entry point."""
    saved = sys.modules.pop("emofeat_loudness", None)  # test_contract imports the source
    sys.path.insert(0, str(site))
    plugin_mod._reset_for_tests()
    plugin_mod.load_plugins()
    yield site
    sys.path.remove(str(site))
    sys.modules.pop("emofeat_loudness", None)
    if saved is not None:
        sys.modules["emofeat_loudness"] = saved
    plugin_mod._reset_for_tests()
    plugin_mod.load_plugins()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    """Three short inputs and a file that is no media at all (decoding it would fail)."""
    d = tmp_path_factory.mktemp("inputs")
    files = [write_audio(d / f"a{k}.wav", duration=1.0) for k in range(3)]
    (d / "broken.mp4").write_bytes(b"not a video")
    return [*files, d / "broken.mp4"]


# -- the documentation ---------------------------------------------------------------------


def doc_blocks(text: str) -> list[str]:
    """The ```python blocks that follow a ``<!-- test -->`` line, in order."""
    return re.findall(r"<!-- test -->\s*\n```python\n(.*?)\n```", text, flags=re.S)


def test_runnable_blocks_of_the_plugin_docs_run(tmp_path):
    blocks = doc_blocks(DOC.read_text())
    assert len(blocks) >= 4, "docs/plugins.md lost its runnable blocks"
    script = tmp_path / "doc_blocks.py"
    script.write_text("\n\n".join(blocks) + "\n")
    work = tmp_path / "work"
    work.mkdir()
    res = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=work, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "loudness {'rms'" in res.stdout and "brightness {'level'" in res.stdout


def test_the_docs_name_every_hook_and_contract_member():
    from emofeat import hookspecs

    text = DOC.read_text()
    hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert len(hooks) >= 4
    for name in hooks:
        assert f"`{name}(" in text, f"hook {name} is not documented"
    for member in (
        "name", "version", "modality", "license", "description", "settings", "sampling_rate",
        "commercial_use", "requires", "check_config", "prepare", "streams", "model", "begin",
        "process", "end", "sources", "process_stored",
    ):  # fmt: skip
        assert f"`{member}" in text, f"Extractor.{member} is not documented"
    types = ("MediaInfo", "AudioChunk", "VideoChunk", "Rows", "StreamSpec", "Setting",
             "ModelInfo", "FrameGrid", "StoredInput", "SkipExtractor", "ConfigError")  # fmt: skip
    for public in types:
        assert hasattr(emofeat, public) and f"emofeat.{public}" in text, public
    for fact in ("EMOFEAT_LOAD_PLUGINS", "emofeat plugins", "--debug", "inspect STORE --log",
                 "chunk.upstream", "emofeat models accept", "emofeat.testing"):  # fmt: skip
        assert fact in text, fact


# -- discovery -----------------------------------------------------------------------------


def test_listing_names_entry_point_package_models_and_construction_errors(env, tmp_path, site):
    env = {**env, "EMOFEAT_LOAD_PLUGINS": "loudness,needsconfig"}  # only these: faster
    data = json.loads(run_cli("plugins", "--json", env=env).stdout)
    rows = {r["name"]: r for r in data["extractors"]}
    for name in ("loudness", "arousal"):
        assert rows[name]["entry_point"] == "loudness", rows[name]
        assert rows[name]["package"] == "emofeat-loudness" and rows[name]["version"] == "0.3.0"
        assert rows[name]["error"] == ""
    assert rows["arousal"]["commercial_use"] is False and rows["arousal"]["modality"] == "features"
    assert rows["loudness"]["settings"]["calibration"]["default"] == ""
    hooks = {p["name"]: p["hooks"] for p in data["plugins"]}
    assert hooks["loudness"] == ["register_commands", "register_extractors", "register_models"]
    models = json.loads(run_cli("models", "list", "--json", env=env).stdout)["models"]
    arousal = {m["name"]: m for m in models}["loudness-arousal"]
    assert arousal["license"] == "CC-BY-NC-4.0" and arousal["commercial_use"] is False

    # a second package whose extractor cannot be created with its defaults
    pkg = tmp_path / "emofeat-needsconfig"
    pkg.mkdir()
    (pkg / "emofeat_needsconfig.py").write_text(textwrap.dedent('''
        import emofeat

        class NeedsConfig(emofeat.Extractor):
            name = "needs_config"
            license = "MIT"
            description = "cannot run without a value"
            settings = {"model": emofeat.Setting("", "path of the model (required)")}

            def __init__(self, config=None, device="cpu"):
                super().__init__(config, device)
                if not self.config["model"]:
                    raise emofeat.ConfigError("needs_config.model is required")

            def streams(self):
                return [emofeat.StreamSpec("x", ("x",))]

        @emofeat.hookimpl
        def register_extractors(register):
            register(NeedsConfig)
    '''))  # fmt: skip
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires=["setuptools>=64"]\nbuild-backend="setuptools.build_meta"\n'
        '[project]\nname="emofeat-needsconfig"\nversion="1.0"\n'
        '[project.entry-points.emofeat]\nneedsconfig="emofeat_needsconfig"\n'
        '[tool.setuptools]\npy-modules=["emofeat_needsconfig"]\n'
    )
    other = tmp_path / "site2"
    pip_install(pkg, other)
    both = {**env, "PYTHONPATH": f"{other}:{site}"}
    res = run_cli("plugins", env=both)
    assert res.returncode == 0, res.stderr
    flat = " ".join(res.stdout.split())
    # the table wraps long cells: the row's words, in order
    assert re.search(r"needs_config .*cannot be created with its .*defaults: ConfigError", flat)
    assert "[needsconfig]" in flat and "emofeat-loudness 0.3.0 [loudness]" in flat
    row = {r["name"]: r for r in json.loads(run_cli("plugins", "--json", env=both).stdout)[
        "extractors"]}["needs_config"]  # fmt: skip
    assert row["error"] == "ConfigError: needs_config.model is required"
    assert row["entry_point"] == "needsconfig" and row["streams"] == []


def test_allow_list_by_package_name_and_unknown_names(env):
    only = run_cli("plugins", "--json", env={**env, "EMOFEAT_LOAD_PLUGINS": "emofeat-loudness"})
    assert {r["name"] for r in json.loads(only.stdout)["extractors"]} == {"loudness", "arousal"}
    res = run_cli("plugins", "--json", env={**env, "EMOFEAT_LOAD_PLUGINS": "emofeat-loudnes"})
    assert res.returncode == 0
    warning = " ".join(res.stderr.split())
    assert "EMOFEAT_LOAD_PLUGINS names 'emofeat-loudnes'" in warning
    assert "loudness" in warning.split("entry points:")[1]
    assert "emofeat-loudness" in warning.split("packages:")[1]
    assert json.loads(res.stdout)["extractors"] == []


# -- usage errors: once, before any input ------------------------------------------------


USAGE_ERRORS = [
    (["-p", "loudness", "--set", "loudness.nosuch=1"], "unknown setting loudness.nosuch"),
    (["-p", "loudness", "--set", "loudness.frame=long"], "loudness.frame"),
    (["-p", "loudness", "--set", "loudness.frame=true"], "loudness.frame"),  # strict
    (["-p", "loudness", "--set", "loudness.floor=3"], "must be below 0 dBFS"),  # __init__
    (["-p", "loudness", "--set", "loudness.calibration=/no/such/gain.txt"],
     "loudness.calibration=/no/such/gain.txt"),  # prepare()
    (["-p", "loudness", "-p", "arousal"], "emofeat models accept loudness-arousal"),  # licence
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    USAGE_ERRORS,
    ids=["unknown-setting", "bad-value", "bool-for-float", "constructor", "prepare", "licence"],
)
def test_cli_usage_error_is_reported_once_before_any_input(env, inputs, tmp_path, args, message):
    out = tmp_path / "feats.h5"
    res = run_cli("extract", *args, "-o", str(out), *map(str, inputs), env=env)
    assert res.returncode == 2, res.stderr
    err = " ".join(res.stderr.split())
    assert err.count(message) == 1, res.stderr
    assert "Traceback" not in res.stderr
    # no input was looked at: the unreadable one would have been reported
    assert "broken" not in err and "not a media file" not in err
    assert not out.exists() and not Path(str(out) + ".d").exists()


def test_api_raises_the_same_usage_errors_before_any_input(installed, inputs, tmp_path):
    out = tmp_path / "feats.h5"
    cases = [
        ({"loudness": {"nosuch": 1}}, emofeat.ConfigError, "unknown setting loudness.nosuch"),
        ({"loudness": {"frame": True}}, emofeat.ConfigError, "loudness.frame"),
        (["loudness.frame=true"], emofeat.ConfigError, "loudness.frame"),
        ({"loudness": {"floor": 3.0}}, emofeat.ConfigError, "must be below 0 dBFS"),
        ({"loudness": {"calibration": "/no/such"}}, emofeat.ConfigError, "calibration"),
    ]
    for settings, error, message in cases:
        with pytest.raises(error, match=message):
            emofeat.extract(inputs, "loudness", out, settings)
        assert not out.exists()
    empty = ModelCache(tmp_path / "empty-cache")
    with pytest.raises(LicenseNotAcceptedError, match="loudness-arousal"):
        emofeat.extract(inputs, ["loudness", "arousal"], out,
                        {"arousal": {"cache_dir": str(empty.root)}})  # fmt: skip
    assert not out.exists()


# -- the licence opt-in, stored features, provenance ---------------------------------------


def test_licence_opt_in_then_stored_feature_extractor_runs(env, inputs, tmp_path):
    out = tmp_path / "feats.h5"
    accepted = run_cli("models", "accept", "loudness-arousal", env=env)
    assert accepted.returncode == 0, accepted.stderr
    try:
        res = run_cli("extract", "-q", "-p", "loudness", "-p", "arousal", "-o", str(out),
                      *map(str, inputs[:2]), env=env)  # fmt: skip
        assert res.returncode == 0, res.stderr
    finally:  # other tests of this module expect the opt-in not given
        licences = Path(env["EMOFEAT_CACHE_DIR"]) / "licenses.json"
        licences.unlink()
    store = emofeat.open_store(out)
    attrs = store.item_attrs("a0", "arousal")
    assert attrs["commercial_use"] is False and attrs["license"] == "CC-BY-NC-4.0"
    assert attrs["model_id"] == "loudness-arousal@1" and len(attrs["model_sha256"]) == 64
    assert attrs["plugin"] == "loudness" and attrs["plugin_package"] == "emofeat-loudness"
    assert attrs["source_items"]["loudness"] == store.item_attrs("a0", "loudness")["item_id"]
    arousal = store.read("a0", "arousal", "arousal", aligned=True)
    assert arousal.mask.any() and ((arousal.data[arousal.mask] > 0) & (arousal.data[
        arousal.mask] < 1)).all()  # fmt: skip
    assert store.item_attrs("a0", "loudness")["commercial_use"] is True


# -- a plugin bug: where it happened -------------------------------------------------------


def test_plugin_exception_traceback_through_the_api_and_the_run_log(installed, inputs, tmp_path):
    out = tmp_path / "feats.h5"
    summary = emofeat.extract(inputs[:2], "loudness", out, ["loudness.fail=true"])
    assert summary.failed
    outcomes = [o for r in summary.results for o in r.outcomes]
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert all("in _explode" in o.traceback and "emofeat_loudness.py" in o.traceback
               for o in outcomes)  # fmt: skip
    log = emofeat.open_store(out).run_log()
    items = log[log["event"] == "item"]
    assert items["traceback"].str.contains("in _explode").all()
    shown = run_cli("inspect", str(out), "--log")
    assert "in _explode" in shown.stdout and "loudness asked to fail at 0.0 s" in shown.stdout


# -- the testing helper on the installed package -------------------------------------------


def test_check_extractor_on_the_installed_package(installed, tmp_path):
    report = check_extractor("loudness", {"loudness": {"frame": 0.1}})
    assert report.attrs["plugin_package"] == "emofeat-loudness"
    assert report.attrs["plugin_version"] == "0.3.0"
    cache = ModelCache(tmp_path / "cache")
    cache.accept(get_model("loudness-arousal"))
    report = check_extractor(
        "arousal", {"arousal": {"cache_dir": str(cache.root)}}, before=["loudness"]
    )
    assert report.attrs["commercial_use"] is False and report.streams["arousal"].coverage > 0.9


def test_workers_prepare_their_own_instances(env, inputs, tmp_path):
    """prepare() runs in each worker too (-j 2): the calibration it reads is applied."""
    gain = tmp_path / "gain.txt"
    gain.write_text("6.0\n")
    outs = {}
    for label, extra in (("plain", []), ("calibrated", ["--set", f"loudness.calibration={gain}"])):
        outs[label] = tmp_path / f"{label}.h5"
        res = run_cli("extract", "-q", "-j", "2", "-p", "loudness", *extra, "-o",
                      str(outs[label]), *map(str, inputs[:2]), env=env)  # fmt: skip
        assert res.returncode == 0, res.stderr
    for key in ("a0", "a1"):
        plain = emofeat.open_store(outs["plain"]).read(key, "loudness", "rms").data
        calibrated = emofeat.open_store(outs["calibrated"]).read(key, "loudness", "rms").data
        assert abs(float((calibrated - plain).mean()) - 6.0) < 1e-4
