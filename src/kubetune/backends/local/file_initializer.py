"""Fallback initializer step for local sources: ``python -m kubetune.backends.local.file_initializer``.

Same command line as ``python -m kubetune.initializers model|dataset --uri URI --target DIR``,
which the local backend prefers when it is installed. This one only handles local paths,
``file://`` and ``pkg://`` URIs: it copies a folder's contents, or a single file, into the
target (hard links where the filesystem allows, so large models cost no space or time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from kubetune.errors import ConfigError, KubetuneError
from kubetune.initializers.package_files import is_package_uri, resolve_package_file


def local_source_path(uri: str) -> Path:
    """The local path a local path, ``file://`` or ``pkg://`` URI names.

    Raises:
        ConfigError: another scheme, or the path does not exist.
    """
    if is_package_uri(uri):
        return resolve_package_file(uri)
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"{uri}: only local paths, file:// and pkg:// URIs can be fetched by the local initializer")
    path = Path(uri.removeprefix("file://")).expanduser()
    if not path.exists():
        raise ConfigError(f"{uri}: no such file or directory")
    return path


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def copy_local_storage(uri: str, target: Path) -> Path:
    """Put the contents of the folder (or the single file) ``uri`` names into ``target``."""
    source = local_source_path(uri)
    target.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link_or_copy, dirs_exist_ok=True)
    else:
        _link_or_copy(str(source), str(target / source.name))
    return target


def main(argv: list[str] | None = None) -> int:
    """Copy one source into the run directory; user errors print one line and exit 2."""
    parser = argparse.ArgumentParser(prog="python -m kubetune.backends.local.file_initializer", description=__doc__)
    parser.add_argument("kind", choices=["model", "dataset"])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--target", required=True)
    args = parser.parse_args(argv)
    try:
        target = copy_local_storage(args.uri, Path(args.target))
    except KubetuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    count = sum(1 for p in target.rglob("*") if p.is_file())
    print(f"{args.kind}: {count} files from {args.uri} in {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
