"""A small in-memory Kubernetes API server on loopback, for testing the SDK's API calls without a cluster.

It speaks the REST paths the Kubernetes backend uses, with the API server's status codes and
``Status`` bodies: create/get/list/delete of namespaced custom objects (TrainJobs,
TrainingRuntimes) and cluster-scoped ones (ClusterTrainingRuntimes), ConfigMaps, pods (list
with an equality label selector), pod logs (plain or ``follow=true``, streamed in chunks),
events, and JSON merge patches (RFC 7386) of an object or of its ``/status`` subresource.
Every request is recorded with its headers. Tests play the controller by editing ``objects``
directly.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ApiServerState:
    """Objects by collection path (``/apis/g/v/namespaces/ns/trainjobs``) then name, logs, requests."""

    objects: dict[str, dict[str, dict]] = field(default_factory=dict)
    logs: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (pod, container) -> lines
    log_delay_s: float = 0.0  # between streamed lines with follow=true
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, collection: str, obj: dict) -> dict:
        """Store ``obj`` (adding uid, creationTimestamp, resourceVersion) as the API server would on create."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now())
        meta["resourceVersion"] = str(len(self.requests) + 1)
        self.objects.setdefault(collection, {})[meta["name"]] = obj
        return obj

    def made(self, method: str, path_part: str) -> list[Request]:
        """The recorded requests of ``method`` whose path contains ``path_part``."""
        return [r for r in self.requests if r.method == method and path_part in r.path]


def now() -> str:
    """The current time as the API server writes it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _matches(obj: dict, selector: str | None) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, sep, value = term.partition("=")
        if sep and labels.get(key) != value:
            return False
        if not sep and key not in labels:
            return False
    return True


def _status(code: int, reason: str, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, method: str) -> tuple[str, dict[str, str], Any]:
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        state = self.server.state
        with state.lock:
            state.requests.append(Request(method, parts.path, query, body, dict(self.headers.items())))
        return parts.path, query, body

    @staticmethod
    def _split(path: str) -> tuple[str, str | None]:
        """(collection, name) of a path; name None for a collection."""
        segments = path.rstrip("/").split("/")
        # collections end in a plural: /api/v1/namespaces/ns/pods, /apis/g/v/clustertrainingruntimes
        depth = 4 if segments[1] == "api" else 5
        if "namespaces" in segments:
            depth += 2
        if len(segments) == depth:
            return path.rstrip("/"), None
        return "/".join(segments[:depth]), segments[depth]

    def do_GET(self) -> None:
        path, query, _ = self._record("GET")
        state = self.server.state
        if path.endswith("/log"):
            return self._log(path, query)
        collection, name = self._split(path)
        with state.lock:
            stored = state.objects.get(collection, {})
            if name is None:
                items = [obj for obj in stored.values() if _matches(obj, query.get("labelSelector"))]
                return self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items})
            if name not in stored:
                return self._send(404, _status(404, "NotFound", f"{collection.rsplit('/', 1)[-1]} {name!r} not found"))
            return self._send(200, stored[name])

    def do_POST(self) -> None:
        path, _, body = self._record("POST")
        state = self.server.state
        collection, _ = self._split(path)
        name = body["metadata"]["name"]
        with state.lock:
            if name in state.objects.get(collection, {}):
                return self._send(409, _status(409, "AlreadyExists", f"{name!r} already exists"))
            return self._send(201, state.put(collection, body))

    def do_DELETE(self) -> None:
        path, _, _ = self._record("DELETE")
        state = self.server.state
        collection, name = self._split(path)
        with state.lock:
            stored = state.objects.get(collection, {})
            if name not in stored:
                return self._send(404, _status(404, "NotFound", f"{name!r} not found"))
            obj = stored.pop(name)
        return self._send(200, obj)

    def do_PATCH(self) -> None:
        path, _, body = self._record("PATCH")
        state = self.server.state
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            return self._send(415, _status(415, "UnsupportedMediaType", "only merge patches are served"))
        status_only = path.endswith("/status")
        collection, name = self._split(path.removesuffix("/status"))
        with state.lock:
            stored = state.objects.get(collection, {})
            if name not in stored:
                return self._send(404, _status(404, "NotFound", f"{name!r} not found"))
            if status_only:  # the status subresource ignores everything but status
                body = {"status": (body or {}).get("status")}
            patched = merge_patch(stored[name], body)
            patched["metadata"]["resourceVersion"] = str(len(state.requests) + 1)
            stored[name] = patched
        return self._send(200, patched)

    def _log(self, path: str, query: dict[str, str]) -> None:
        pod = path.split("/")[-2]
        state = self.server.state
        lines = state.logs.get((pod, query.get("container", "")))
        if lines is None:
            return self._send(400, _status(400, "BadRequest", f"container {query.get('container')!r} is not valid"))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        if query.get("follow") != "true":
            data = "".join(f"{line}\n" for line in lines).encode()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in lines:  # one chunk per line, split mid-line, as a live container writes
            data = f"{line}\n".encode()
            for piece in (data[: len(data) // 2], data[len(data) // 2 :]):
                if piece:
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.flush()
            time.sleep(state.log_delay_s)
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ApiServerState):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@contextmanager
def serve_api() -> Iterator[tuple[str, ApiServerState]]:
    """Run the API server on a free loopback port; yield its base URL and state."""
    state = ApiServerState()
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
