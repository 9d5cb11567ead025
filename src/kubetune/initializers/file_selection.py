"""Which remote files an initializer fetches, and where each may land.

Every provider's listing passes through here, custom providers included: paths that would
escape the target folder are rejected, then allow/ignore patterns are applied (fnmatch-style
globs matched against the whole relative path, as ``huggingface_hub`` does).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import PurePosixPath

from kubetune.errors import FetchError

# Weight formats that duplicate safetensors weights; skipped by default for models that have
# safetensors files.
DUPLICATE_WEIGHT_PATTERNS = (
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.h5",
    "*.msgpack",
    "*.onnx",
    "*.onnx_data",
    "*.ot",
    "*.tflite",
    "*.mlmodel",
)


def safe_relative_path(path: str, source: str) -> str:
    """Return ``path`` as a normalized relative POSIX path, or refuse it.

    Raises:
        FetchError: the path is empty, absolute, contains ``..``, a backslash, a drive or a NUL.
    """
    if not path or "\x00" in path or "\\" in path or path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise FetchError(f"{source}: refusing file {path!r}: its path would escape the target folder")
    parts = [part for part in PurePosixPath(path).parts if part != "."]
    if not parts or ".." in parts:
        raise FetchError(f"{source}: refusing file {path!r}: its path would escape the target folder")
    return "/".join(parts)


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(
        fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.rstrip("/") + "/*") for pattern in patterns
    )


def select_paths(
    paths: Sequence[str],
    allow_patterns: Sequence[str] | None,
    ignore_patterns: Sequence[str] | None,
    skip_duplicate_weights: bool,
) -> list[str]:
    """The paths to fetch, in the listing's order.

    ``skip_duplicate_weights`` (models, when the user gave no ignore patterns) drops the
    :data:`DUPLICATE_WEIGHT_PATTERNS` formats if any ``*.safetensors`` file is selected.
    """
    selected = [p for p in paths if allow_patterns is None or _matches(p, allow_patterns)]
    selected = [p for p in selected if not (ignore_patterns and _matches(p, ignore_patterns))]
    if skip_duplicate_weights and any(p.endswith(".safetensors") for p in selected):
        selected = [p for p in selected if not _matches(p, DUPLICATE_WEIGHT_PATTERNS)]
    return selected
