"""The settings grammar: one way to read a value, for extractor settings and recipe configs.

``emofeat extract --set NAME.KEY=VALUE``, ``emofeat recipe run --set dotted.key=VALUE``, the
YAML files of both and settings given in Python all go through :func:`parse_value` (text) and
:func:`coerce` (a value checked against the :class:`Key` it sets):

=====================  =============================================================
``--set`` text          value
=====================  =============================================================
``2``, ``2.5``          int 2, float 2.5 (YAML scalars)
``true``/``false``      bool (also ``yes``/``no``/``on``/``off``); ``1``/``0`` are ints
``~``, ``null``         None: a key whose default is null becomes null; any other key
                        is unset, i.e. takes its default
empty text              the empty string
``a,b,c``               a list key: the items, each read as the list's item type
                        (``1,3,5`` -> ``[1, 3, 5]`` for a list of ints)
``[1, 2]``, ``{a: 1}``  YAML flow list / mapping
any text, string key    the text itself (stripped): ``--set data=/x/2024`` is a path
=====================  =============================================================

:func:`coerce` is strict: a bool is not a number, a string is not a number, a float with a
fraction is not an int (``2.0`` is), a number is not a string; a string given for a list key
is split at commas. Every error is a :class:`ConfigError` naming the key, the value and what
the key takes (its type, allowed values or range).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from emofeat.errors import ConfigError

NULLS = frozenset({"~", "null", "Null", "NULL"})
NUMBER: tuple[type, ...] = (int, float)
"""Key type of a number kept as given (int or float), e.g. a length in frames or seconds."""

_SCALARS = (bool, int, float, str, type(None))
_EXPECTED = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    NUMBER: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
}


class SetText(str):
    """The raw text of a ``--set`` item, read by :func:`coerce` once the key's type is known."""


@dataclass(frozen=True)
class Key:
    """What one setting or config key takes.

    Attributes:
        type: ``bool``, ``int``, ``float``, ``str``, ``list``, ``dict``, :data:`NUMBER`, or
            None (any YAML value; only for keys whose default is null and undeclared).
        default: the value when unset.
        choices: allowed values (of each item, for a list).
        item: a list's item type (None: items kept as read).
        nullable: null is a value of its own (true for keys whose default is null).
        gt, ge, le: numeric bounds (of each item, for a list).
        help: one line.
    """

    type: Any = None
    default: Any = None
    choices: tuple[Any, ...] | None = None
    item: type | None = None
    nullable: bool = False
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    help: str = ""

    @classmethod
    def of(cls, default: Any, **declared: Any) -> Key:
        """The key a default implies (its type; a list's item type from its items), with
        ``declared`` fields over it."""
        kind: Any = None
        item = None
        if isinstance(default, bool):
            kind = bool
        elif isinstance(default, int):
            kind = int
        elif isinstance(default, float):
            kind = float
        elif isinstance(default, str):
            kind = str
        elif isinstance(default, (list, tuple)):
            kind = list
            types = {type(v) for v in default}
            if types == {int, float}:
                item = float
            elif len(types) == 1 and next(iter(types)) in (bool, int, float, str):
                item = next(iter(types))
        elif isinstance(default, Mapping):
            kind = dict
        key = cls(type=kind, default=default, item=item, nullable=default is None)
        return replace(key, **declared) if declared else key

    def over(self, declared: Key) -> Key:
        """This key with every field ``declared`` sets (differs from :class:`Key`'s own
        defaults) taken from it; the default stays this key's."""
        blank = Key()
        changes = {
            f.name: getattr(declared, f.name)
            for f in fields(Key)
            if f.name != "default" and getattr(declared, f.name) != getattr(blank, f.name)
        }
        if "type" in changes and changes["type"] is not list and "item" not in changes:
            changes["item"] = None
        return replace(self, **changes)

    def describe(self) -> str:
        """What the key takes, for messages: ``one of a, b``, ``a list of integers``..."""
        if self.choices is not None and self.type is not list:
            return "one of " + ", ".join(map(str, self.choices))
        what = _EXPECTED.get(self.type, "any value")
        if self.type is list and self.item is not None:
            what = f"a list of {_plural(self.item)}"
        if self.type is list and self.choices is not None:
            what += " from " + ", ".join(map(str, self.choices))
        bound = _bounds(self)
        if bound:
            what += f" {bound}"
        return what + (" or null" if self.nullable else "")


def _plural(kind: type) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "names"}.get(kind, "values")


def _bounds(key: Key) -> str:
    lo = f"> {key.gt:g}" if key.gt is not None else (f">= {key.ge:g}" if key.ge is not None else "")
    if key.le is not None:
        return (
            f"between {key.ge if key.ge is not None else key.gt:g} and {key.le:g}"
            if lo
            else (f"<= {key.le:g}")
        )
    return lo


def parse_value(text: str, kind: Any = None) -> Any:
    """Read ``--set`` text as the value it stands for (see the module's table).

    ``kind`` is the type of the key it sets, when known: ``str`` keeps the text as it is,
    ``list`` splits plain text at commas (items read as YAML scalars); otherwise the text is
    read as one YAML scalar or flow collection (text YAML cannot read stays text).
    """
    s = text.strip()
    if s in NULLS:
        return None
    if not s:
        return ""
    if kind is str:
        return s
    if kind is list and not s.startswith("["):
        return [parse_value(p) for p in s.split(",") if p.strip()]
    try:
        value = yaml.safe_load(s)
    except yaml.YAMLError:
        return s
    if isinstance(value, (list, dict)) or isinstance(value, _SCALARS):
        return value
    return s  # dates, timestamps: the text


def load_yaml(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """A YAML file holding a mapping; :class:`ConfigError` names the file (and line) otherwise."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML in {what} ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: {what} must be a mapping of keys to values")
    return data


def coerce(value: Any, key: Key, where: str) -> Any:
    """``value`` checked and converted for ``key``; :class:`ConfigError` naming ``where``.

    A :class:`SetText` (raw ``--set`` text) is read by :func:`parse_value` first.
    """
    if isinstance(value, SetText):
        value = parse_value(str(value), key.type)
    if value is None:
        if key.nullable or key.type is None:
            return None
        value = _copy(key.default)  # unset: the default
        if value is None:
            return None
    if key.type is None:
        return value
    if key.type is list:
        if isinstance(value, str):
            value = [parse_value(p, key.item) for p in value.split(",") if p.strip()]
        elif isinstance(value, tuple):
            value = list(value)
        elif not isinstance(value, list):
            value = [value]
        each = _EXPECTED.get(key.item, "any value")
        bound = _bounds(key)
        each += f" {bound}" if bound else ""
        out = [_scalar(v, key.item, f"{where}[{i}]", key, each) for i, v in enumerate(value)]
        if key.choices is not None:
            bad = [v for v in out if v not in key.choices]
            if bad:
                raise ConfigError(
                    f"{where}: {bad[0]!r} is not one of {', '.join(map(str, key.choices))}"
                )
        return out
    value = _scalar(value, key.type, where, key, key.describe())
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"{where}={value!r}: must be one of {', '.join(map(str, key.choices))}")
    return value


def _scalar(value: Any, kind: Any, where: str, key: Key, expected: str) -> Any:
    if kind is None:
        return value
    given = value
    ok = True
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind in (int, float, NUMBER):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            ok = False
        elif kind is int:
            ok = isinstance(value, int) or float(value).is_integer()
            value = int(value) if ok else value
        elif kind is float:
            value = float(value)
    elif kind is str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        ok = isinstance(value, str)
    elif kind is dict:
        ok = isinstance(value, Mapping)
        value = dict(value) if ok else value
    elif kind is list:
        ok = isinstance(value, list)
    if not ok:
        raise ConfigError(f"{where}={value!r}: expected {expected}")
    if kind in (int, float, NUMBER) and _out_of_bounds(value, key):
        raise ConfigError(f"{where}={given!r}: must be {_bounds(key)}")
    return value


def _out_of_bounds(value: float, key: Key) -> bool:
    return (
        (key.gt is not None and not value > key.gt)
        or (key.ge is not None and not value >= key.ge)
        or (key.le is not None and not value <= key.le)
    )


def _copy(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    return value
