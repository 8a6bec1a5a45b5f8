"""One settings grammar for extractor settings and recipe configs; typed recipe configs
checked completely when resolved; the run log and the seeding helpers."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from emofeat.api import build_jobs
from emofeat.errors import ConfigError
from emofeat.recipes import (
    ConfigSchema,
    Recipe,
    RecipeConfig,
    RecipeError,
    get_recipe,
    get_recipes,
    resolve_config,
    run_log,
    run_recipe,
)
from emofeat.settings import NUMBER, Key, SetText, coerce, load_yaml, parse_value

# -- the grammar ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, value",
    [
        ("2", None, 2),
        ("2.5", None, 2.5),
        ("true", None, True),
        ("off", None, False),
        ("~", None, None),
        ("null", int, None),
        ("", None, ""),
        ("  ", float, ""),
        ("a,b", None, "a,b"),
        ("1,3,5", list, [1, 3, 5]),
        ("mean, std", list, ["mean", "std"]),
        ("[1, 2]", list, [1, 2]),
        ("{a: 1}", None, {"a": 1}),
        ("/data/2024", str, "/data/2024"),
        ("1e3", str, "1e3"),
        ("yes", str, "yes"),
        ("2024-01-01", None, "2024-01-01"),  # no dates: the text
        ("a: [", None, "a: ["),  # not YAML: the text
    ],
)
def test_parse_value(text, kind, value):
    assert parse_value(text, kind) == value
    assert type(parse_value(text, kind)) is type(value)


@pytest.mark.parametrize(
    "value, key, expected",
    [
        (2, Key(float), 2.0),
        (2.0, Key(int), 2),
        (True, Key(bool), True),
        ("1,3,5", Key(list, item=int), [1, 3, 5]),
        ("a,b", Key(list, item=str), ["a", "b"]),
        (7, Key(list, item=int), [7]),
        ((0.5, 1), Key(list, item=float), [0.5, 1.0]),
        (None, Key(str, default="", nullable=False), ""),  # unset: the default
        (None, Key(float, default=0.5), 0.5),
        (None, Key(str, nullable=True), None),
        (3, Key(NUMBER), 3),
        (2.5, Key(NUMBER), 2.5),
        (SetText("1,3,5"), Key(list, item=int), [1, 3, 5]),
        (SetText("/x/2024"), Key(str), "/x/2024"),
    ],
)
def test_coerce_converts(value, key, expected):
    got = coerce(value, key, "k")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "value, key, message",
    [
        (True, Key(float), "k=True: expected a number"),
        (False, Key(int), "k=False: expected an integer"),
        ("2", Key(float), "k='2': expected a number"),
        (2.5, Key(int), "k=2.5: expected an integer"),
        (1, Key(bool), "k=1: expected true or false"),
        (3, Key(str), "k=3: expected a string"),
        ("x", Key(str, choices=("a", "b")), "k='x': must be one of a, b"),
        ("a,x", Key(list, item=str, choices=("a", "b")), "k: 'x' is not one of a, b"),
        ("1,x", Key(list, item=int), r"k\[1\]='x': expected an integer"),
        (0, Key(float, gt=0), "k=0: must be > 0"),
        (1.5, Key(float, ge=0, le=1), "k=1.5: must be between 0 and 1"),
        ([1], Key(dict), "k=\\[1\\]: expected a mapping"),
    ],
)
def test_coerce_is_strict_and_names_the_key(value, key, message):
    with pytest.raises(ConfigError, match=message):
        coerce(value, key, "k")


def test_load_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_yaml(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match="list.yaml: config file must be a mapping"):
        load_yaml(listed)
    with pytest.raises(ConfigError, match="nothere.yaml: cannot read"):
        load_yaml(tmp_path / "nothere.yaml")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert load_yaml(tmp_path / "empty.yaml") == {}


def test_extractors_and_recipes_read_values_alike(tmp_path):
    # the same text gives the same value on both sides
    (pdem,) = [j for j in build_jobs(["pdem"], ["pdem.layers=1,3,5"]) if j.name == "pdem"]
    cfg = resolve_config(get_recipe("abaw_va"), sets=["smoothing.windows=1,3,5"])
    assert pdem.config["layers"] == cfg["smoothing"]["windows"] == [1, 3, 5]
    (faces,) = [j for j in build_jobs(["faces"], ["faces.thresholds=0.5,0.6,0.7"])]
    assert faces.config["thresholds"] == [0.5, 0.6, 0.7]
    # ~ unsets: the default ('' for a string setting), null where the default is null
    (egemaps,) = build_jobs(["egemaps"], ["egemaps.mask=~", "egemaps.win=~"])
    assert egemaps.config["mask"] == "" and egemaps.config["win"] == 4.0
    audio = resolve_config(get_recipe("audio_finetune"), sets=["gate.stream=~", "unfreeze=~"])
    assert audio["gate"]["stream"] == "" and audio["unfreeze"] is None
    # strict on both sides: a bool is not a number
    with pytest.raises(ConfigError, match="egemaps.win=True: expected a number"):
        build_jobs(["egemaps"], ["egemaps.win=true"])
    with pytest.raises(ConfigError, match="fps=True: expected a number"):
        resolve_config(get_recipe("abaw_va"), sets=["fps=true"])
    # an extractor YAML file goes through the same loader and checks
    settings = tmp_path / "s.yaml"
    settings.write_text("egemaps:\n  win: yes\n")
    with pytest.raises(ConfigError, match="egemaps.win=True: expected a number"):
        build_jobs(["egemaps"], [], str(settings))


# -- the typed recipe config ------------------------------------------------------------------


def test_every_shipped_config_validates():
    for recipe in get_recipes().values():
        for named in (None, *recipe.configs):
            cfg = resolve_config(recipe, named)
            assert isinstance(cfg, RecipeConfig)
            assert recipe.config_schema().check(cfg) == cfg  # checking again changes nothing


def test_recipe_config_is_a_mapping_with_attributes():
    cfg = resolve_config(get_recipe("abaw_va"), "sun2024", ["features=a.h5,b.h5"])
    assert cfg.train.lr == cfg["train"]["lr"] == 0.0001
    assert cfg.get_path("model.layers") == 3 and cfg.get_path("model.nope", None) is None
    assert cfg.features == ["a.h5", "b.h5"] and cfg.data is None
    assert isinstance(cfg.extract.settings, dict)  # an open section: a plain mapping
    assert isinstance(cfg, dict) and {**cfg["train"]}["epochs"] == 100
    with pytest.raises(AttributeError, match="no key 'nope'"):
        _ = cfg.nope
    plain = cfg.to_dict()
    assert type(plain) is dict and type(plain["train"]) is dict
    assert yaml.safe_load(yaml.safe_dump(cfg, sort_keys=False)) == plain
    assert json.loads(json.dumps(cfg)) == plain


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"window": {"unit": "minutes"}}, "window.unit='minutes': must be one of frames, seconds"),
        ({"loss": {"name": "focal"}}, "loss.name='focal': must be one of ccc, rmse, mse"),
        ({"model": {"type": "lstm"}}, "model.type='lstm': must be one of transformer, gru"),
        ({"normalise": "minmax"}, "normalise='minmax': must be one of per_video_minmax"),
        ({"train": {"lr": True}}, "train.lr=True: expected a number"),
        ({"train": {"epochs": 2.5}}, "train.epochs=2.5: expected an integer"),
        ({"model": 3}, "model=3: expected a mapping"),
        ({"window": {"length": 2.5}}, "window.length=2.5: must be a whole number of frames"),
        ({"inputs": {"video": [1]}}, r"inputs.video\[0\]=1: expected a string"),
        ({"data": 5}, "data=5: expected a string"),
    ],
)
def test_a_yaml_layer_is_checked_like_set_items(layer, message, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(layer))
    with pytest.raises(ConfigError, match=message):
        resolve_config(get_recipe("abaw_va"), str(path))


def test_seconds_windows_may_be_fractional():
    cfg = resolve_config(
        get_recipe("abaw_va"), sets=["window.unit=seconds", "window.length=2.5", "window.hop=1"]
    )
    assert cfg.window == {"length": 2.5, "hop": 1, "unit": "seconds"}


def test_schema_declarations_must_name_real_keys():
    rec = Recipe("toy", "", lambda ctx: {}, {"a": 1}, schema={"b": Key(gt=0)})
    with pytest.raises(ConfigError, match="schema key 'b' is not among the defaults' keys"):
        rec.config_schema()
    schema = ConfigSchema.build({"a": 1, "s": {"x": None}}, {"s.x": Key(type=float, gt=0)})
    assert schema.check({"a": 2, "s": {"x": None}}) == {"a": 2, "s": {"x": None}}
    with pytest.raises(ConfigError, match="s.x='1': expected a number > 0 or null"):
        schema.check({"a": 2, "s": {"x": "1"}})


def test_run_recipe_checks_a_plain_mapping(tmp_path):
    rec = Recipe("toy", "", lambda ctx: {"lr": ctx.config.train.lr}, {"train": {"lr": 0.1}})
    _, summary = run_recipe(rec, {"train": {"lr": 1}}, tmp_path, quiet=True)
    assert summary == {"lr": 1.0}
    with pytest.raises(ConfigError, match="train.lr='x'"):
        run_recipe(rec, {"train": {"lr": "x"}}, tmp_path / "no", quiet=True)
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    "item, message",
    [
        ("window.unit=minutes", "window.unit='minutes': must be one of frames, seconds"),
        ("loss.name=focal", "loss.name='focal': must be one of ccc, rmse, mse"),
    ],
)
def test_bad_config_fails_before_the_data_is_read(item, message, tmp_path, monkeypatch):
    """A real (empty) data folder: the config error comes first, exit 2, nothing read."""
    import emofeat_recipes.abaw as abaw
    from emofeat.cli import cli

    opened = []

    def reader(root, *a, **kw):
        opened.append(root)
        raise RecipeError(f"{root}: the data was read")

    monkeypatch.setattr(abaw, "AffWild2", reader)
    data = tmp_path / "data"
    data.mkdir()
    args = ["recipe", "run", "abaw_va", "--data", str(data), "-o", str(tmp_path / "runs"), "-q"]
    res = CliRunner().invoke(cli, [*args, "--set", item])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert opened == [] and not (tmp_path / "runs").exists()
    res = CliRunner().invoke(cli, args)  # the same run with a good config reads the data
    assert res.exit_code == 1 and opened == [str(data)]


# -- the run log and seeding helpers -------------------------------------------------------------


def test_run_log_takes_the_recipe_package_loggers_and_lets_go(tmp_path):
    pkg = logging.getLogger("toy_recipes_pkg")
    with run_log(tmp_path, quiet=True, packages=("toy_recipes_pkg",)) as log:
        log.info("from the run")
        logging.getLogger("toy_recipes_pkg.train").info("from the training loop")
    logging.getLogger("toy_recipes_pkg.train").info("after the run")
    text = (tmp_path / "run.log").read_text()
    assert "from the run" in text and "from the training loop" in text
    assert "after the run" not in text
    assert not pkg.handlers and not log.handlers


def test_make_loader_seeds_sampling_and_workers():
    import torch

    from emofeat_recipes.train import TrainConfig, make_loader

    ds = torch.utils.data.TensorDataset(torch.arange(40))
    cfg = TrainConfig(batch_size=8, seed=3, epochs=1)
    weights = np.r_[np.zeros(20), np.ones(20)]

    def draw():
        loader = make_loader(ds, cfg, sample_weights=weights, persistent_workers=False)
        return torch.cat([b[0] for b in loader]).tolist()

    first = draw()
    assert first == draw() and len(first) == 40 and min(first) >= 20
