"""Recipes: registered training pipelines that read the store and write a run directory.

A recipe is a default config (YAML) plus code. Plugins register them through the
``register_recipes`` hook (the built-in ABAW recipes live in the ``emofeat_recipes`` package
and register the same way a third-party package would). The core owns what every recipe
needs and must behave the same for all of them:

* configuration: the recipe's defaults, then a named config (``--config sun2024``) or a
  YAML file, then ``--set dotted.key=value`` overrides, read with the one settings grammar
  (:mod:`emofeat.settings`) and checked COMPLETELY against the recipe's schema when the
  config is resolved, before the recipe reads any data: unknown keys, wrong types, values
  outside the allowed ones. The result is a :class:`RecipeConfig`;
* the run directory ``<out>/<recipe>-<YYYYmmdd-HHMMSS>/`` with the resolved
  ``config.yaml``, ``run.log`` and ``run.json`` (status, timings, versions, command line);
* logging: the run's logger and the recipe package's own loggers write to ``run.log``;
* error capture: a failing recipe leaves its run directory and log and makes the command
  exit non-zero.

What a recipe writes inside the run directory (checkpoints, ``metrics.json``,
predictions, plots, submission files) is up to the recipe (see docs/recipes.md). A recipe
with a ``predict`` hook can apply a finished run to new media (:func:`predict_run`,
``emofeat predict``): the core checks that the run finished and hands it over.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emofeat._version import __version__
from emofeat.errors import ConfigError, EmofeatError
from emofeat.extras import missing_extra
from emofeat.settings import Key, coerce, load_yaml, parse_value

CONFIG_FILE = "config.yaml"
_MISSING: Any = object()


class RecipeConfig(dict):
    """A resolved recipe configuration: checked against the recipe's schema.

    A mapping (``cfg["train"]["lr"]``, ``cfg.get("features")``) whose sections are
    :class:`RecipeConfig` too, with attribute access (``cfg.train.lr``) for keys that are not
    ``dict`` method names. Free-form (open) sections stay plain dicts.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def get_path(self, dotted: str, default: Any = _MISSING) -> Any:
        """The value at ``"train.lr"``; ``default`` (or :class:`KeyError`) when absent."""
        node: Any = self
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is _MISSING:
                    raise KeyError(dotted)
                return default
            node = node[part]
        return node

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts and lists (for YAML, JSON, comparisons)."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


yaml.SafeDumper.add_representer(RecipeConfig, yaml.representer.SafeRepresenter.represent_dict)


@dataclass(frozen=True)
class Recipe:
    """A training recipe as registered by a plugin.

    Attributes:
        name: ``emofeat recipe run NAME``.
        description: one line.
        run: ``run(ctx: RecipeRun) -> dict`` does the work and returns a short summary of
            its metrics (written to ``run.json``).
        defaults: the default configuration (a mapping, or a YAML file path). Every key's
            default also gives its type (see :meth:`Key.of <emofeat.settings.Key.of>`).
        configs: named configurations (``--config NAME``): name -> YAML file path or
            mapping, merged over the defaults.
        schema: dotted key -> :class:`~emofeat.settings.Key` declaring what the defaults
            cannot say: allowed values, bounds, the type of a key whose default is null,
            a list's item type. Keys it leaves out take their default's type.
        open_sections: dotted paths (``"extract.settings"``) below which any key is
            accepted; everywhere else an unknown key is an error. A mapping whose default is
            ``{}`` is open too.
        validate: checks across keys (``validate(config)`` raises :class:`ConfigError`
            naming the key); runs after the schema check, when the config is resolved.
        plugin: set by the registry: the plugin that registered the recipe.
        version: the recipe's own version (recorded in ``run.json``).
        predict: applies a finished run to new media (:class:`PredictRequest` in,
            :class:`PredictResult` out); what ``emofeat predict RUN_DIR INPUTS`` calls.
            The hook extracts what the run was trained on, with the run's settings, into
            ``request.store``, applies the run's models and writes one CSV per input into
            ``request.out_dir``. None when the recipe's runs cannot be applied.
    """

    name: str
    description: str
    run: Callable[[RecipeRun], dict[str, Any]]
    defaults: dict[str, Any] | Path = field(default_factory=dict)
    configs: dict[str, Path | dict[str, Any]] = field(default_factory=dict)
    plugin: str = ""
    version: str = "0"
    #: dotted paths of free-form sections: any keys below them are accepted (for example
    #: per-extractor settings, whose keys the extractors check themselves)
    open_sections: tuple[str, ...] = ()
    #: ``validate(config)`` raises :class:`ConfigError` for a bad resolved config; it runs
    #: when the config is resolved, before the recipe reads any data
    validate: Callable[[RecipeConfig], None] | None = None
    #: declared keys (allowed values, bounds, types of null defaults), see :class:`Key`
    schema: Mapping[str, Key] = field(default_factory=dict)
    #: ``predict(request: PredictRequest) -> PredictResult`` applies a finished run of the
    #: recipe to new media (``emofeat predict``, :func:`predict_run`); None: the recipe's
    #: runs cannot be applied
    predict: Callable[[PredictRequest], PredictResult] | None = None

    def default_config(self) -> dict[str, Any]:
        """The defaults as a fresh mapping."""
        return _load_mapping(self.defaults, f"recipe {self.name} defaults")

    def config_schema(self) -> ConfigSchema:
        """Every key of the recipe's config: the defaults' keys with :attr:`schema` over them."""
        return ConfigSchema.build(self.default_config(), self.schema, self.open_sections)


@dataclass
class RecipeRun:
    """What a recipe's ``run`` function receives.

    Attributes:
        recipe: the recipe.
        config: the resolved configuration (already written to ``config.yaml``).
        run_dir: the run directory (exists).
        log: a logger writing to ``run.log`` (and the console unless quiet).
        quiet: no progress bars.
    """

    recipe: Recipe
    config: RecipeConfig
    run_dir: Path
    log: logging.Logger
    quiet: bool = False


class RecipeError(EmofeatError):
    """A recipe cannot run with the given data, features or configuration."""


def _load_mapping(source: dict[str, Any] | Path | str, what: str) -> dict[str, Any]:
    if isinstance(source, dict):
        return copy.deepcopy(source)
    return load_yaml(source, what)


def get_recipes() -> dict[str, Recipe]:
    """Every registered recipe by name (plugins loaded on first use); a name registered
    twice, or a hook that raises, is reported (:func:`emofeat.plugins.collect`)."""
    from emofeat.plugins import PluginRef, collect

    def make(plugin: PluginRef, recipe: Recipe) -> Recipe:
        if not isinstance(recipe, Recipe):
            raise TypeError(f"plugin {plugin.name!r} registered {recipe!r}, not a Recipe")
        return Recipe(**{**recipe.__dict__, "plugin": plugin.name})

    return collect("register_recipes", kind="recipe", make=make).items


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; :class:`RecipeError` lists the installed ones otherwise."""
    found = get_recipes()
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise RecipeError(
            f"no recipe named {name!r}; installed: {known} (see 'emofeat recipe list')"
        )
    return found[name]


def _is_open(dotted: str, open_sections: tuple[str, ...]) -> bool:
    """True when ``dotted`` (a section path, ``a.b.``) lies inside a free-form section."""
    return any(dotted == f"{o}." or dotted.startswith(f"{o}.") for o in open_sections)


@dataclass(frozen=True)
class ConfigSchema:
    """Every key of a recipe config: ``keys`` (dotted leaf -> :class:`Key`), ``sections``
    (dotted paths of checked mappings, ``""`` the top) and ``open_sections`` (free-form)."""

    keys: dict[str, Key]
    sections: dict[str, tuple[str, ...]]
    open_sections: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        defaults: Mapping[str, Any],
        declared: Mapping[str, Key] | None = None,
        open_sections: tuple[str, ...] = (),
    ) -> ConfigSchema:
        """The schema ``defaults`` imply, with ``declared`` keys over it.

        Raises:
            ConfigError: a declared key the defaults lack.
        """
        keys: dict[str, Key] = {}
        sections: dict[str, tuple[str, ...]] = {}
        opened = list(open_sections)

        def walk(node: Mapping[str, Any], where: str) -> None:
            sections[where.rstrip(".")] = tuple(node)
            for k, v in node.items():
                dotted = f"{where}{k}"
                if isinstance(v, Mapping) and v and dotted not in open_sections:
                    walk(v, dotted + ".")
                    continue
                keys[dotted] = Key.of(v)
                if isinstance(v, Mapping):
                    opened.append(dotted)

        walk(defaults, "")
        for dotted, key in (declared or {}).items():
            if dotted not in keys:
                raise ConfigError(f"schema key {dotted!r} is not among the defaults' keys")
            keys[dotted] = keys[dotted].over(key)
        return cls(keys, sections, tuple(dict.fromkeys(opened)))

    def key(self, dotted: str) -> Key | None:
        """The key at ``dotted``; None for a section or a key inside an open section."""
        return self.keys.get(dotted)

    def check(self, config: Mapping[str, Any]) -> RecipeConfig:
        """``config`` with every value converted and checked; the first problem raises
        :class:`ConfigError` naming its dotted key and what the key takes."""
        return self._section(config, "")

    def _section(self, node: Any, where: str) -> RecipeConfig:
        path = where.rstrip(".")
        if not isinstance(node, Mapping):
            names = ", ".join(self.sections[path])
            raise ConfigError(f"{path}={node!r}: expected a mapping (of {names})")
        known = self.sections[path]
        out = RecipeConfig()
        for k, value in node.items():
            dotted = f"{where}{k}"
            if k not in known:
                raise ConfigError(
                    f"unknown config key {dotted!r} (known here: {', '.join(sorted(known))})"
                )
            if dotted in self.sections:
                out[k] = self._section(value, dotted + ".")
            else:
                out[k] = coerce(value, self.keys[dotted], dotted)
        missing = [k for k in known if k not in out]
        if missing:
            raise ConfigError(f"config key {where}{missing[0]} is missing")
        return out


def deep_merge(
    base: dict[str, Any],
    over: dict[str, Any],
    where: str = "",
    open_sections: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``; keys must exist in ``base``.

    A mapping in ``base`` whose value is ``{}``, and every mapping inside one of
    ``open_sections``, accepts any keys (free-form sections).
    """
    out = copy.deepcopy(base)
    for key, value in over.items():
        dotted = f"{where}{key}"
        if key not in out:
            if (base or where == "") and not _is_open(where, open_sections):
                known = ", ".join(sorted(base)) or "none"
                raise ConfigError(f"unknown config key {dotted!r} (known here: {known})")
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = (
                deep_merge(out[key], value, dotted + ".", open_sections)
                if out[key]
                else dict(value)
            )
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_sets(
    config: dict[str, Any],
    sets: list[str] | tuple[str, ...],
    open_sections: tuple[str, ...] = (),
    schema: ConfigSchema | None = None,
) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides, each read as the type of the key it sets.

    ``schema`` (default: the one ``config`` itself implies) says which keys exist and what
    they take. Inside open sections missing mappings are created, any key is accepted and
    values are read as YAML. A section may be given a YAML mapping (merged key by key).
    """
    schema = schema or ConfigSchema.build(config, None, open_sections)
    out = copy.deepcopy(config)
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (for example model.layers=6)")
        dotted, text = item.split("=", 1)
        parts = [p.strip() for p in dotted.strip().split(".") if p.strip()]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        dotted = ".".join(parts)
        node = out
        for i, part in enumerate(parts[:-1]):
            here = ".".join(parts[: i + 1])
            if part not in node and _is_open(here + ".", schema.open_sections):
                node[part] = {}
            if not isinstance(node.get(part), dict):
                known = ", ".join(sorted(schema.sections.get(".".join(parts[:i]), node)))
                raise ConfigError(f"unknown config key {here!r} (known here: {known})")
            node = node[part]
        last = parts[-1]
        key = schema.key(dotted)
        if dotted in schema.sections:
            value = parse_value(text, dict)
            if not isinstance(value, dict):
                raise ConfigError(
                    f"--set {dotted}={text}: {dotted} is a section: set one of its keys "
                    f"({', '.join(schema.sections[dotted])}) or give a YAML mapping {{...}}"
                )
            node[last] = deep_merge(node[last], value, dotted + ".", schema.open_sections)
        elif key is not None:
            node[last] = coerce(parse_value(text, key.type), key, dotted)
        elif _is_open(".".join(parts[:-1]) + ".", schema.open_sections):
            node[last] = parse_value(text)
        else:
            section = ".".join(parts[:-1])
            known = ", ".join(sorted(schema.sections.get(section, node)))
            raise ConfigError(f"unknown config key {dotted!r} (known here: {known})")
    return out


def resolve_config(
    recipe: Recipe,
    config: str | None = None,
    sets: list[str] | tuple[str, ...] = (),
    overrides: dict[str, Any] | None = None,
) -> RecipeConfig:
    """Defaults, then a named config or YAML file, then ``overrides``, then ``--set`` items;
    checked completely (:meth:`ConfigSchema.check`, then the recipe's ``validate``).

    Raises:
        ConfigError: an unknown key, a value of the wrong type or outside the allowed
            ones, a config that is neither named nor a file; the message names the key.
    """
    defaults = recipe.default_config()
    schema = ConfigSchema.build(defaults, recipe.schema, recipe.open_sections)
    resolved = defaults
    if config:
        if config in recipe.configs:
            layer = _load_mapping(recipe.configs[config], f"config {config}")
        elif Path(config).is_file():
            layer = _load_mapping(Path(config), "recipe config")
        else:
            named = ", ".join(sorted(recipe.configs)) or "none"
            raise ConfigError(
                f"--config {config}: neither a named config of {recipe.name} ({named}) nor a file"
            )
        resolved = deep_merge(resolved, layer, open_sections=schema.open_sections)
    if overrides:
        resolved = deep_merge(resolved, overrides, open_sections=schema.open_sections)
    resolved = apply_sets(resolved, sets, schema=schema)
    return check_config(recipe, resolved, schema)


def check_config(
    recipe: Recipe, config: Mapping[str, Any], schema: ConfigSchema | None = None
) -> RecipeConfig:
    """``config`` (a full mapping of the recipe's keys) checked against the recipe's schema
    and its ``validate``; a :class:`RecipeConfig`."""
    schema = schema or recipe.config_schema()
    checked = schema.check(config)
    if recipe.validate is not None:
        recipe.validate(checked)
    return checked


def new_run_dir(out: Path, name: str) -> Path:
    """A fresh ``<out>/<name>-<YYYYmmdd-HHMMSS>[-k]`` directory."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = out / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RecipeError(f"{out}: cannot create a run directory for {name}")


@contextlib.contextmanager
def run_log(
    run_dir: Path, quiet: bool = False, packages: tuple[str, ...] = ()
) -> Iterator[logging.Logger]:
    """The run's logger for the duration of a run: ``run.log`` (with times) and, unless
    ``quiet``, the console (messages only). The loggers named in ``packages`` (a recipe's own
    modules log through them) also write to ``run.log`` at INFO meanwhile. Everything is
    detached and closed at the end."""
    log = logging.getLogger(f"emofeat.recipe.{run_dir.name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
    fh = logging.FileHandler(run_dir / "run.log")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(fh)
    if not quiet:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(sh)
    attached = [logging.getLogger(p) for p in packages if p]
    levels = [pkg.level for pkg in attached]
    for pkg in attached:
        pkg.setLevel(logging.INFO)
        pkg.addHandler(fh)
    try:
        yield log
    finally:
        for pkg, level in zip(attached, levels, strict=True):
            pkg.removeHandler(fh)
            pkg.setLevel(level)
        for h in list(log.handlers):
            h.close()
            log.removeHandler(h)


def _package(recipe: Recipe) -> str:
    """The top-level package of the recipe's code (whose loggers join ``run.log``)."""
    module = getattr(recipe.run, "__module__", "") or ""
    top = module.split(".")[0]
    return "" if top in ("", "__main__", "emofeat") else top


def _missing_extra(recipe: Recipe, exc: BaseException) -> ConfigError | None:
    """A usage error naming the extra to install when ``exc`` is a missing optional import."""
    if not isinstance(exc, ImportError):
        return None
    from emofeat.plugins import plugin_distributions

    dist = plugin_distributions().get(recipe.plugin, ("emofeat", ""))[0]
    return missing_extra(exc, what=f"recipe {recipe.name!r}", distribution=dist, prefer="recipes")


def run_recipe(
    recipe: Recipe,
    config: Mapping[str, Any],
    out: Path,
    run_dir: Path | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run ``recipe`` with a resolved ``config``; return ``(run_dir, summary)``.

    A plain mapping is checked first (:func:`check_config`), as :func:`resolve_config` does.
    ``run_dir`` given: continue in that directory (resume); otherwise a new one is made.
    Raises whatever the recipe raised, after writing ``run.json`` with status ``failed``
    and the traceback to ``run.log``.
    """
    if not isinstance(config, RecipeConfig):
        config = check_config(recipe, config)
    if run_dir is None:
        run_dir = new_run_dir(out, recipe.name)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    info: dict[str, Any] = {
        "recipe": recipe.name,
        "recipe_version": recipe.version,
        "plugin": recipe.plugin,
        "emofeat_version": __version__,
        "argv": argv if argv is not None else sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "running",
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))
    t0 = time.perf_counter()
    with run_log(run_dir, quiet, (_package(recipe),)) as log:
        log.info("recipe %s: run directory %s", recipe.name, run_dir)
        try:
            summary = recipe.run(RecipeRun(recipe, config, run_dir, log, quiet)) or {}
        except BaseException as exc:
            extra = _missing_extra(recipe, exc)
            log.error("failed: %s: %s", type(exc).__name__, extra or exc)
            with (run_dir / "run.log").open("a") as fh:
                fh.write(traceback.format_exc())
            info.update(status="failed", error=f"{type(exc).__name__}: {extra or exc}")
            info["seconds"] = round(time.perf_counter() - t0, 3)
            (run_dir / "run.json").write_text(json.dumps(info, indent=2))
            if extra is not None:
                raise extra from exc
            raise
    info.update(status="done", summary=summary, seconds=round(time.perf_counter() - t0, 3))
    (run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str))
    return run_dir, summary


# ----------------------------------------------------------------------------- predict


@dataclass
class PredictRequest:
    """What a recipe's ``predict`` hook receives (``emofeat predict RUN_DIR INPUTS -o OUT``).

    Attributes:
        run_dir: the run directory of a finished run (``run.json`` status ``done``).
        run: the run's ``run.json``.
        config: the run's resolved configuration (its ``config.yaml``, checked again).
        inputs: the media files to predict, in order (videos).
        out_dir: where the per-input CSV files go (exists).
        store: the feature store the hook extracts into and reads from (created when
            missing); the predictions are written there too, as a stream.
        model: which of the run's models to apply; None: the run's best.
        crops: an optional folder of face-crop folders named after the inputs' stems
            (``CROPS/<stem>/00001.jpg``, Aff-Wild2's ``cropped_aligned`` layout): face
            features are then extracted from the crops instead of the video's face stage.
        device: ``cpu``, ``cuda``, ``cuda:N``.
        quiet: no progress bars.
        log: where the hook reports what it does.
    """

    run_dir: Path
    run: dict[str, Any]
    config: RecipeConfig
    inputs: list[Path]
    out_dir: Path
    store: Path
    log: logging.Logger
    model: str | None = None
    crops: Path | None = None
    device: str = "cpu"
    quiet: bool = False


@dataclass
class PredictOutcome:
    """What became of one input of ``emofeat predict``.

    Attributes:
        input: the media file.
        status: ``done`` or ``failed``.
        message: why it failed (empty when done).
        csv: the per-frame predictions file (None when failed).
        frames: rows written: the input's video frames.
        key: the input's key in the store (where the ``predict`` item is).
    """

    input: Path
    status: str
    message: str = ""
    csv: Path | None = None
    frames: int = 0
    key: str = ""


@dataclass
class PredictResult:
    """What a recipe's ``predict`` hook returns: the model applied and one outcome per input."""

    model: str
    outcomes: list[PredictOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[PredictOutcome]:
        """The inputs that could not be predicted."""
        return [o for o in self.outcomes if o.status != "done"]


def read_run(run_dir: str | os.PathLike) -> tuple[Recipe, dict[str, Any], RecipeConfig]:
    """A finished run's recipe, ``run.json`` and checked configuration.

    Raises:
        RecipeError: not a run directory, a run that failed or did not finish, a recipe that
            is not installed, a configuration the installed recipe no longer accepts.
    """
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise RecipeError(f"{run_dir}: not a recipe run directory (no run.json)")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{info_path}: cannot be read ({exc})") from None
    status = info.get("status")
    if status == "failed":
        raise RecipeError(
            f"{run_dir}: the run failed ({info.get('error', 'see run.log')}); "
            "only a finished run can be applied: run the recipe again"
        )
    if status != "done":
        raise RecipeError(
            f"{run_dir}: the run did not finish (status {status!r}); only a finished run can "
            f"be applied: complete it with 'emofeat recipe run --resume {run_dir}'"
        )
    recipe = get_recipe(str(info.get("recipe", "")))
    try:
        config = check_config(recipe, load_yaml(run_dir / CONFIG_FILE, "run config"))
    except ConfigError as exc:
        raise RecipeError(
            f"{run_dir / CONFIG_FILE}: the installed recipe {recipe.name!r} does not accept "
            f"this run's configuration ({exc})"
        ) from None
    return recipe, info, config


def predict_run(
    run_dir: str | os.PathLike,
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    store: str | os.PathLike | None = None,
    model: str | None = None,
    crops: str | os.PathLike | None = None,
    device: str = "cpu",
    quiet: bool = False,
    log: logging.Logger | None = None,
) -> PredictResult:
    """Apply a finished recipe run to new media through its recipe's ``predict`` hook.

    Args:
        run_dir: the run directory.
        inputs: media files (videos).
        out_dir: folder for the per-input CSV files (created).
        store: the feature store to extract into (default ``OUT_DIR/features.h5``).
        model: the run's model to apply (default: its best).
        crops: folder of face-crop folders named after the inputs' stems.
        device: ``cpu``, ``cuda``, ``cuda:N``.
        quiet: no progress bars.
        log: where to report (default: the logger ``emofeat.predict``).

    Raises:
        RecipeError: the run cannot be applied (see :func:`read_run`), or its recipe has no
            ``predict`` hook, or the run lacks what prediction needs.
    """
    recipe, info, config = read_run(run_dir)
    if recipe.predict is None:
        raise RecipeError(f"recipe {recipe.name!r} cannot apply its runs to new media")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    request = PredictRequest(
        run_dir=Path(run_dir),
        run=info,
        config=config,
        inputs=[Path(p) for p in inputs],
        out_dir=out,
        store=Path(store) if store is not None else out / "features.h5",
        log=log or logging.getLogger("emofeat.predict"),
        model=model,
        crops=Path(crops) if crops is not None else None,
        device=device,
        quiet=quiet,
    )
    try:
        return recipe.predict(request)
    except ImportError as exc:
        extra = _missing_extra(recipe, exc)
        if extra is not None:
            raise extra from exc
        raise
