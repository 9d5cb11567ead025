"""Reward functions of ``objective: grpo``: built-ins and user functions by import path.

A reward function is called once per prompt group as ``function(prompt_row, completions)``
(the dataset row as a dict, the group's completion texts) and returns one float per completion.
The total reward of a completion is the weighted sum over the functions
(:class:`~kubetune.spec.trainer.RewardFunctionConfig`). A function that raises, or returns
anything but one finite number per completion, stops the job with a :class:`DataError` naming
the function and the row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real

from kubetune.errors import DataError
from kubetune.spec.trainer import RewardFunctionConfig
from kubetune.trainer.user_code import import_function

#: What a reward function is: ``(prompt_row, completions) -> one float per completion``.
RewardFn = Callable[[dict, list[str]], Sequence[float]]


def exact_match(column: str) -> RewardFn:
    """1.0 for a completion equal (both stripped) to the row's ``column``, else 0.0."""

    def score(row: dict, completions: list[str]) -> list[float]:
        answer = str(row[column]).strip()
        return [float(text.strip() == answer) for text in completions]

    return score


def regex_format(pattern: str) -> RewardFn:
    """1.0 for a completion that ``pattern`` matches whole (stripped; ``.`` matches newlines), else 0.0."""
    compiled = re.compile(pattern, re.DOTALL)

    def score(row: dict, completions: list[str]) -> list[float]:
        return [float(compiled.fullmatch(text.strip()) is not None) for text in completions]

    return score


@dataclass(frozen=True)
class RewardFunction:
    """One loaded reward function: its name in metrics (``reward/<name>``), callable and weight."""

    name: str
    fn: RewardFn
    weight: float
    column: str | None = None

    def check_row(self, row: dict, where: str) -> None:
        """Raise DataError when ``row`` lacks the column this function reads (exact_match)."""
        if self.column is not None and row.get(self.column) is None:
            raise DataError(f"{where}: no value in column {self.column!r}, which reward {self.name!r} compares with")

    def __call__(self, row: dict, completions: list[str], where: str) -> list[float]:
        """The function's rewards of ``completions``, checked: one finite number per completion."""
        try:
            values = self.fn(row, completions)
        except Exception as err:  # any failure of user code stops the job, named
            raise DataError(f"reward function {self.name!r} failed on {where}: {type(err).__name__}: {err}") from err
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) != len(completions):
            shape = f"{type(values).__name__}" + (f" of {len(values)}" if hasattr(values, "__len__") else "")
            raise DataError(
                f"reward function {self.name!r} returned {shape} on {where}; "
                f"it must return a list of {len(completions)} floats (one per completion)"
            )
        out = []
        for value in values:
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
                raise DataError(
                    f"reward function {self.name!r} returned {value!r} on {where}; each reward must be a finite number"
                )
            out.append(float(value))
        return out


def load_rewards(configs: list[RewardFunctionConfig]) -> list[RewardFunction]:
    """Load the configured reward functions (user functions are imported now, before any compute).

    Metric names are the built-in's name or the function's name; repeated names get ``_2``, ``_3``...

    Raises:
        ConfigError: a module that cannot be imported, or no such function in it.
    """
    loaded: list[RewardFunction] = []
    seen: dict[str, int] = {}
    for config in configs:
        if config.function == "exact_match":
            fn, base = exact_match(config.column or ""), "exact_match"
        elif config.function == "regex":
            fn, base = regex_format(config.pattern or ""), "regex"
        else:
            fn, base = import_function(config.function, "grpo.rewards"), config.function.partition(":")[2]
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        loaded.append(RewardFunction(name, fn, config.weight, config.column))
    return loaded
