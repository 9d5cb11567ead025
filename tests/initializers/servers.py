"""Helpers for the initializer tests: a Hub-layout HTTP server, S3 upload, CLI runs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

S3_REGION = "us-east-1"


def upload_folder(client, bucket: str, prefix: str, folder: Path) -> list[str]:
    """Upload every file under ``folder`` to ``s3://bucket/prefix/``; return the relative paths."""
    paths = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            client.upload_file(str(path), bucket, f"{prefix}/{rel}")
            paths.append(rel)
    return paths


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m kubetune.initializers`` in a subprocess (PYTHONPATH points at this checkout)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "kubetune.initializers", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class HubRepo:
    """A repository the fake Hub serves: files at one commit, some stored as LFS."""

    files: dict[str, bytes]
    lfs: set[str] = field(default_factory=set)
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    branches: tuple[str, ...] = ("main",)
    token: str | None = None
    corrupt: set[str] = field(default_factory=set)  # served with wrong bytes


class FakeHub:
    """A real HTTP server answering the Hub endpoints ``huggingface_hub`` 2.x downloads through.

    - ``GET /api/{models,datasets}/<repo>/revision/<rev>``: repo info with the commit ``sha``
    - ``GET /api/{models,datasets}/<repo>/tree/<rev>?recursive=...``: files with size, git blob
      id (``oid``) and, for LFS files, ``lfs.oid`` (sha256) and ``lfs.size``
    - ``HEAD``/``GET /[datasets/]<repo>/resolve/<rev>/<path>``: the file, with ``X-Repo-Commit``,
      ``ETag`` (``X-Linked-Etag``/``X-Linked-Size`` for LFS) and ``Range`` support
    Private repos answer 401 without the right ``Authorization: Bearer`` token.
    """

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], HubRepo] = {}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.handle(self, head=True)

            def do_GET(self) -> None:
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo_id: str, repo: HubRepo, repo_type: str = "model") -> HubRepo:
        """Serve ``repo`` as ``repo_id``."""
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _send(handler, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def _json(self, handler, data) -> None:
        self._send(handler, 200, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def handle(self, handler, head: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        self.requests.append(f"{'HEAD' if head else 'GET'} {path}")
        api = re.match(r"^/api/(models|datasets)/(.+?)/(revision|tree)/([^/]+)$", path)
        resolve = re.match(r"^/(datasets/)?(.+?)/resolve/([^/]+)/(.+)$", path)
        if api:
            repo_type, repo_id, what, rev = api.group(1)[:-1], api.group(2), api.group(3), api.group(4)
        elif resolve:
            repo_type = "dataset" if resolve.group(1) else "model"
            repo_id, what, rev, file_path = resolve.group(2), "resolve", resolve.group(3), resolve.group(4)
        else:
            return self._send(handler, 404, b"not found", head=head)
        repo = self.repos.get((repo_type, repo_id))
        if repo is not None and repo.token is not None:
            auth = handler.headers.get("Authorization")
            if auth != f"Bearer {repo.token}":
                headers = {"X-Error-Message": "Invalid credentials in Authorization header"} if auth else {}
                return self._send(handler, 401, b"unauthorized", headers, head=head)
        if repo is None:
            return self._send(handler, 404, b"", {"X-Error-Code": "RepoNotFound"}, head=head)
        if rev not in (*repo.branches, repo.commit):
            return self._send(handler, 404, b"", {"X-Error-Code": "RevisionNotFound"}, head=head)
        if what == "revision":
            siblings = [{"rfilename": name} for name in repo.files]
            return self._json(handler, {"id": repo_id, "sha": repo.commit, "siblings": siblings, "private": False})
        if what == "tree":
            entries = []
            for name, data in repo.files.items():
                if name in repo.lfs:
                    pointer = (
                        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256(data)}\nsize {len(data)}\n"
                    )
                    entry = {
                        "type": "file",
                        "path": name,
                        "size": len(pointer),
                        "oid": git_blob_id(pointer.encode()),
                        "lfs": {"oid": sha256(data), "size": len(data), "pointerSize": len(pointer)},
                    }
                else:
                    entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
                entries.append(entry)
            return self._json(handler, entries)
        if file_path not in repo.files:
            return self._send(handler, 404, b"", {"X-Error-Code": "EntryNotFound"}, head=head)
        data = repo.files[file_path]
        if file_path in repo.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        headers = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
        if file_path in repo.lfs:
            headers.update({"ETag": f'"{git_blob_id(data)}"', "X-Linked-Etag": f'"{sha256(data)}"'})
            headers["X-Linked-Size"] = str(len(data))
        else:
            headers["ETag"] = f'"{git_blob_id(data)}"'
        status, body = 200, data
        ranged = re.match(r"bytes=(\d+)-$", handler.headers.get("Range", ""))
        if ranged and not head:
            start = int(ranged.group(1))
            status, body = 206, data[start:]
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return self._send(handler, status, body, headers, head=head)


def git_blob_id(data: bytes) -> str:
    """The git blob id (sha1 of ``blob <size>\\0`` + content)."""
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


#: A small alpaca dataset the S3 and archive tests upload, initialize and train on.
ROWS = [{"instruction": f"Repeat the word {w}.", "output": w} for w in ("apple", "river", "stone", "cloud")] * 4


def train_on_initialized_run(run: Path):
    """Two LoRA steps of the real trainer on ``run/model`` and ``run/dataset`` (what initializers filled)."""
    from kubetune.spec.job import JobSpec
    from kubetune.trainer.run import run_training

    spec = JobSpec.model_validate(
        {
            "trainer": {
                "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 64},
                "output": {"save_merged": False},
            }
        }
    )
    result = run_training(spec, run)
    assert result.steps == 2 and all(loss == loss for loss in result.losses)  # NaN != NaN
    return result
