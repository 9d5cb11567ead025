"""Read raw dataset rows from local files: json, jsonl, csv, parquet and txt (optionally .gz).

Rows are plain dicts. pyarrow reads parquet; the text formats use the standard library so a
malformed line is reported with its file and line number.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
from collections.abc import Iterator
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


def _read_jsonl(path: Path) -> Iterator[dict]:
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
            yield row


def _read_json(path: Path) -> Iterator[dict]:
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
    yield from data


def _read_csv(path: Path) -> Iterator[dict]:
    with _open_text(path) as handle:
        yield from csv.DictReader(handle)


def _read_txt(path: Path) -> Iterator[dict]:
    with _open_text(path) as handle:
        for line in handle:
            if line.strip():
                yield {"text": line.rstrip("\r\n")}


def _read_parquet(path: Path) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several error types for bad files
        raise DataError(f"{path}: not a readable parquet file: {err}") from None
    yield from table.to_pylist()


_READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".txt": _read_txt,
    ".parquet": _read_parquet,
}


def read_rows(path: Path, limit: int | None = None, split: str | None = None) -> list[dict]:
    """Read the rows of the dataset at ``path`` (a file or a folder of files): all, or the first ``limit``.

    ``split`` reads only the files of that split (see :func:`dataset_files`).

    Raises:
        DataError: the path does not exist, holds no supported file, a file is malformed or
            not UTF-8, or no row was read.
    """
    rows: list[dict] = []
    for file in dataset_files(path, split):
        reader = _READERS[_kind(file)]
        try:
            rows.extend(itertools.islice(reader(file), None if limit is None else limit - len(rows)))
        except UnicodeDecodeError as err:
            raise DataError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        except (OSError, EOFError, csv.Error) as err:
            raise DataError(f"{file}: cannot read: {err}") from None
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError(f"{path}: the dataset is empty")
    return rows
