"""Unpacking .tar and .zip sources into a cache entry, refusing anything unsafe.

With ``extract: true`` an initializer replaces every selected archive (``.tar``, ``.tar.gz``/
``.tgz``, ``.tar.bz2``/``.tbz2``, ``.tar.xz``/``.txz``, ``.zip``) by its contents: a lone
archive unpacks into the target folder itself, each of several into a folder named after it
(``shards/part1.tar.gz`` -> ``shards/part1/``).

Unpacking happens inside the key's staging folder, before the atomic publish, in two steps:
first every member of every archive is checked (no extraction yet), then the files are written
into a separate ``unpacking/`` folder that replaces ``files/`` only when all succeeded. A
member is refused, failing the whole initializer with one :class:`~kubetune.errors.FetchError`
naming the archive and the member, when

- its path is absolute, holds ``..``, a backslash, a drive letter or a NUL;
- it is a symlink or hard link to something outside the archive's folder, or to anything but
  a regular file of the archive (links inside it are materialized as copies: cache entries
  hold regular files only);
- it is a device file, a FIFO or another special file, or an encrypted zip member;
- it would land on the same path as another file, or where a folder must be;
- the archives unpack to more than ``extract_max_bytes`` or than the free disk space, checked
  as headers are read, before a byte is written.

Where Python's tarfile has the ``data`` extraction filter (3.12, and 3.10.12/3.11.4 onwards)
every tar member also passes through it, as a second opinion on the checks above. Files are
written with default permissions (member modes, owners and times are not applied).
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from kubetune.errors import FetchError
from kubetune.initializers.file_selection import safe_relative_path
from kubetune.initializers.progress import format_bytes

log = logging.getLogger("kubetune.initializers")

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
_CHUNK = 1 << 20
_MAX_SYMLINK_TARGET = 4096
_MAX_LINK_HOPS = 40
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError)


def archive_suffix(path: str) -> str | None:
    """The archive suffix ``path`` ends with (case-insensitive), or ``None`` for other files."""
    lower = path.lower()
    return next((suffix for suffix in ARCHIVE_SUFFIXES if lower.endswith(suffix)), None)


@dataclass(frozen=True)
class _Member:
    """One thing an archive puts in the entry.

    ``dest`` is the path in the entry; ``name`` the member's name in the archive (for
    messages). A regular file has ``reader``; a link has ``link_to``, the entry path of the
    regular file whose content it gets; a folder has neither.
    """

    dest: str
    name: str
    size: int = 0
    reader: Callable[[], AbstractContextManager[IO[bytes]]] | None = None
    link_to: str | None = None


@dataclass(frozen=True)
class _Raw:
    """A checked member as read from the archive: ``rel`` is archive-relative; a link has
    ``link`` (its target as stored) and ``symlink`` (else a hard link)."""

    name: str
    rel: str
    size: int = 0
    reader: Callable[[], AbstractContextManager[IO[bytes]]] | None = None
    link: str | None = None
    symlink: bool = False


class _Refusal(Exception):
    """A member is refused; the message is the reason."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(reason)
        self.member = member


def unpack_archives(
    files_dir: Path,
    work_dir: Path,
    paths: Sequence[str],
    label: str,
    max_bytes: int | None,
    free_bytes: int,
) -> dict[str, str]:
    """Replace the archives among ``paths`` (files under ``files_dir``) by their checked contents.

    Args:
        files_dir: the staging folder holding the downloaded, verified files.
        work_dir: a scratch folder next to it (emptied first; renamed to ``files_dir`` on success).
        paths: every file of the entry, relative to ``files_dir``.
        label: ``"<kind> <uri>"`` for messages.
        max_bytes: the ``extract_max_bytes`` cap, or ``None``.
        free_bytes: bytes that may still be written to the cache's file system.

    Returns:
        The sha256 of every file the archives produced, by its path in the entry.

    Raises:
        FetchError: an unreadable archive, an unsafe or clashing member, or too many bytes.
    """
    archives = [p for p in paths if archive_suffix(p)]
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    layout = _Layout({p: "file" for p in paths if p not in archives}, label)
    total = 0
    with _open_all(files_dir, archives, label) as opened:
        plans: list[tuple[str, list[_Member]]] = []
        for archive in archives:
            prefix = "" if len(paths) == 1 else archive[: -len(archive_suffix(archive) or "")].rstrip("/")
            members = []
            for member in _members(opened[archive], archive, prefix, label, work_dir):
                layout.add(member, archive)
                members.append(member)
                total += member.size
                if max_bytes is not None and total > max_bytes:
                    raise FetchError(
                        f"{label}: archive {archive}: unpacks to more than extract_max_bytes "
                        f"({format_bytes(max_bytes)}); refusing it"
                    )
                if total > free_bytes:
                    raise FetchError(
                        f"{label}: archive {archive}: unpacks to more than the {format_bytes(free_bytes)} "
                        "free in the cache; refusing it"
                    )
            if not any(m.reader or m.link_to for m in members):
                raise FetchError(f"{label}: archive {archive}: holds no files")
            plans.append((archive, members))
        digests: dict[str, str] = {}
        for archive, members in plans:
            digests.update(_write(members, archive, work_dir, label))
            files = sum(1 for m in members if m.reader or m.link_to)
            log.info("%s: unpacked %s: %d files, %s", label, archive, files, format_bytes(sum(m.size for m in members)))
    for rel, origin in layout.files.items():
        if origin == "file":  # not from an archive: moved over as it is
            (work_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(files_dir / rel, work_dir / rel)
    shutil.rmtree(files_dir)
    os.rename(work_dir, files_dir)
    return digests


@contextmanager
def _open_all(
    files_dir: Path, archives: Sequence[str], label: str
) -> Iterator[dict[str, tarfile.TarFile | zipfile.ZipFile]]:
    """Open every archive once; close them all on exit."""
    with ExitStack() as stack:
        handles: dict[str, tarfile.TarFile | zipfile.ZipFile] = {}
        for archive in archives:
            path = files_dir / archive
            opener = zipfile.ZipFile if archive_suffix(archive) == ".zip" else tarfile.open
            try:
                handle = opener(path)  # closed by the ExitStack; tarfile.open detects the compression
            except _READ_ERRORS as err:
                raise FetchError(f"{label}: archive {archive}: cannot be read ({_reason(err)})") from None
            handles[archive] = stack.enter_context(handle)
        yield handles


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class _Layout:
    """The entry's files and folders so far; refuses a second file at a path or a file/folder clash."""

    def __init__(self, files: dict[str, str], label: str) -> None:
        self.files = files  # path -> "file" or the archive it comes from
        self.dirs: set[str] = set()
        self.label = label
        for rel in list(files):
            self._parents(rel, rel, "file")

    def _parents(self, rel: str, name: str, origin: str) -> None:
        parent = posixpath.dirname(rel)
        while parent:
            if parent in self.files:
                self._clash(name, origin, parent)
            self.dirs.add(parent)
            parent = posixpath.dirname(parent)

    def _clash(self, name: str, origin: str, rel: str) -> None:
        where = "a file" if origin == "file" else f"member {name!r} of archive {origin}"
        raise FetchError(f"{self.label}: {where} would land on {rel!r}, where another file or folder is")

    def add(self, member: _Member, archive: str) -> None:
        if not member.dest:
            return  # the archive's own root folder
        self._parents(member.dest, member.name, archive)
        if member.reader or member.link_to:
            if member.dest in self.files or member.dest in self.dirs:
                self._clash(member.name, archive, member.dest)
            self.files[member.dest] = archive
        elif member.dest in self.files:
            self._clash(member.name, archive, member.dest)
        else:
            self.dirs.add(member.dest)


def _member_path(name: str, is_dir: bool) -> str:
    """The member's normalized archive-relative path ("" for the root folder), or a refusal."""
    if is_dir and name and not [part for part in PurePosixPath(name).parts if part != "."]:
        return ""
    try:
        return safe_relative_path(name, "")
    except FetchError:
        raise _Refusal(name, "its path would escape the target folder") from None


def _link_target(raw: _Raw) -> str:
    """Where a link points, archive-relative (symlinks from their folder, hard links from the root)."""
    kind = "symlink" if raw.symlink else "hard link"
    target = raw.link or ""
    outside = _Refusal(raw.name, f"a {kind} to {target!r}, outside the archive")
    if not target or "\x00" in target or "\\" in target or target.startswith("/") or target[1:2] == ":":
        raise outside
    base = posixpath.dirname(raw.rel) if raw.symlink else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved in ("..", ".") or resolved.startswith("../"):
        raise outside
    return resolved


def _members(
    handle: tarfile.TarFile | zipfile.ZipFile, archive: str, prefix: str, label: str, work_dir: Path
) -> Iterator[_Member]:
    """Check and yield the archive's members as they will land in the entry, files and folders as
    their headers are read, then links (resolved to the regular file whose content they get)."""

    def dest(rel: str) -> str:
        return posixpath.join(prefix, rel) if rel else prefix

    raws = _tar_members(handle, work_dir / prefix) if isinstance(handle, tarfile.TarFile) else _zip_members(handle)
    sizes: dict[str, int] = {}
    links: dict[str, _Raw] = {}
    try:
        for raw in raws:
            if raw.link is not None:
                links[raw.rel] = raw
                continue
            if raw.reader is not None:
                sizes[raw.rel] = raw.size
            yield _Member(dest=dest(raw.rel), name=raw.name, size=raw.size, reader=raw.reader)
        for rel, raw in links.items():
            source = _resolve_link(raw, links, sizes)
            yield _Member(dest=dest(rel), name=raw.name, size=sizes[source], link_to=dest(source))
    except _Refusal as refusal:
        raise FetchError(f"{label}: archive {archive}: refusing member {refusal.member!r}: {refusal}") from None
    except _READ_ERRORS as err:
        raise FetchError(f"{label}: archive {archive}: cannot be read ({_reason(err)})") from None


def _resolve_link(raw: _Raw, links: dict[str, _Raw], regular: dict[str, int]) -> str:
    """The regular file a link finally points to (following symlink chains)."""
    current = raw
    for _ in range(_MAX_LINK_HOPS):
        target = _link_target(current)
        if target in regular:
            return target
        if target not in links:
            kind = "symlink" if current.symlink else "hard link"
            raise _Refusal(raw.name, f"a {kind} to {current.link!r}, which is not a file in the archive")
        current = links[target]
    raise _Refusal(raw.name, "a chain of links too long (a loop?)")


def _tar_members(tar: tarfile.TarFile, root: Path) -> Iterator[_Raw]:
    data_filter = getattr(tarfile, "data_filter", None)
    for info in tar:  # reads headers lazily: a bomb is refused before it is decompressed in full
        rel = _member_path(info.name, info.isdir())
        if info.issym() or info.islnk():
            raw = _Raw(name=info.name, rel=rel, link=info.linkname, symlink=info.issym())
            _link_target(raw)
        elif info.isreg():
            raw = _Raw(name=info.name, rel=rel, size=info.size, reader=lambda info=info: tar.extractfile(info))
        elif info.isdir():
            raw = _Raw(name=info.name, rel=rel)
        else:
            raise _Refusal(info.name, "it is a device file, FIFO or other special file")
        if data_filter is not None:  # a second opinion; the checks above give the clearer message
            try:
                data_filter(info, str(root))
            except tarfile.FilterError as err:
                raise _Refusal(info.name, f"rejected by tarfile's data filter ({type(err).__name__})") from None
        yield raw


def _zip_members(archive: zipfile.ZipFile) -> Iterator[_Raw]:
    for info in archive.infolist():
        name = info.filename
        rel = _member_path(name, info.is_dir())
        mode = info.external_attr >> 16
        if info.flag_bits & 0x1:
            raise _Refusal(name, "it is encrypted")
        if info.is_dir():
            yield _Raw(name=name, rel=rel)
        elif stat.S_ISLNK(mode):
            if info.file_size > _MAX_SYMLINK_TARGET:
                raise _Refusal(name, "a symlink with an oversized target")
            raw = _Raw(name=name, rel=rel, link=archive.read(info).decode("utf-8", errors="replace"), symlink=True)
            _link_target(raw)
            yield raw
        elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            raise _Refusal(name, "it is a device file, FIFO or other special file")
        else:
            yield _Raw(name=name, rel=rel, size=info.file_size, reader=lambda info=info: archive.open(info))


def _write(members: Sequence[_Member], archive: str, work_dir: Path, label: str) -> dict[str, str]:
    """Write the archive's files (then its links, as copies) under ``work_dir``; return their sha256."""
    digests: dict[str, str] = {}
    try:
        for member in members:
            dest = work_dir / member.dest
            if member.reader is None and member.link_to is None:
                dest.mkdir(parents=True, exist_ok=True)
            elif member.reader is not None:
                dest.parent.mkdir(parents=True, exist_ok=True)
                with member.reader() as source:
                    digests[member.dest] = _copy(source, dest, member, archive, label)
        for member in members:
            if member.link_to is not None:
                dest = work_dir / member.dest
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(work_dir / member.link_to, "rb") as source:
                    digests[member.dest] = _copy(source, dest, member, archive, label)
    except _READ_ERRORS as err:
        raise FetchError(f"{label}: archive {archive}: cannot be unpacked ({_reason(err)})") from None
    return digests


def _copy(source: IO[bytes], dest: Path, member: _Member, archive: str, label: str) -> str:
    """Stream at most the member's declared size into ``dest``; return its sha256."""
    sha = hashlib.sha256()
    written = 0
    with open(dest, "wb") as out:
        while chunk := source.read(min(_CHUNK, member.size - written + 1)):
            written += len(chunk)
            if written > member.size:
                raise FetchError(
                    f"{label}: archive {archive}: member {member.name!r} holds more bytes than its header says"
                )
            sha.update(chunk)
            out.write(chunk)
    if written != member.size:
        raise FetchError(f"{label}: archive {archive}: member {member.name!r} is truncated")
    return sha.hexdigest()
