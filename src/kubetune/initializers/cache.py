"""The content-addressed initializer cache: verified entries, published atomically.

Layout under the cache root::

    entries/<key>/files/...        a complete, verified copy of the selected files (read-only)
    entries/<key>/manifest.json    size and sha256 of every file, the source URI and version
    staging/<key>/                 an entry being downloaded (kept after an interruption so the
                                   next attempt resumes; removed after a user error)
    locks/<key>.lock               held while one process checks or fills the entry

An entry appears only through one ``rename`` of a fully verified staging folder, so readers
never see a partial entry. A cache hit re-checks every file's size and sha256 against the
manifest; a corrupted entry is discarded and fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from kubetune.initializers.providers import RemoteFile

log = logging.getLogger("kubetune.initializers")

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$KUBETUNE_CACHE_DIR``, else ``~/.cache/kubetune/initializers``."""
    configured = os.environ.get("KUBETUNE_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "kubetune" / "initializers"


def cache_key(fields: dict) -> str:
    """The sha256 of the canonical JSON of ``fields`` (scheme, location, revision, version, patterns...)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class FileDigest:
    """What reading a file once tells about it."""

    size: int
    sha256: str
    md5: str | None
    git_sha1: str | None


def digest_file(path: Path, md5: bool = False, git_sha1: bool = False) -> FileDigest:
    """Read ``path`` once, computing its sha256 and optionally md5 and git blob id."""
    size = path.stat().st_size
    sha = hashlib.sha256()
    md = hashlib.md5(usedforsecurity=False) if md5 else None
    git = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False) if git_sha1 else None
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            for hasher in (sha, md, git):
                if hasher is not None:
                    hasher.update(chunk)
    return FileDigest(size, sha.hexdigest(), md.hexdigest() if md else None, git.hexdigest() if git else None)


def check_against_source(path: Path, expected: RemoteFile) -> tuple[FileDigest, str | None]:
    """Digest a downloaded file and compare it with what the source published.

    Returns the digest and a description of the first mismatch (``None`` when it matches).
    """
    digest = digest_file(path, md5=expected.md5 is not None, git_sha1=expected.git_sha1 is not None)
    if digest.size != expected.size:
        return digest, f"size {digest.size} bytes, expected {expected.size}"
    for name in ("sha256", "md5", "git_sha1"):
        want = getattr(expected, name)
        if want is not None and getattr(digest, name) != want.lower():
            return digest, f"{name} {getattr(digest, name)}, expected {want.lower()}"
    return digest, None


class Cache:
    """One cache root; see the module docstring for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        for sub in ("entries", "staging", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def entry_dir(self, key: str) -> Path:
        """The published entry folder for ``key`` (may not exist)."""
        return self.root / "entries" / key

    def staging_dir(self, key: str) -> Path:
        """The staging folder for ``key`` (may not exist)."""
        return self.root / "staging" / key

    @contextmanager
    def locked(self, key: str, label: str) -> Iterator[None]:
        """Hold the key's file lock; log when another process holds it and we wait."""
        lock = FileLock(str(self.root / "locks" / f"{key}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("%s: another initializer is fetching the same files; waiting for it", label)
            started = time.monotonic()
            lock.acquire()
            log.info("%s: waited %.1f s for the other initializer", label, time.monotonic() - started)
        try:
            yield
        finally:
            lock.release()

    def read_manifest(self, key: str) -> dict | None:
        """The entry's manifest, or ``None`` when the entry is absent or unreadable."""
        try:
            return json.loads((self.entry_dir(key) / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def verify_entry(self, key: str) -> str | None:
        """Re-check a published entry file by file; return the first problem, or ``None``."""
        manifest = self.read_manifest(key)
        if manifest is None:
            return "manifest missing or unreadable"
        files_dir = self.entry_dir(key) / "files"
        listed = manifest["files"]
        present = {p.relative_to(files_dir).as_posix() for p in files_dir.rglob("*") if p.is_file() or p.is_symlink()}
        if present - set(listed):
            return f"unexpected file {sorted(present - set(listed))[0]}"
        for rel, meta in listed.items():
            path = files_dir / rel
            if path.is_symlink() or not path.is_file():
                return f"{rel} is missing"
            if path.stat().st_size != meta["size"]:
                return f"{rel} has {path.stat().st_size} bytes, expected {meta['size']}"
            if digest_file(path).sha256 != meta["sha256"]:
                return f"{rel} does not match its sha256"
        return None

    def discard_entry(self, key: str) -> None:
        """Remove a published entry (first moved aside, so the key never names a half-deleted folder)."""
        entry = self.entry_dir(key)
        if entry.exists():
            trash = self.root / "staging" / f"discard-{key}-{uuid.uuid4().hex}"
            os.rename(entry, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def publish(self, key: str, manifest: dict) -> Path:
        """Write the manifest into the staging folder, make files read-only, rename it into place."""
        staging = self.staging_dir(key)
        for leftover in ("incoming", "scratch"):
            shutil.rmtree(staging / leftover, ignore_errors=True)
        for path in (staging / "files").rglob("*"):
            if path.is_file():
                path.chmod(0o444)
        tmp = staging / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, staging / MANIFEST)
        os.rename(staging, self.entry_dir(key))
        return self.entry_dir(key)
