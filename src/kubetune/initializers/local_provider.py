"""``file:///path`` URIs and plain paths: a local file or folder, copied into the cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from kubetune.errors import FetchError
from kubetune.initializers.progress import TransferProgress
from kubetune.initializers.providers import DatasetProvider, Listing, ModelProvider, RemoteFile

_CHUNK = 1 << 20


class LocalProvider(ModelProvider, DatasetProvider):
    """Copies a local file or folder. Symlinks inside the folder are followed only when they
    stay inside it; one pointing elsewhere is refused."""

    def source_path(self) -> Path:
        """The local file or folder the URI names."""
        raw = self.location.location
        return Path(raw).expanduser().resolve()

    def identity(self) -> str:
        """The absolute source path (relative paths differ by working directory)."""
        return str(self.source_path())

    def list_files(self) -> Listing:
        """Walk the folder (or take the one file); the version fingerprints sizes and mtimes."""
        root = self.source_path()
        display = self.location.display
        if not root.exists():
            raise FetchError(f"{display}: no such file or folder: {root}")
        if root.is_file():
            entries = [(root.name, root)]
        else:
            entries = []
            for folder, subdirs, names in os.walk(root):
                subdirs.sort()
                for name in sorted(names) + [d for d in subdirs if Path(folder, d).is_symlink()]:
                    path = Path(folder, name)
                    real = path.resolve()
                    if path.is_symlink() and not real.is_relative_to(root):
                        raise FetchError(f"{display}: refusing {path}: it is a symlink pointing outside {root}")
                    if real.is_file():
                        entries.append((path.relative_to(root).as_posix(), real))
        files = [RemoteFile(path=rel, size=real.stat().st_size, handle=str(real)) for rel, real in entries]
        fingerprint = [(f.path, f.size, Path(f.handle).stat().st_mtime_ns) for f in files]
        return Listing(version=hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest(), files=files)

    def download(self, file: RemoteFile, dest: Path, scratch: Path, progress: TransferProgress) -> None:
        """Copy the file in chunks, reporting progress."""
        with open(file.handle, "rb") as source, open(dest, "wb") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
                progress.advance(len(chunk))
