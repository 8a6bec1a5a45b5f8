"""The core's recipe machinery: registry, config layers, --set checks, run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from emofeat.errors import ConfigError
from emofeat.recipes import Recipe, apply_sets, get_recipe, resolve_config, run_recipe

RECIPE_CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"

DEFAULTS = {
    "data": None,
    "seed": 0,
    "inputs": {"video": [], "audio": []},
    "model": {"type": "transformer", "layers": 3, "dropout": 0.1, "bidirectional": True},
    "free": {},
}


def _recipe(run=lambda ctx: {"ok": 1}, configs=None) -> Recipe:
    return Recipe("toy", "a toy", run, DEFAULTS, configs or {})


def test_builtin_recipes_are_registered():
    assert get_recipe("abaw_va").plugin == "recipes"
    assert get_recipe("abaw_expr").configs.keys() >= {"sun2024", "quick"}
    with pytest.raises(Exception, match="no recipe named 'nope'; installed: .*abaw_va"):
        get_recipe("nope")


def test_set_values_take_the_type_of_the_default():
    cfg = apply_sets(
        DEFAULTS,
        [
            "model.layers=6",
            "model.dropout=0",
            "model.bidirectional=false",
            "inputs.video=face_expr,face_cnn.embedding",
            "model.type=gru",
            "data=/x/y",
            "free.anything=3",
        ],
    )
    assert cfg["model"] == {"type": "gru", "layers": 6, "dropout": 0.0, "bidirectional": False}
    assert cfg["inputs"]["video"] == ["face_expr", "face_cnn.embedding"]
    assert cfg["data"] == "/x/y"
    assert cfg["free"] == {"anything": 3}
    assert DEFAULTS["model"]["layers"] == 3  # defaults untouched


@pytest.mark.parametrize(
    "item, message",
    [
        ("model.layer=6", "unknown config key 'model.layer' .*layers"),
        ("modle.layers=6", "unknown config key 'modle'"),
        ("model.layers=six", "expected an integer"),
        ("model.dropout=x", "expected a number"),
        ("model.bidirectional=maybe", "expected true or false"),
        ("model.layers", "expected KEY=VALUE"),
    ],
)
def test_bad_set_items_name_the_key(item, message):
    with pytest.raises(ConfigError, match=message):
        apply_sets(DEFAULTS, [item])


def test_layers_named_config_then_file_then_sets(tmp_path):
    named = {"model": {"layers": 1, "dropout": 0.3}}
    rec = _recipe(configs={"small": named})
    user = tmp_path / "my.yaml"
    user.write_text("model:\n  dropout: 0.2\n")
    assert resolve_config(rec, "small")["model"]["layers"] == 1
    cfg = resolve_config(rec, str(user), ["model.layers=4"], overrides={"data": "/d"})
    assert cfg["model"] == {**DEFAULTS["model"], "dropout": 0.2, "layers": 4}
    assert cfg["data"] == "/d"
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  depth: 2\n")
    with pytest.raises(ConfigError, match="unknown config key 'model.depth'"):
        resolve_config(rec, str(bad))
    with pytest.raises(ConfigError, match="neither a named config of toy .*small"):
        resolve_config(rec, "large")


def test_run_directory_holds_config_log_and_status(tmp_path):
    def run(ctx):
        ctx.log.info("hello from the recipe")
        (ctx.run_dir / "metrics.json").write_text(json.dumps({"score": 0.5}))
        return {"score": 0.5}

    run_dir, summary = run_recipe(_recipe(run), DEFAULTS, tmp_path / "runs", quiet=True)
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith("toy-")
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == DEFAULTS
    assert "hello from the recipe" in (run_dir / "run.log").read_text()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "done" and info["summary"] == {"score": 0.5}
    assert summary == {"score": 0.5}


def test_failing_recipe_keeps_its_directory_and_says_failed(tmp_path):
    def run(ctx):
        (ctx.run_dir / "partial.txt").write_text("kept")
        raise RuntimeError("out of cheese")

    with pytest.raises(RuntimeError, match="out of cheese"):
        run_recipe(_recipe(run), DEFAULTS, tmp_path, quiet=True)
    (run_dir,) = list(tmp_path.iterdir())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "out of cheese" in info["error"]
    assert (run_dir / "partial.txt").read_text() == "kept"
    assert "Traceback" in (run_dir / "run.log").read_text()


def test_cli_recipe_show_and_errors(tmp_path):
    res = run_cli("recipe", "show", "abaw_va", "--config", "quick", "--set", "model.layers=6")
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    quick = yaml.safe_load((RECIPE_CONFIGS / "quick.yaml").read_text())
    assert cfg["model"]["layers"] == 6  # --set wins over the named config
    assert cfg["train"]["epochs"] == quick["train"]["epochs"] != 100  # quick wins over defaults
    assert cfg["window"] == {"length": 30, "hop": 15, "unit": "frames"}
    res = run_cli("recipe", "show", "abaw_expr")
    assert yaml.safe_load(res.stdout)["window"]["length"] == 20
    res = run_cli("recipe", "run", "abaw_va", "--set", "model.depth=2")
    assert res.returncode == 2 and "unknown config key 'model.depth'" in res.stderr
    res = run_cli("recipe", "run", "abaw_va", "-o", str(tmp_path), "-q")
    assert res.returncode == 1 and "--data is required" in res.stderr
    res = run_cli("recipe", "list")
    assert "abaw_va" in res.stdout and "abaw_expr" in res.stdout


@pytest.mark.parametrize(
    "item, message",
    [
        ("window.unit=minutes", "window.unit='minutes': must be one of frames, seconds"),
        ("loss.name=focal", "loss.name='focal': must be one of ccc, rmse, mse"),
        ("normalise=pervideo", "normalise='pervideo'"),
        ("decision.methods=dirichlet,forest", "decision.methods: 'forest'"),
        ("min_coverage=1.5", "min_coverage=1.5"),
        ("functionals.stats=mean,kurt", "unknown statistic kurt"),
    ],
)
def test_abaw_config_is_checked_before_any_data_is_read(item, message, tmp_path):
    # --data does not even exist: the config error must come first
    res = run_cli(
        "recipe", "run", "abaw_va", "--data", str(tmp_path / "nowhere"), "--set", item,
        "-o", str(tmp_path / "runs"),
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert message in " ".join(res.stderr.split())
    assert not (tmp_path / "runs").exists()
