"""Running one initializer: list, select, fetch into the verified cache, materialize.

:func:`run_initializer` is what every backend calls: the local backend directly, the
Kubernetes controller through ``python -m kubetune.initializers`` in an init container.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kubetune.errors import FetchError, KubetuneError
from kubetune.initializers.archives import ARCHIVE_SUFFIXES, archive_suffix, unpack_archives
from kubetune.initializers.cache import Cache, cache_key, check_against_source, default_cache_dir, digest_file
from kubetune.initializers.file_selection import safe_relative_path, select_paths
from kubetune.initializers.package_files import resolve_package_file
from kubetune.initializers.progress import TransferProgress, format_bytes
from kubetune.initializers.providers import Kind, Listing, Provider, RemoteFile, TransientFetchError
from kubetune.initializers.registry import provider_class
from kubetune.initializers.secrets import scrub
from kubetune.initializers.sources import StorageLocation
from kubetune.spec.initializer import DatasetInitializer, InitializerSpec, Materialize, ModelInitializer

log = logging.getLogger("kubetune.initializers")

# Kept free on the cache's file system beyond the bytes to download.
DISK_RESERVE_BYTES = 64 << 20
# Attempts per file when the connection breaks mid-download, and the first backoff (doubling).
DOWNLOAD_ATTEMPTS = 4
RETRY_BASE_S = 0.5
MARKER = ".kubetune-entry"


@dataclass(frozen=True)
class InitializerResult:
    """What an initializer did.

    Attributes:
        kind: ``model`` or ``dataset``.
        uri: the storage URI, redacted for display.
        target: the folder the job reads (``<run>/model``...).
        entry: the cache entry's ``files`` folder the target shows.
        key: the cache key.
        cache_hit: ``True`` when nothing was downloaded.
        files: number of files in the entry.
        total_bytes: bytes in the entry.
        downloaded_bytes: bytes received in this run.
        seconds: wall time of the whole step.
    """

    kind: Kind
    uri: str
    target: Path
    entry: Path
    key: str
    cache_hit: bool
    files: int
    total_bytes: int
    downloaded_bytes: int
    seconds: float


def run_initializer(
    spec: ModelInitializer | DatasetInitializer,
    target_dir: str | Path,
    cache_dir: str | Path | None = None,
) -> InitializerResult:
    """Fetch what ``spec`` names into the cache and make it appear at ``target_dir``.

    Args:
        spec: a model or dataset initializer spec.
        target_dir: the folder the job reads, e.g. ``<run>/model``; created (as a symlink to
            the cache entry, or a copy, per ``spec.materialize``). An existing symlink or a folder
            an earlier initializer made is replaced; another non-empty folder is refused.
        cache_dir: the cache root; default :func:`~kubetune.initializers.cache.default_cache_dir`.

    Raises:
        FetchError: unknown scheme, missing source, refused credentials, nothing to fetch,
            unsafe paths, too little disk, or a download that fails verification.
        ConfigError: a secret reference cannot be read.
    """
    started = time.monotonic()
    try:
        return _run(spec, Path(target_dir), Path(cache_dir) if cache_dir is not None else default_cache_dir(), started)
    except KubetuneError as err:
        message = scrub(str(err))
        if message == str(err):
            raise
        raise type(err)(message) from None


def _run(spec: InitializerSpec, target: Path, cache_root: Path, started: float) -> InitializerResult:
    kind: Kind = spec.kind  # type: ignore[attr-defined]
    location = StorageLocation.parse(spec.storage_uri)
    label = f"{kind} {location.display}"
    provider = provider_class(location.scheme, kind, location.display)(spec, location, kind)
    provider.check()
    listing = provider.list_files()
    chosen = _choose(spec, kind, location, listing)
    cache = Cache(cache_root)
    key = cache_key(
        {
            "kind": kind,
            "scheme": location.scheme,
            "location": location.location,
            "revision": spec.revision,
            "version": listing.version,
            "allow": spec.allow_patterns,
            "ignore": spec.ignore_patterns,
            "options": spec.options,
            "source": provider.identity(),
            **({"extract": True} if spec.extract else {}),
        }
    )
    downloaded = 0
    with cache.locked(key, label):
        hit = False
        if cache.entry_dir(key).exists():
            problem = cache.verify_entry(key)
            if problem is None:
                hit = True
                log.info("%s: cache hit (entry %s)", label, key[:16])
            else:
                log.warning("%s: cached entry %s is corrupted (%s); fetching it again", label, key[:16], problem)
                cache.discard_entry(key)
        if not hit:
            downloaded = _fill(cache, key, provider, chosen, listing, label, spec)
        entry = cache.entry_dir(key) / "files"
        _materialize(entry, target, spec.materialize, key)
        entry_files = (cache.read_manifest(key) or {}).get("files", {})
    total = sum(meta["size"] for meta in entry_files.values())
    log.info("%s: %d files (%s) ready at %s", label, len(entry_files), format_bytes(total), target)
    return InitializerResult(
        kind=kind,
        uri=location.display,
        target=target,
        entry=entry,
        key=key,
        cache_hit=hit,
        files=len(entry_files),
        total_bytes=total,
        downloaded_bytes=downloaded,
        seconds=time.monotonic() - started,
    )


def _choose(spec: InitializerSpec, kind: Kind, location: StorageLocation, listing: Listing) -> list[RemoteFile]:
    if not listing.files:
        raise FetchError(f"{location.display}: no files found there (empty prefix or folder?)")
    by_path: dict[str, RemoteFile] = {}
    for file in listing.files:
        path = safe_relative_path(file.path, location.display)
        if path in by_path:
            raise FetchError(f"{location.display}: two files map to the same path {path!r}")
        by_path[path] = file if path == file.path else RemoteFile(**{**file.__dict__, "path": path})
    selected = select_paths(
        list(by_path),
        spec.allow_patterns,
        spec.ignore_patterns,
        skip_duplicate_weights=kind == "model" and spec.ignore_patterns is None,
    )
    if not selected:
        raise FetchError(
            f"{location.display}: none of its {len(by_path)} files match allow_patterns={spec.allow_patterns} "
            f"ignore_patterns={spec.ignore_patterns}"
        )
    if spec.extract and not any(archive_suffix(p) for p in selected):
        raise FetchError(
            f"{location.display}: extract is set but none of the {len(selected)} selected files is an archive "
            f"({', '.join(ARCHIVE_SUFFIXES)})"
        )
    return [by_path[p] for p in selected]


def _fill(
    cache: Cache,
    key: str,
    provider: Provider,
    chosen: list[RemoteFile],
    listing: Listing,
    label: str,
    spec: InitializerSpec,
) -> int:
    """Download what the staging folder lacks, verify, publish; return bytes received."""
    staging = cache.staging_dir(key)
    files_dir, incoming, scratch = staging / "files", staging / "incoming", staging / "scratch"
    digests: dict[str, str] = {}
    pending: list[RemoteFile] = []
    for file in chosen:
        done = files_dir / file.path
        if done.is_file() and done.stat().st_size == file.size:
            continue  # verified and moved in by an earlier, interrupted attempt
        done.unlink(missing_ok=True)
        pending.append(file)
    partial = sum((incoming / f.path).stat().st_size for f in pending if (incoming / f.path).is_file())
    needed = sum(f.size for f in pending) - (partial if provider.supports_resume else 0)
    _check_free_space(cache.root, needed, label)
    for folder in (files_dir, incoming, scratch):
        folder.mkdir(parents=True, exist_ok=True)
    if len(pending) < len(chosen):
        log.info("%s: resuming: %d of %d files already downloaded", label, len(chosen) - len(pending), len(chosen))
    progress = TransferProgress(label, needed, len(pending))
    try:
        for file in pending:
            dest = incoming / file.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists() and provider.supports_resume and dest.stat().st_size < file.size:
                log.info("%s: resuming %s at %s", label, file.path, format_bytes(dest.stat().st_size))
            elif dest.exists():
                dest.unlink()
            _download_with_retries(provider, file, dest, scratch, progress, label)
            if dest.is_symlink() or not dest.is_file():
                raise FetchError(f"{label}: provider wrote no regular file for {file.path}")
            digest, problem = check_against_source(dest, file)
            if problem is not None:
                dest.unlink()
                raise FetchError(f"{label}: {file.path}: downloaded file failed verification: {problem}")
            final = files_dir / file.path
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(dest, final)
            digests[file.path] = digest.sha256
            progress.file_done()
    except (TransientFetchError, KeyboardInterrupt, SystemExit):
        log.warning("%s: download interrupted; the next run resumes from %s", label, staging)
        raise
    except KubetuneError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress.finish()
    for file in chosen:
        if file.path not in digests:
            digests[file.path] = digest_file(files_dir / file.path).sha256
    if spec.extract:
        digests = _unpack(cache, staging, [f.path for f in chosen], digests, label, spec)
    manifest = {
        "uri": StorageLocation.parse(spec.storage_uri).display,
        "version": listing.version,
        "files": {
            path: {"size": (files_dir / path).stat().st_size, "sha256": sha256} for path, sha256 in digests.items()
        },
    }
    cache.publish(key, manifest)
    return progress.done_bytes


def _unpack(
    cache: Cache, staging: Path, paths: list[str], digests: dict[str, str], label: str, spec: InitializerSpec
) -> dict[str, str]:
    """Replace the downloaded archives in ``staging/files`` by their contents; return the new path -> sha256.

    A refused or unreadable archive removes the staging folder (no partial entry); an
    interruption leaves the downloads in place and the next run unpacks again.
    """
    free = shutil.disk_usage(cache.root).free - DISK_RESERVE_BYTES
    try:
        unpacked = unpack_archives(
            staging / "files", staging / "unpacking", paths, label, spec.extract_max_bytes, max(free, 0)
        )
    except KubetuneError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    kept = {path: sha256 for path, sha256 in digests.items() if archive_suffix(path) is None}
    return {**kept, **unpacked}


def _download_with_retries(
    provider: Provider, file: RemoteFile, dest: Path, scratch: Path, progress: TransferProgress, label: str
) -> None:
    """Download one file; a broken connection is retried with exponential backoff (resuming where it stopped
    when the provider can), and the last error is raised after :data:`DOWNLOAD_ATTEMPTS` attempts."""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            provider.download(file, dest, scratch, progress)
            return
        except TransientFetchError as err:
            if attempt == DOWNLOAD_ATTEMPTS:
                raise TransientFetchError(f"{err} (gave up after {attempt} attempts)") from None
            delay = RETRY_BASE_S * 2 ** (attempt - 1)
            log.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d)", label, err, delay, attempt + 1, DOWNLOAD_ATTEMPTS
            )
            time.sleep(delay)
            if not provider.supports_resume:
                dest.unlink(missing_ok=True)


def _check_free_space(root: Path, needed: int, label: str) -> None:
    free = shutil.disk_usage(root).free
    if needed + DISK_RESERVE_BYTES > free:
        raise FetchError(
            f"{label}: needs {format_bytes(needed)} in the cache at {root} but only {format_bytes(free)} is free"
        )


def _materialize(entry: Path, target: Path, mode: Materialize, key: str) -> None:
    """Make ``target`` show the entry: a symlink to it, or a copy marked with the key."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        marker = target / MARKER
        if marker.is_file():
            if mode == "copy" and marker.read_text(encoding="utf-8").strip() == key:
                return
            shutil.rmtree(target)
        elif any(target.iterdir()):
            raise FetchError(f"{target}: exists and is not empty; refusing to overwrite it")
        else:
            target.rmdir()
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    if mode == "symlink":
        os.symlink(entry, tmp, target_is_directory=True)
    else:
        shutil.copytree(entry, tmp, copy_function=shutil.copyfile)
        (tmp / MARKER).write_text(key + "\n", encoding="utf-8")
    os.replace(tmp, target)


def check_initializer(spec: InitializerSpec) -> None:
    """Cheap checks before a job is accepted: a provider exists for the scheme, and a local source exists.

    Raises:
        FetchError: unknown scheme, a provider that cannot fetch this kind, or a missing local path.
        ConfigError: a ``pkg://`` URI naming an absent distribution or file.
    """
    location = StorageLocation.parse(spec.storage_uri)
    provider_class(location.scheme, spec.kind, location.display)
    if location.scheme == "file":
        path = Path(location.location).expanduser()
        if not path.exists():
            raise FetchError(f"{location.display}: no such file or directory")
    elif location.scheme == "pkg":
        resolve_package_file(spec.storage_uri)
