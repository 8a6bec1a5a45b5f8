"""Recipes: registered training pipelines that read the store and write a run directory.

A recipe is a default config (YAML) plus code. Plugins register them through the
``register_recipes`` hook (the built-in ABAW recipes live in the ``emofeat_recipes`` package
and register the same way a third-party package would). The core owns what every recipe
needs and must behave the same for all of them:

* configuration: the recipe's defaults, then a named config (``--config sun2024``) or a
  YAML file, then ``--set dotted.key=value`` overrides - every key checked against the
  defaults, values converted to the default's type;
* the run directory ``<out>/<recipe>-<YYYYmmdd-HHMMSS>/`` with the resolved
  ``config.yaml``, ``run.log`` and ``run.json`` (status, timings, versions, command line);
* error capture: a failing recipe leaves its run directory and log and makes the command
  exit non-zero.

What a recipe writes inside the run directory (checkpoints, ``metrics.json``,
predictions, plots, submission files) is up to the recipe (see docs/recipes.md).
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emofeat._version import __version__
from emofeat.errors import ConfigError, EmofeatError

CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class Recipe:
    """A training recipe as registered by a plugin.

    Attributes:
        name: ``emofeat recipe run NAME``.
        description: one line.
        run: ``run(ctx: RecipeRun) -> dict`` does the work and returns a short summary of
            its metrics (written to ``run.json``).
        defaults: the default configuration (a mapping, or a YAML file path).
        configs: named configurations (``--config NAME``): name -> YAML file path or
            mapping, merged over the defaults.
        open_sections: dotted paths (``"extract.settings"``) below which any key is
            accepted; everywhere else an unknown key is an error.
        validate: checks the resolved config's values (allowed names, ranges) and raises
            :class:`ConfigError` naming the key; called by :func:`resolve_config`.
        plugin: set by the registry: the plugin that registered the recipe.
        version: the recipe's own version (recorded in ``run.json``).
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
    validate: Callable[[dict[str, Any]], None] | None = None

    def default_config(self) -> dict[str, Any]:
        """The defaults as a fresh mapping."""
        return _load_mapping(self.defaults, f"recipe {self.name} defaults")


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
    config: dict[str, Any]
    run_dir: Path
    log: logging.Logger
    quiet: bool = False


class RecipeError(EmofeatError):
    """A recipe cannot run with the given data, features or configuration."""


def _load_mapping(source: dict[str, Any] | Path | str, what: str) -> dict[str, Any]:
    if isinstance(source, dict):
        return copy.deepcopy(source)
    path = Path(source)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} must be a mapping of keys to values")
    return data


def get_recipes() -> dict[str, Recipe]:
    """Every registered recipe by name (plugins loaded on first use)."""
    from emofeat.plugins import load_plugins, pm

    load_plugins()
    found: dict[str, Recipe] = {}
    for impl in reversed(pm.hook.register_recipes.get_hookimpls()):

        def register(recipe: Recipe, _plugin: str = impl.plugin_name) -> None:
            if not isinstance(recipe, Recipe):
                raise TypeError(f"plugin {_plugin!r} registered {recipe!r}, not a Recipe")
            if recipe.name in found:
                print(
                    f"emofeat: recipe {recipe.name!r} from plugin {_plugin!r} ignored: "
                    f"already provided by {found[recipe.name].plugin!r}",
                    file=sys.stderr,
                )
                return
            found[recipe.name] = Recipe(**{**recipe.__dict__, "plugin": _plugin})

        impl.function(register=register)
    return found


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


def _coerce(dotted: str, text: str, default: Any) -> Any:
    """Convert a ``--set`` value to the type of the default it replaces."""
    if isinstance(default, list):
        if text.strip().startswith("["):
            value = yaml.safe_load(text)
        else:
            value = [yaml.safe_load(p) for p in text.split(",") if p.strip()]
        return value
    value = yaml.safe_load(text) if text.strip() else ""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"--set {dotted}={text}: expected true or false")
    if isinstance(default, int) and not isinstance(value, bool):
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"--set {dotted}={text}: expected an integer")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"--set {dotted}={text}: expected a number")
    if isinstance(default, str):
        return text
    if isinstance(default, dict) and not isinstance(value, dict):
        raise ConfigError(f"--set {dotted}={text}: expected a mapping (YAML {{...}})")
    return value


def apply_sets(
    config: dict[str, Any],
    sets: list[str] | tuple[str, ...],
    open_sections: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (checked against the keys ``config`` has).

    Inside ``open_sections`` missing mappings are created and any key is accepted.
    """
    out = copy.deepcopy(config)
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (for example model.layers=6)")
        dotted, text = item.split("=", 1)
        parts = [p for p in dotted.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        node = out
        for i, part in enumerate(parts[:-1]):
            if part not in node and _is_open(".".join(parts[:i]) + ".", open_sections):
                node[part] = {}
            if not isinstance(node.get(part), dict):
                raise ConfigError(
                    f"unknown config key {'.'.join(parts[: i + 1])!r} in --set {item!r}"
                )
            node = node[part]
        last = parts[-1]
        if last not in node and node and not _is_open(".".join(parts[:-1]) + ".", open_sections):
            known = ", ".join(sorted(node))
            raise ConfigError(f"unknown config key {dotted!r} (known here: {known})")
        node[last] = _coerce(dotted, text, node.get(last))
    return out


def resolve_config(
    recipe: Recipe,
    config: str | None = None,
    sets: list[str] | tuple[str, ...] = (),
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults, then a named config or YAML file, then ``overrides``, then ``--set`` items."""
    resolved = recipe.default_config()
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
        resolved = deep_merge(resolved, layer, open_sections=recipe.open_sections)
    if overrides:
        resolved = deep_merge(resolved, overrides, open_sections=recipe.open_sections)
    resolved = apply_sets(resolved, sets, recipe.open_sections)
    if recipe.validate is not None:
        recipe.validate(resolved)
    return resolved


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


def _logger(run_dir: Path, quiet: bool) -> logging.Logger:
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
    return log


def run_recipe(
    recipe: Recipe,
    config: dict[str, Any],
    out: Path,
    run_dir: Path | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run ``recipe`` with a resolved ``config``; return ``(run_dir, summary)``.

    ``run_dir`` given: continue in that directory (resume); otherwise a new one is made.
    Raises whatever the recipe raised, after writing ``run.json`` with status ``failed``
    and the traceback to ``run.log``.
    """
    if run_dir is None:
        run_dir = new_run_dir(out, recipe.name)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    log = _logger(run_dir, quiet)
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
    log.info("recipe %s: run directory %s", recipe.name, run_dir)
    try:
        summary = recipe.run(RecipeRun(recipe, config, run_dir, log, quiet)) or {}
    except BaseException as exc:
        log.error("failed: %s: %s", type(exc).__name__, exc)
        with (run_dir / "run.log").open("a") as fh:
            fh.write(traceback.format_exc())
        info.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        info["seconds"] = round(time.perf_counter() - t0, 3)
        (run_dir / "run.json").write_text(json.dumps(info, indent=2))
        raise
    finally:
        for h in list(log.handlers):
            h.close()
            log.removeHandler(h)
    info.update(status="done", summary=summary, seconds=round(time.perf_counter() - t0, 3))
    (run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str))
    return run_dir, summary
