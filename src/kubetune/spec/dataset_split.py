"""Dataset split expressions: which rows of which split to train on (``train``, ``train[:3000]``, ``train[10%:]``).

The syntax is the Hugging Face ``datasets`` one for a single split: a split name, optionally
followed by ``[start:stop]`` where each bound is a row index (negative counts from the end) or a
percentage of the split's rows (rounded to the nearest row). Combinations (``train+test``) and
rounding modes (``(pct1_dropremainder)``) are refused.

A split names files the way Hugging Face dataset repositories do: a file belongs to split
``test`` when its name is ``test`` followed by nothing or one of ``-._`` and a digit or more
(``test.jsonl``, ``test-00000-of-00001.parquet``), or when it lies in a folder named ``test``.
A folder with no split-named file at all is one split, ``train`` (as ``datasets`` reads it).

The parsing is torch-free: the job spec validates expressions at the edge, the trainer applies
them when it reads the rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

T = TypeVar("T")

_BOUND = r"-?\d+%?"
_EXPRESSION = re.compile(rf"^(?P<name>[A-Za-z0-9_]+)(?:\[(?P<start>{_BOUND})?:(?P<stop>{_BOUND})?\])?$")
#: Split names that mark a file as belonging to a split (the Hugging Face ``datasets`` keywords).
SPLIT_KEYWORDS = ("train", "training", "validation", "valid", "val", "dev", "eval", "test", "testing")
DEFAULT_SPLIT = "train"


@dataclass(frozen=True)
class Bound:
    """One end of a slice: a row index, or a percentage of the rows."""

    value: int
    percent: bool

    def index(self, rows: int) -> int:
        """The row index this bound stands for in a split of ``rows`` rows (Python slice semantics)."""
        return round(rows * self.value / 100) if self.percent else self.value

    def __str__(self) -> str:
        return f"{self.value}{'%' if self.percent else ''}"


@dataclass(frozen=True)
class DatasetSplit:
    """A parsed split expression: the split's ``name`` and an optional ``[start:stop]`` slice."""

    name: str
    start: Bound | None = None
    stop: Bound | None = None

    @classmethod
    def parse(cls, expression: str) -> DatasetSplit:
        """Parse ``train``, ``train[:3000]``, ``train[10%:]``, ``test[-500:]``...

        Raises:
            ValueError: the expression is not one split with an optional slice (one line, naming it).
        """
        text = expression.strip()
        if "+" in text:
            raise ValueError(f"{expression!r}: combining splits with '+' is not supported; train on one split")
        match = _EXPRESSION.match(text)
        if match is None:
            raise ValueError(
                f"{expression!r} is not a split expression: use a split name with an optional row slice, "
                "e.g. 'train', 'train[:3000]', 'train[10%:]'"
            )
        bounds = []
        for key in ("start", "stop"):
            raw = match.group(key)
            if raw is None:
                bounds.append(None)
                continue
            percent = raw.endswith("%")
            value = int(raw.rstrip("%"))
            if percent and not -100 <= value <= 100:
                raise ValueError(f"{expression!r}: a percentage bound must lie between -100% and 100%")
            bounds.append(Bound(value, percent))
        return cls(match.group("name"), bounds[0], bounds[1])

    @property
    def is_sliced(self) -> bool:
        """Whether the expression selects part of the split's rows."""
        return self.start is not None or self.stop is not None

    def select(self, rows: Sequence[T]) -> list[T]:
        """The rows of the split that the slice selects (all of them without a slice)."""
        count = len(rows)
        start = None if self.start is None else self.start.index(count)
        stop = None if self.stop is None else self.stop.index(count)
        return list(rows[start:stop])

    def owns(self, relative: PurePath) -> bool:
        """Whether a dataset file at ``relative`` (inside the dataset folder) belongs to this split."""
        return file_split(relative) == self.name

    def __str__(self) -> str:
        if not self.is_sliced:
            return self.name
        return f"{self.name}[{self.start or ''}:{self.stop or ''}]"


def file_split(relative: PurePath) -> str | None:
    """The split a dataset file belongs to by its name or folder (None: the name names no split)."""
    stem = relative.name.split(".", 1)[0]
    for keyword in SPLIT_KEYWORDS:
        if re.fullmatch(rf"{keyword}(?:[-_]\d.*|[-_]?)", stem, flags=re.IGNORECASE):
            return keyword
    for folder in reversed(relative.parts[:-1]):
        if folder.lower() in SPLIT_KEYWORDS:
            return folder.lower()
    return None


def split_from_uri(uri: str) -> tuple[str, str | None]:
    """``(uri without the query, split)`` for ``hf://org/name?split=train[:3000]``; split is None without one.

    Raises:
        ValueError: the query holds something other than one ``split`` parameter.
    """
    parts = urlsplit(uri) if "://" in uri else None
    if parts is None or not parts.query:
        return uri, None
    params = parse_qsl(parts.query, keep_blank_values=True)
    names = [name for name, _ in params]
    if names != ["split"]:
        raise ValueError(f"{uri!r}: the only query parameter a dataset URI takes is 'split' (got {', '.join(names)})")
    split = params[0][1]
    DatasetSplit.parse(split)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", parts.fragment)), split
