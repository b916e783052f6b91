"""Stage configs: frozen dataclasses whose field docs are the `--help` text.

Each stage module defines its own `Config` dataclass with `field(..., metadata={"help": ...})`
(use `option()` below). A config can come from a YAML/TOML file (`--config FILE`) and CLI
overrides; an unknown key in a file is an error that names the key and the closest valid one.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dreamgym_cli.errors import InputError, did_you_mean

C = TypeVar("C")


def option(default: Any = dataclasses.MISSING, help: str = "", **kw) -> Any:
    """A config field with its one-line doc (shown by `--help` and in manifests)."""
    if isinstance(default, (list, dict, set)):
        factory = lambda d=default: type(d)(d)  # noqa: E731
        return dataclasses.field(default_factory=factory, metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def require_paths(config: Any, *names: str) -> None:
    """For a frozen config's `__post_init__`: each field in `names` must be given ("is
    required" otherwise, in that order) and is made a Path."""
    for name in names:
        if getattr(config, name) is None:
            raise InputError("is required", field=name)
        object.__setattr__(config, name, Path(getattr(config, name)))


def help_of(cls: type, name: str) -> str:
    """The doc line of field `name` of config class `cls` (for typer's help=)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", file=path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)  # safe_load: configs are data, never code
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise InputError(f"cannot parse config: {str(e).splitlines()[0]}", file=path,
                         line=None if line is None else line + 1) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("expected a mapping of option names to values", file=path)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _typed(hint: Any, value: Any) -> Any:
    """A file value in its field's type where YAML/TOML cannot say it: paths, tuples of paths."""
    args = typing.get_args(hint)
    if isinstance(value, str) and (hint is Path or Path in args):
        return Path(value)
    if isinstance(value, list) and typing.get_origin(hint) is tuple and args:
        return tuple(_typed(args[0], v) for v in value)
    return value


def file_values(cls: type, file: str | Path) -> dict[str, Any]:
    """The field values a config file sets for `cls`, by field name.

    A class with `SECTIONS = {"rl": ("lr", ...), ...}` also takes those fields nested under their
    section (`rl: {lr: 1e-5}`), as verl and TRL configs group them; a field given twice (flat
    and nested) or a key outside its section is an error naming it (`rl.grup_size`)."""
    names = {f.name for f in dataclasses.fields(cls)}
    sections: dict[str, tuple[str, ...]] = getattr(cls, "SECTIONS", {})
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in read_config_file(file).items():
        if key in sections and isinstance(value, dict):
            members = sections[key]
            for sub, sub_value in value.items():
                name = str(sub).replace("-", "_")
                name = name if name in members or name + "_" not in members else name + "_"
                if name not in members:
                    raise InputError(f"unknown option '{key}.{sub}' (section '{key}' holds "
                                     f"{', '.join(members)}){did_you_mean(name, members)}",
                                     file=file, field=f"{key}.{sub}")
                if name in values:
                    raise InputError(f"'{name}' is set twice (flat and under '{key}')",
                                     file=file, field=f"{key}.{sub}")
                values[name] = _typed(hints.get(name), sub_value)
            continue
        if key not in names:
            raise InputError(f"unknown option '{key}'{did_you_mean(key, names)}",
                             file=file, field=key)
        if key in values:
            raise InputError(f"'{key}' is set twice (flat and in a section)", file=file,
                             field=key)
        values[key] = _typed(hints.get(key), value)
    return values


def build(cls: type[C], file: str | Path | None = None, **overrides: Any) -> C:
    """cls from file values (`file_values`), then CLI overrides (None means 'not given on the
    command line')."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {} if file is None else file_values(cls, file)
    for key, value in overrides.items():
        if key not in names:
            raise TypeError(f"{cls.__name__} has no field {key!r}")
        if value is not None:
            values[key] = value
    try:
        return cls(**values)
    except TypeError as e:
        raise InputError(f"{cls.__name__}: {e}", file=file) from None


def pick(config: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """{name: value} of some fields of a config: the group that one part's settings take."""
    return {name: getattr(config, name) for name in names}


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (paths as strings), as recorded in manifests."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[f.name] = value
    return out
