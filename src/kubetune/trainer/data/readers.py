"""Read raw dataset rows from local files: json, jsonl, csv, parquet and txt (optionally .gz).

Rows are plain dicts, each with the place it came from: ``file:line`` (the 1-based line where
the row starts, as editors show it) for the text formats, ``file: row N`` (1-based) for
parquet. pyarrow reads parquet; the text formats use the standard library so a malformed line
is reported with its file and line number.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kubetune.errors import DataError
from kubetune.spec.dataset_split import DEFAULT_SPLIT, file_split

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def dataset_files(path: Path, split: str | None = None) -> list[Path]:
    """The data files at ``path``: the file itself, or every supported file under a folder.

    With ``split``, a folder's files of that split only (by name, as
    :mod:`kubetune.spec.dataset_split` says); a folder whose files name no split is one
    ``train`` split. A single file is the split asked for.
    """
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if path.is_file():
        if _kind(path) is None:
            raise DataError(f"{path}: unsupported dataset file type (use one of {', '.join(SUFFIXES)})")
        return [path]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and _kind(p) and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(f"{path}: no dataset files ({', '.join(SUFFIXES)}) in this folder")
    return files if split is None else _split_files(path, files, split)


def _split_files(folder: Path, files: list[Path], split: str) -> list[Path]:
    named = {file: file_split(file.relative_to(folder)) for file in files}
    if not any(named.values()):
        if split == DEFAULT_SPLIT:
            return files
        raise DataError(
            f"{folder}: no file is named for split {split!r} (a folder whose files name no split is the "
            f"'{DEFAULT_SPLIT}' split)"
        )
    chosen = [file for file in files if named[file] == split]
    if not chosen:
        found = ", ".join(sorted({name for name in named.values() if name}))
        raise DataError(f"{folder}: no file of split {split!r} (files name the splits: {found})")
    return chosen


def _open_text(path: Path) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")


Located = Iterator[tuple[dict, str]]


def _read_jsonl(path: Path) -> Located:
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: malformed JSON line: {err.msg}") from None
            except RecursionError:
                raise DataError(f"{path}:{number}: malformed JSON line: nested too deeply") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield row, f"{path}:{number}"


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _element_lines(text: str) -> list[int]:
    """The 1-based line where each element of a valid JSON document's array starts (the top-level
    array, or the one array of a one-key object)."""
    decoder = json.JSONDecoder()

    def skip(index: int) -> int:
        return _JSON_SPACE.match(text, index).end()

    index = skip(0)
    if text.startswith("{", index):
        _, index = decoder.raw_decode(text, skip(index + 1))  # the one key
        index = skip(skip(index) + 1)  # past ':'
    index = skip(index + 1)  # past '['
    starts = []
    while not text.startswith("]", index):
        starts.append(index)
        _, index = decoder.raw_decode(text, index)
        index = skip(index)
        if text.startswith(",", index):
            index = skip(index + 1)
    lines, line, seen = [], 1, 0
    for start in starts:
        line += text.count("\n", seen, start)
        seen = start
        lines.append(line)
    return lines


def _read_json(path: Path) -> Located:
    with _open_text(path) as handle:
        text = handle.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: malformed JSON at line {err.lineno}: {err.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: malformed JSON: nested too deeply") from None
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        data = next(iter(data.values()))
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise DataError(f"{path}: expected a JSON array of objects")
    for row, line in zip(data, _element_lines(text), strict=True):
        yield row, f"{path}:{line}"


def _read_csv(path: Path) -> Located:
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        start = reader.line_num + 1
        for record in reader:
            place, start = f"{path}:{start}", reader.line_num + 1
            if not record:
                continue  # a blank line
            if len(record) != len(header):
                raise DataError(
                    f"{place}: this row has {len(record)} fields, the header has {len(header)} "
                    f"({', '.join(header)}); quote fields that hold commas"
                )
            yield dict(zip(header, record, strict=True)), place


def _read_txt(path: Path) -> Located:
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield {"text": line.rstrip("\r\n")}, f"{path}:{number}"


def _read_parquet(path: Path) -> Located:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several error types for bad files
        raise DataError(f"{path}: not a readable parquet file: {err}") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield row, f"{path}: row {number}"


_READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".txt": _read_txt,
    ".parquet": _read_parquet,
}


@dataclass
class DatasetRows:
    """Rows read from a dataset, with ``places[i]`` telling where ``rows[i]`` is (``file:line``)."""

    rows: list[dict] = field(default_factory=list)
    places: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def head(self, count: int) -> DatasetRows:
        """The first ``count`` rows."""
        return self.pick(range(min(count, len(self.rows))))

    def pick(self, indices: Iterable[int]) -> DatasetRows:
        """The rows at ``indices``, in that order."""
        chosen = list(indices)
        return DatasetRows([self.rows[i] for i in chosen], [self.places[i] for i in chosen])


def read_rows(path: Path, limit: int | None = None, split: str | None = None) -> DatasetRows:
    """Read the rows of the dataset at ``path`` (a file or a folder of files): all, or the first ``limit``.

    ``split`` reads only the files of that split (see :func:`dataset_files`).

    Raises:
        DataError: the path does not exist, holds no supported file, a file is malformed or
            not UTF-8, a CSV row has more or fewer fields than its header, or no row was read.
    """
    rows = DatasetRows()
    for file in dataset_files(path, split):
        reader = _READERS[_kind(file)]
        try:
            for row, place in itertools.islice(reader(file), None if limit is None else limit - len(rows)):
                rows.rows.append(row)
                rows.places.append(place)
        except UnicodeDecodeError as err:
            raise DataError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        except (OSError, EOFError, csv.Error) as err:
            raise DataError(f"{file}: cannot read: {err}") from None
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError(f"{path}: the dataset is empty")
    return rows
