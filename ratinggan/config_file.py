"""Config files: read a run configuration from TOML (or YAML), write TOML.

A file holds the nested sections of ``Config.to_dict()``: top-level fields,
then ``[synthetic]``, ``[regressor]``, ``[gan]`` and ``[eval]`` tables. Only
the fields a file names change; the rest keep their defaults. An unknown
key, a section that is not a table, or a value of the wrong type raises
``ValueError`` naming the file and the key, so a typo never passes silently.
YAML is read only when PyYAML is installed (it is no dependency).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from ratinggan.config import SECTIONS, Config, flat_fields, override

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

YAML_SUFFIXES = (".yaml", ".yml")


def field_types() -> dict[str, type]:
    """The Python type of each dotted config field (``None`` unwrapped)."""
    found = {}
    for cls, prefix in [(Config, "")] + [
        (section, f"{name}.") for name, section in SECTIONS.items()
    ]:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.name in SECTIONS and not prefix:
                continue
            hint = hints[field.name]
            if isinstance(hint, types.UnionType):
                hint = next(
                    a for a in typing.get_args(hint) if a is not type(None)
                )
            found[prefix + field.name] = hint
    return found


def _read_mapping(path: Path) -> dict:
    """The raw nested mapping a TOML or YAML file holds."""
    if path.suffix.lower() in YAML_SUFFIXES:
        try:
            import yaml
        except ImportError:
            raise ValueError(
                f"{path}: reading YAML needs PyYAML (pip install pyyaml); "
                "or write the config as TOML"
            ) from None
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from None
        values = {} if values is None else values
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of config fields")
        return values
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from None


def _flatten(values: dict, path: Path) -> dict[str, Any]:
    """``{"gan": {"epochs": 3}}`` -> ``{"gan.epochs": 3}``, refusing keys
    that are not config fields."""
    known = field_types()
    flat = {}
    for key, value in values.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(
                    f"{path}: '{key}' must be a table ([{key}]), got "
                    f"{type(value).__name__}"
                )
            for inner, inner_value in value.items():
                flat[f"{key}.{inner}"] = inner_value
        elif isinstance(value, dict):
            raise ValueError(
                f"{path}: unknown config section [{key}]; expected "
                f"{', '.join(f'[{name}]' for name in SECTIONS)}"
            )
        else:
            flat[key] = value

    for key in flat:
        if key not in known:
            raise ValueError(f"{path}: unknown config key '{key}'{_hint(key)}")
    return flat


def _hint(key: str) -> str:
    """A suggestion for a mistyped key, from the known names."""
    import difflib

    close = difflib.get_close_matches(str(key), list(field_types()), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _checked(key: str, value: Any, kind: type, path: Path) -> Any:
    """``value`` as a ``kind`` field value, or ``ValueError`` naming it."""
    if value is None and flat_fields(Config())[key] is None:
        return None  # YAML's null on a field that is unset by default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        # PyYAML reads 1e-3 (no dot) as a string, following YAML 1.1.
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, kind) and not (
        kind is int and isinstance(value, bool)
    ):
        return value
    raise ValueError(f"{path}: '{key}' must be {kind.__name__}, got {value!r}")


def load_config(path: str | os.PathLike, base: Config | None = None) -> Config:
    """The config in the TOML or YAML file at ``path``, on top of ``base``
    (default ``Config()``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    flat = _flatten(_read_mapping(path), path)
    kinds = field_types()
    changes = {
        key: _checked(key, value, kinds[key], path)
        for key, value in flat.items()
    }
    return override(base or Config(), changes)


def field_comments() -> dict[str, list[str]]:
    """The comment lines written above each field in ``config.py``.

    Empty where the source is not installed (a bytecode-only build): the
    help and the printed config then go without comments.
    """
    comments = {}
    for cls, prefix in [(Config, "")] + [
        (section, f"{name}.") for name, section in SECTIONS.items()
    ]:
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            return {}
        pending: list[str] = []
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                pending.append(stripped)
                continue
            declared = re.match(r"(\w+)\s*:", stripped)
            if declared:
                comments[prefix + declared.group(1)] = pending
            pending = []
    return comments


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value))


def _toml_lines(names: list[str], flat: dict, comments: dict) -> list[str]:
    lines = []
    for name in names:
        lines.extend(comments.get(name, []))
        key = name.split(".", 1)[-1]
        value = flat[name]
        if value is None:
            # TOML has no null: an unset optional field is shown commented.
            lines.append(f'# {key} = "..."  # unset')
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return lines


def to_toml(config: Config, commented: bool = True) -> str:
    """``config`` as a TOML file that ``load_config`` reads back equal."""
    flat = flat_fields(config)
    comments = field_comments() if commented else {}
    top = [name for name in flat if "." not in name]
    lines = _toml_lines(top, flat, comments)
    for section in SECTIONS:
        names = [name for name in flat if name.startswith(section + ".")]
        lines += ["", f"[{section}]"] + _toml_lines(names, flat, comments)
    return "\n".join(lines) + "\n"
