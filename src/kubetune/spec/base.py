"""Shared base for every typed config, and the loading of configs from YAML files."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from kubetune.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class _OneLineErrors(type(BaseModel)):
    """Turns the ValidationError of a direct ``Model(...)`` call into one ConfigError line.

    On the metaclass, not ``__init__``: pydantic calls a custom ``__init__`` for nested models
    too, which would cut their errors short; this runs only when user code calls the class.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as err:
            raise ConfigError(f"invalid {cls.__name__}: {format_validation_error(err)}") from None


class StrictModel(BaseModel, metaclass=_OneLineErrors):
    """A pydantic model that rejects unknown fields and validates on assignment.

    Built directly (``LLMConfig(training={...})``), an invalid value raises kubetune's one-line
    :class:`~kubetune.errors.ConfigError` naming each field, as job files and the CLI do.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise ConfigError(f"a mapping key at line {key_node.start_mark.line + 1} is not a plain value") from None
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, raising :class:`ConfigError` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid YAML: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None


# ``scheme://user@`` or ``scheme://user:password@`` (a password, e.g. an S3 secret key, may hold '/').
USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)([^/@:\s'\"]+:[^@\s'\"]*|[^/@\s'\"]*)@", re.IGNORECASE)


def _redact_userinfo(text: str) -> str:
    """Hide ``user:password@`` in any URI inside ``text`` (a rejected value is echoed back to the user)."""
    return USERINFO.sub(r"\1***@", text)


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """Render a pydantic error as one line per problem: ``field.path: message (got value)``."""
    lines = []
    for problem in err.errors():
        loc = ".".join(str(part) for part in (prefix, *problem["loc"]) if part != "")
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        elif "input" in problem and not isinstance(problem["input"], dict | list):
            message = f"{message} (got {_redact_userinfo(repr(problem['input']))})"
        lines.append(f"{loc or '<root>'}: {message}")
    return "; ".join(lines)


def validate_config(model: type[M], data: Any, source: str = "config") -> M:
    """Build ``model`` from plain data, turning validation errors into one :class:`ConfigError`."""
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid {source}: {format_validation_error(err)}") from None


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` laid over ``base``: nested mappings merge key by key, anything else in ``top`` wins.

    Neither input is modified; the result shares no mutable values with them.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
