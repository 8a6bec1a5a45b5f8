"""The checks of an extractor class's declarations: class attributes and stream specs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from emofeat.extractor import AUDIO, FEATURES, MODALITIES, Extractor, Setting, StreamSpec

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LEVELS = ("frame", "window")


def fail(name: str, message: str) -> AssertionError:
    """The error of a broken rule, naming the extractor."""
    return AssertionError(f"extractor {name!r}: {message}")


def check_class(cls: type[Extractor]) -> None:
    """Check an extractor class's declarations (no instance is made).

    Raises:
        AssertionError: a class attribute breaks the contract (docs/plugins.md).
    """
    if not (isinstance(cls, type) and issubclass(cls, Extractor)):
        raise AssertionError(f"{cls!r} is not a subclass of emofeat.Extractor")
    name = cls.name
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail(str(name), "name must be lowercase [a-z][a-z0-9_]*")
    if not isinstance(cls.version, str) or not cls.version:
        raise fail(name, f"version must be a non-empty string, got {cls.version!r}")
    if cls.modality not in MODALITIES:
        raise fail(name, f"modality {cls.modality!r} is not one of {', '.join(MODALITIES)}")
    for attr in ("license", "description"):
        value = getattr(cls, attr)
        if not isinstance(value, str) or not value.strip():
            raise fail(name, f"{attr} is empty (it is shown by 'emofeat plugins')")
    if not isinstance(cls.commercial_use, bool):
        raise fail(name, f"commercial_use must be a bool, got {cls.commercial_use!r}")
    if cls.modality == AUDIO and not (isinstance(cls.sampling_rate, int) and cls.sampling_rate > 0):
        raise fail(name, f"sampling_rate must be a positive int (Hz), got {cls.sampling_rate!r}")
    if not isinstance(cls.requires, (tuple, list)) or not all(
        isinstance(r, str) for r in cls.requires
    ):
        raise fail(
            name, f"requires must be a tuple of extractor names, got {cls.requires!r} "
            "(a one-name tuple needs a comma: ('faces',))"
        )  # fmt: skip
    if not isinstance(cls.settings, Mapping):
        raise fail(name, "settings must be a dict of {key: emofeat.Setting}")
    for key, setting in cls.settings.items():
        if not isinstance(setting, Setting):
            raise fail(name, f"setting {key!r} is {setting!r}, not an emofeat.Setting")
        if setting.choices is not None:
            defaults = setting.default if isinstance(setting.default, list) else [setting.default]
            bad = [d for d in defaults if d not in setting.choices]
            if bad:
                raise fail(name, f"setting {key!r}: default {bad[0]!r} is not among its choices")
    if cls.modality == FEATURES:
        for method in ("sources", "process_stored"):
            if getattr(cls, method) is getattr(Extractor, method):
                raise fail(name, f"a features extractor must implement {method}()")
    elif cls.process is Extractor.process and cls.end is Extractor.end:
        raise fail(name, "an audio or video extractor must implement process() (and/or end())")


def check_specs(name: str, specs: Any) -> dict[str, StreamSpec]:
    """What ``streams()`` returned, checked: the specs by name."""
    if not isinstance(specs, list) or not all(isinstance(s, StreamSpec) for s in specs):
        raise fail(name, f"streams() must return a list of emofeat.StreamSpec, got {specs!r}")
    out: dict[str, StreamSpec] = {}
    for spec in specs:
        if spec.name in out:
            raise fail(name, f"streams() declares {spec.name!r} twice")
        if not spec.name or "/" in spec.name:
            raise fail(name, f"stream name {spec.name!r} must be non-empty, without '/'")
        if spec.level not in _LEVELS:
            raise fail(name, f"stream {spec.name!r}: level {spec.level!r} not in {_LEVELS}")
        if not isinstance(spec.labels, tuple) or not all(isinstance(x, str) for x in spec.labels):
            raise fail(name, f"stream {spec.name!r}: labels must be a tuple of str")
        if len(set(spec.labels)) != len(spec.labels):
            raise fail(name, f"stream {spec.name!r}: labels are not unique")
        out[spec.name] = spec
    return out
