"""What the exporter pushes from a run directory, and its record of what it pushed (``output/push.json``).

The record makes a push resumable: a file whose checksum matches an upload recorded as complete
is not sent again, and an interrupted multipart upload continues with its missing parts.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.contracts.run_dir import RunDir

_READ = 1 << 20


@dataclass(frozen=True)
class LocalFile:
    """A file to push: its path in the run and its key below the target (``merged/model.safetensors``)."""

    path: Path
    key: str
    size: int


def result_files(layout: RunDir) -> list[LocalFile]:
    """The results of a run: ``adapter/``, ``merged/``, ``loss.png``, ``metrics.jsonl`` and ``config.yaml``.

    Checkpoints, caches and tracker files stay behind.
    """
    paths: list[Path] = []
    for folder in (layout.adapter, layout.merged):
        if folder.is_dir():
            paths += sorted(path for path in folder.rglob("*") if path.is_file())
    paths += [path for path in (layout.loss_curve, layout.metrics_file, layout.config_file) if path.is_file()]
    return [LocalFile(path, path.relative_to(layout.output).as_posix(), path.stat().st_size) for path in paths]


def file_digests(path: Path, part_size: int) -> tuple[str, list[bytes]]:
    """The file's sha256 (hex) and the md5 digest of each ``part_size`` part (one part for a small file)."""
    sha = hashlib.sha256()
    parts: list[bytes] = []
    with path.open("rb") as handle:
        while True:
            part = handle.read(part_size)
            if not part and parts:
                break
            sha.update(part)
            parts.append(hashlib.md5(part).digest())
            if len(part) < part_size:
                break
    return sha.hexdigest(), parts


class PushRecord:
    """``output/push.json``: the target, and per key the file's sha256 and upload state."""

    def __init__(self, layout: RunDir, target: str):
        self.path = layout.push_manifest
        self.target = target
        data: dict[str, Any] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except ValueError:
                data = {}
        self.files: dict[str, dict[str, Any]] = data.get("files", {}) if data.get("target") == target else {}

    def save(self) -> None:
        """Write the record atomically."""
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"target": self.target, "files": self.files}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    def keys(self) -> set[str]:
        """The keys this job put (or began to put) under the target."""
        return set(self.files)
