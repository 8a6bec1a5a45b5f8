"""Plugin system: entry-point discovery, the allow-list, a real third-party package, commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

import emofeat
from emofeat import plugins as plugin_mod
from emofeat.samples import write_audio

PLUGIN_SRC = REPO / "tests" / "plugins" / "emofeat-loudness"


@pytest.fixture(scope="module")
def third_party(tmp_path_factory) -> dict[str, str]:
    """pip-install the example third-party plugin into its own site folder.

    Installed with ``--target`` so it is visible only to processes given this PYTHONPATH:
    the rest of the suite keeps seeing only the built-in plugins.
    """
    site = tmp_path_factory.mktemp("site")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(PLUGIN_SRC),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert list(site.glob("emofeat_loudness-0.3.0.dist-info"))
    return {"PYTHONPATH": str(site)}


def test_builtins_come_through_the_entry_point_group():
    eps = {
        ep.name: ep.value
        for ep in __import__("importlib.metadata").metadata.entry_points(group="emofeat")
    }
    assert eps["opensmile"] == "emofeat_plugins.opensmile"
    assert eps["functionals"] == "emofeat_plugins.functionals"
    found = emofeat.get_extractors()
    assert {"egemaps", "compare", "functionals"} <= set(found)
    assert found["egemaps"].plugin == "opensmile"
    assert found["egemaps"].package == "emofeat"
    assert found["functionals"].cls.modality == "features"


def test_plugins_command_lists_licence_dims_rate():
    res = run_cli("plugins", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    rows = {r["name"]: r for r in data["extractors"]}
    eg = rows["egemaps"]
    assert eg["modality"] == "audio" and eg["package"] == "emofeat"
    assert {s["name"]: s["dims"] for s in eg["streams"]} == {"lld": 25, "functionals": 88}
    assert {s["name"]: s["rate"] for s in eg["streams"]}["lld"] == "100 Hz"
    assert "audEERING" in eg["license"]
    assert rows["compare"]["streams"][1]["dims"] == 6373
    hooks = {p["name"]: p["hooks"] for p in data["plugins"]}
    assert hooks["opensmile"] == ["register_extractors"]
    table = run_cli("plugins")
    assert "egemaps" in table.stdout and "functionals" in table.stdout


def test_allow_list_env_restricts_loading():
    only = run_cli("plugins", "--json", env={"EMOFEAT_LOAD_PLUGINS": "functionals"})
    names = {r["name"] for r in json.loads(only.stdout)["extractors"]}
    assert names == {"functionals"}
    none = run_cli("plugins", "--json", env={"EMOFEAT_LOAD_PLUGINS": ""})
    assert json.loads(none.stdout)["extractors"] == []
    res = run_cli("extract", "-p", "egemaps", "x.wav", env={"EMOFEAT_LOAD_PLUGINS": "functionals"})
    assert res.returncode == 2
    assert "no extractor named 'egemaps'" in res.stderr and "functionals" in res.stderr


def test_allow_list_in_process():
    plugin_mod._reset_for_tests()
    try:
        plugin_mod.load_plugins(load="opensmile")
        assert set(emofeat.get_extractors()) == {"egemaps", "compare"}
    finally:
        plugin_mod._reset_for_tests()
        plugin_mod.load_plugins()
    assert "functionals" in emofeat.get_extractors()


def test_third_party_plugin_discovered_and_runs_like_a_builtin(third_party, tmp_path):
    listing = run_cli("plugins", "--json", env=third_party)
    rows = {r["name"]: r for r in json.loads(listing.stdout)["extractors"]}
    assert rows["loudness"]["package"] == "emofeat-loudness"
    assert rows["loudness"]["version"] == "0.3.0"
    assert rows["loudness"]["license"] == "MIT (no model)"
    # a loud and a quiet file: the plugin's output must tell them apart
    import numpy as np

    t = np.arange(16000 * 2) / 16000
    loud = write_audio(
        tmp_path / "loud.wav", signal=(0.5 * np.sin(2 * np.pi * 220 * t)).astype("f4")
    )
    quiet = write_audio(
        tmp_path / "quiet.wav", signal=(0.005 * np.sin(2 * np.pi * 220 * t)).astype("f4")
    )
    out = tmp_path / "feats.h5"
    res = run_cli(
        "extract",
        "-p",
        "loudness",
        "-p",
        "functionals",
        "--set",
        "loudness.frame=0.1",
        "-o",
        str(out),
        str(loud),
        str(quiet),
        env=third_party,
    )
    assert res.returncode == 0, res.stderr
    store = emofeat.open_store(out)
    assert store.extractors("loud") == ["functionals", "loudness"]
    loud_db = store.read("loud", "loudness", "rms").data[:, 0]
    quiet_db = store.read("quiet", "loudness", "rms").data[:, 0]
    assert len(loud_db) == 20  # 2 s in 0.1 s frames
    # 0.5 amplitude sine: 20*log10(0.5/sqrt(2)) = -9.03 dBFS; 100x quieter: -40 dB lower
    np.testing.assert_allclose(np.median(loud_db), -9.03, atol=0.2)
    np.testing.assert_allclose(np.median(loud_db) - np.median(quiet_db), 40.0, atol=0.5)
    attrs = store.item_attrs("loud", "loudness")
    assert attrs["plugin_package"] == "emofeat-loudness" and attrs["plugin_version"] == "0.3.0"
    # the built-in functionals extractor summarised the third-party stream
    summary = store.read("loud", "functionals", "loudness.rms")
    assert "rms_dbfs_mean" in summary.labels
    # the plugin's own CLI command
    peak = run_cli("loudness-peak", str(out), "loud", env=third_party)
    assert peak.returncode == 0, peak.stderr
    assert peak.stdout.startswith("loud: peak -9.0")
    # without the package on the path, neither the extractor nor the command exists
    missing = run_cli("loudness-peak", str(out), "loud")
    assert missing.returncode == 2


def test_broken_plugin_is_reported_not_fatal(tmp_path):
    pkg = tmp_path / "src"
    (pkg).mkdir()
    (pkg / "emofeat_broken.py").write_text("raise ImportError('needs libfoo')\n")
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires=["setuptools>=64"]\nbuild-backend="setuptools.build_meta"\n'
        '[project]\nname="emofeat-broken"\nversion="1.0"\n'
        '[project.entry-points.emofeat]\nbroken="emofeat_broken"\n'
        '[tool.setuptools]\npy-modules=["emofeat_broken"]\n'
    )
    site = tmp_path / "site"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(pkg),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    listing = run_cli("plugins", "--json", env={"PYTHONPATH": str(site)})
    assert listing.returncode == 0
    data = json.loads(listing.stdout)
    assert "egemaps" in {r["name"] for r in data["extractors"]}
    assert data["errors"][0]["name"] == "broken" and "needs libfoo" in data["errors"][0]["error"]
    assert "plugin 'broken' (emofeat-broken) failed to load" in listing.stderr


def test_registered_class_is_validated():
    class NotAnExtractor:
        pass

    class Plugin:
        @emofeat.hookimpl
        def register_extractors(self, register):
            register(NotAnExtractor)

    plugin_mod.pm.register(Plugin(), name="bad-test-plugin")
    try:
        emofeat.get_extractors()
        errors = plugin_mod.load_errors()
        assert any(
            e.name == "bad-test-plugin" and "not an Extractor subclass" in e.error for e in errors
        )
    finally:
        plugin_mod.pm.unregister(name="bad-test-plugin")
        plugin_mod._state.errors.clear()


def test_env_not_leaking():
    assert "EMOFEAT_LOAD_PLUGINS" not in os.environ
    assert Path(PLUGIN_SRC / "emofeat_loudness.py").exists()


def test_a_constructor_usage_error_is_reported_once_before_any_input(third_party, tmp_path):
    """The plugin's constructor raises ConfigError: exit 2, one message, no input touched."""
    inputs = [write_audio(tmp_path / f"a{k}.wav", duration=1.0) for k in range(3)]
    out = tmp_path / "feats.h5"
    res = run_cli(
        "extract", "-p", "loudness", "--set", "loudness.floor=3", "-o", str(out),
        *map(str, inputs), env=third_party,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("must be below 0 dBFS") == 1, res.stderr
    assert not out.exists()  # nothing was opened, decoded or written


def test_unknown_allow_list_name_is_a_warning_naming_what_exists():
    res = run_cli("extract", "-p", "egemaps", "x.wav", env={"EMOFEAT_LOAD_PLUGINS": "opensmil"})
    assert res.returncode == 2
    assert "EMOFEAT_LOAD_PLUGINS names 'opensmil'" in res.stderr
    assert "opensmile" in res.stderr.split("entry points:")[1]
    assert "limits which plugins load" in " ".join(res.stderr.split())


def test_a_plugin_failure_keeps_its_traceback(third_party, tmp_path):
    """A plugin bug: the run says where it happened (--debug, and the run log keeps it)."""
    inputs = [write_audio(tmp_path / f"a{k}.wav", duration=1.0) for k in range(2)]
    out = tmp_path / "feats.h5"
    args = ["extract", "-p", "loudness", "--set", "loudness.fail=true", "-o", str(out)]
    res = run_cli(*args, *map(str, inputs), env=third_party)
    assert res.returncode == 1
    assert "--debug prints their tracebacks" in " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr
    res = run_cli(*args, "--debug", "--overwrite", *map(str, inputs), env=third_party)
    assert res.returncode == 1
    assert res.stderr.count("Traceback (most recent call last)") == 2, res.stderr
    assert "in _explode" in res.stderr and "emofeat_loudness.py" in res.stderr
    log = run_cli("inspect", str(out), "--log", env=third_party)
    assert "in _explode" in log.stdout and "loudness asked to fail at 0.0 s" in log.stdout


def test_plugins_listing_names_entry_points():
    res = run_cli("plugins")
    assert "[opensmile]" in res.stdout and "[faces]" in res.stdout
    rows = {r["name"]: r for r in json.loads(run_cli("plugins", "--json").stdout)["extractors"]}
    assert rows["egemaps"]["entry_point"] == "opensmile" and rows["egemaps"]["error"] == ""


def test_a_model_that_cannot_be_had_stops_the_run_once(tmp_path, monkeypatch):
    """PDEM without the licence opt-in: one usage error before any input, no store."""
    inputs = [write_audio(tmp_path / f"a{k}.wav", duration=1.0) for k in range(3)]
    out = tmp_path / "feats.h5"
    env = {"EMOFEAT_CACHE_DIR": str(tmp_path / "cache")}
    res = run_cli("extract", "-p", "pdem", *map(str, inputs), "-o", str(out), env=env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("--accept-license") == 1 and not out.exists()
    # the library raises it the same way
    from emofeat.models import LicenseNotAcceptedError

    monkeypatch.setenv("EMOFEAT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(LicenseNotAcceptedError):
        emofeat.extract(inputs, "pdem", out)
    assert not out.exists()


# -- one set of collection rules for every hook (emofeat.plugins.collect) ------------------


@pytest.fixture
def registered():
    """Register small plugin objects on the real plugin manager; unregister them after."""
    names: list[str] = []

    def add(plugin: object, name: str) -> None:
        plugin_mod.pm.register(plugin, name=name)
        names.append(name)

    yield add
    for name in names:
        plugin_mod.pm.unregister(name=name)
    plugin_mod._state.errors[:] = [e for e in plugin_mod.load_errors() if e.name not in names]


def _errors_of(plugin: str) -> list[str]:
    return [e.error for e in plugin_mod.load_errors() if e.name == plugin]


class _Registers:
    """A plugin whose ``register_<hook>`` implementation registers ``items`` (then raises
    ``fail``, when given)."""

    def __init__(self, hook: str, *items: object, fail: Exception | None = None) -> None:
        def impl(register):
            for item in items:
                register(item)
            if fail is not None:
                raise fail

        impl.__name__ = hook
        setattr(self, hook, emofeat.hookimpl(impl))


def _extractor(extractor_name: str) -> type:
    class Tiny(emofeat.Extractor):
        name = extractor_name
        modality = "features"

    return Tiny


def test_extractors_name_collision_first_wins_and_names_both_plugins(registered, capsys):
    first, second = _extractor("collide_ex"), _extractor("collide_ex")
    registered(_Registers("register_extractors", first), "collide-ex-a")
    registered(_Registers("register_extractors", second), "collide-ex-b")
    found = emofeat.get_extractors()
    # the plugin manager calls the last registered plugin first: its class wins
    assert found["collide_ex"].cls is second and found["collide_ex"].plugin == "collide-ex-b"
    assert "egemaps" in found
    assert _errors_of("collide-ex-a") == [
        "extractor 'collide_ex' ignored: already provided by 'collide-ex-b'"
    ]
    assert not _errors_of("collide-ex-b")
    err = capsys.readouterr().err
    assert "extractor 'collide_ex' from plugin 'collide-ex-a' ignored" in err
    # reported once per process, however often the extractors are listed
    emofeat.get_extractors()
    assert len(_errors_of("collide-ex-a")) == 1 and "collide_ex" not in capsys.readouterr().err


def test_extractors_raising_hook_is_reported_and_hides_no_other(registered, capsys):
    registered(_Registers("register_extractors", _extractor("fine_ex")), "fine-ex")
    broken = _Registers(
        "register_extractors", _extractor("half_ex"), fail=RuntimeError("needs libfoo")
    )
    registered(broken, "raising-ex")
    found = emofeat.get_extractors()
    assert {"fine_ex", "half_ex", "egemaps", "functionals"} <= set(found)
    assert _errors_of("raising-ex") == ["RuntimeError: needs libfoo"]
    assert "plugin 'raising-ex' failed to register extractors: needs libfoo" in (
        capsys.readouterr().err
    )


def test_recipes_follow_the_same_rules(registered):
    from emofeat.recipes import Recipe, get_recipes

    def recipe(name: str, description: str) -> Recipe:
        return Recipe(name=name, description=description, run=lambda ctx: {})

    registered(_Registers("register_recipes", recipe("collide_rc", "a")), "collide-rc-a")
    registered(_Registers("register_recipes", recipe("collide_rc", "b")), "collide-rc-b")
    registered(_Registers("register_recipes", fail=ValueError("bad config")), "raising-rc")
    registered(_Registers("register_recipes", "not a recipe"), "wrong-rc")
    found = get_recipes()
    assert found["collide_rc"].description == "b" and found["collide_rc"].plugin == "collide-rc-b"
    assert "abaw_va" in found  # the built-in recipes are unaffected
    assert _errors_of("collide-rc-a") == [
        "recipe 'collide_rc' ignored: already provided by 'collide-rc-b'"
    ]
    assert _errors_of("raising-rc") == ["ValueError: bad config"]
    assert "not a Recipe" in _errors_of("wrong-rc")[0]


def test_models_follow_the_same_rules(registered):
    from emofeat.models import Model, ModelFile, get_models

    def model(name: str, version: str) -> Model:
        return Model(name, version, (ModelFile("w.bin", "0" * 64, 1),), "MIT")

    registered(_Registers("register_models", model("collide-md", "1")), "collide-md-a")
    registered(_Registers("register_models", model("collide-md", "2")), "collide-md-b")
    registered(
        _Registers("register_models", model("kept-md", "1"), fail=OSError("disk")), "raising-md"
    )
    found = get_models(include_user=False)
    assert found["collide-md"].version == "2" and found["kept-md"].version == "1"
    assert {"mtcnn", "pdem"} <= set(found)
    assert _errors_of("collide-md-a") == [
        "model 'collide-md' ignored: already provided by 'collide-md-b'"
    ]
    assert _errors_of("raising-md") == ["OSError: disk"]


def test_commands_follow_the_same_rules(registered):
    import click
    from click.testing import CliRunner

    @click.group()
    def cli():
        pass

    @cli.command(name="builtin")
    def builtin():
        click.echo("core")

    @cli.group(name="tools")
    def tools():
        pass

    def command(name: str, text: str) -> click.Command:
        return click.Command(name, callback=lambda: click.echo(text))

    class Extends:
        @emofeat.hookimpl
        def register_commands(self, cli):
            cli.commands["tools"].add_command(command("extra", "extended"))
            cli.add_command(command("hello", "from a"))

    class Clashes:
        @emofeat.hookimpl
        def register_commands(self, cli):
            cli.add_command(command("hello", "from b"))
            cli.add_command(command("builtin", "replaced"))

    class Raises:
        @emofeat.hookimpl
        def register_commands(self, cli):
            cli.add_command(command("early", "kept"), name="early-bird")
            raise RuntimeError("half done")

    registered(Extends(), "cmd-a")
    registered(Clashes(), "cmd-b")
    registered(Raises(), "cmd-c")
    found = plugin_mod.add_plugin_commands(cli)
    assert found.plugins["hello"] == "cmd-b" and found.plugins["early-bird"] == "cmd-c"
    assert found.plugins["datasets"] == "recipes"  # the built-in plugins' commands too
    run = CliRunner().invoke
    assert run(cli, ["hello"]).output == "from b\n"
    assert run(cli, ["builtin"]).output == "core\n"
    assert run(cli, ["early-bird"]).output == "kept\n"
    assert run(cli, ["tools", "extra"]).output == "extended\n"
    assert {e.name: e.error for e in found.errors if e.name.startswith("cmd-")} == {
        "cmd-b": "command 'builtin' ignored: already provided by 'emofeat'",
        "cmd-a": "command 'hello' ignored: already provided by 'cmd-b'",
        "cmd-c": "RuntimeError: half done",
    }


def test_plugins_command_shows_model_and_recipe_collection_errors(registered):
    """``emofeat plugins`` collects models and recipes too: their collection errors (a hook
    that raises, a name registered twice) are listed with the extractors' and load errors."""
    import click
    from click.testing import CliRunner

    from emofeat.cli import cli
    from emofeat.models import Model, ModelFile

    registered(_Registers("register_recipes", fail=RuntimeError("needs libbar")), "raising-rc-cmd")
    model = Model("collide-md-cmd", "1", (ModelFile("w.bin", "0" * 64, 1),), "MIT")
    registered(_Registers("register_models", model), "collide-md-cmd-a")
    registered(_Registers("register_models", model), "collide-md-cmd-b")
    res = CliRunner().invoke(cli, ["plugins", "--json"])
    assert res.exit_code == 0, res.output
    errors = {e["name"]: e["error"] for e in json.loads(res.stdout)["errors"]}
    assert errors["raising-rc-cmd"] == "RuntimeError: needs libbar"
    assert errors["collide-md-cmd-a"] == (
        "model 'collide-md-cmd' ignored: already provided by 'collide-md-cmd-b'"
    )
    table = CliRunner().invoke(cli, ["plugins"])
    assert table.exit_code == 0, table.output
    shown = " ".join(click.unstyle(table.stderr).split())
    assert "plugin raising-rc-cmd () failed to load: RuntimeError: needs libbar" in shown
    assert "plugin collide-md-cmd-a () failed to load: model 'collide-md-cmd' ignored" in shown
