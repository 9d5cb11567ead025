"""Where a model's files are: resolving config paths and checking a model folder (no torch needed).

Light on purpose: the local backend uses it to check a job before launching anything.
"""

from __future__ import annotations

from pathlib import Path

from kubetune.errors import ConfigError, ModelError
from kubetune.initializers.package_files import is_package_uri, resolve_package_file


def resolve_local(value: str | None, default: Path, what: str) -> Path:
    """The local path behind a config value: a plain path, a ``pkg://`` URI, or ``default``."""
    if value is None:
        return default
    if is_package_uri(value):
        return resolve_package_file(value)
    if "://" in value and not value.startswith("file://"):
        raise ConfigError(
            f"{what}: {value!r} is a remote URI; the trainer reads local paths only (fetch it with an initializer)"
        )
    return Path(value.removeprefix("file://")).expanduser()


def pretrained_location(path: Path) -> tuple[str, dict]:
    """``from_pretrained`` arguments for a model folder or a single ``.gguf`` file.

    A folder without ``config.json`` that holds exactly one ``.gguf`` file (what a model
    initializer leaves for a GGUF source) stands for that file.

    Raises:
        ModelError: the path does not exist or is neither a model folder nor a ``.gguf`` file.
    """
    if not path.exists():
        raise ModelError(f"model not found: {path}")
    if path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            path = ggufs[0]
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelError(f"{path}: a model file must be .gguf; otherwise give the model folder")
        return str(path.parent), {"gguf_file": path.name}
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: not a Hugging Face model folder (no config.json)")
    return str(path), {}
