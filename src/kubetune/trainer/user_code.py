"""The user's functions a job names by import path (``package.module:function``): a dataset's
``preprocess``, GRPO's reward functions."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from kubetune.errors import ConfigError


def import_function(import_path: str, setting: str) -> Callable:
    """The function ``import_path`` (``module:function``) names.

    Raises:
        ConfigError: naming ``setting`` (``dataset.preprocess``...), when the module does not
            import or has no such function.
    """
    module_name, _, func_name = import_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"{setting}: cannot import module {module_name!r}: {err}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"{setting}: {module_name!r} has no function {func_name!r}")
    return func
