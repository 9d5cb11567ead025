"""A loopback HTTP proxy in front of moto's S3 server that injects faults: error statuses, dropped
connections, slow bodies, and being stopped mid-transfer."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ERROR_BODY = b'<?xml version="1.0"?><Error><Code>{code}</Code><Message>injected</Message></Error>'


class FaultyS3Proxy:
    """Forwards every request to ``upstream``; the attributes below decide which faults to inject.

    Attributes:
        fail_next: answer this many next requests with ``fail_status`` (-1: every request).
        drop_next: on this many next object GETs, send the headers and ``drop_after`` bytes, then close.
        bytes_per_s: stream bodies at this rate (0: as fast as possible).
        requests: ``(method, path, range header, time)`` of every request received.
        drops: when each dropped GET was cut off (taken just before its connection is shut down).
    """

    def __init__(self, upstream: str, port: int = 0) -> None:
        self.upstream = urlsplit(upstream)
        self.fail_next = 0
        self.fail_status = 503
        self.drop_next = 0
        self.drop_after = 0
        self.bytes_per_s = 0
        self.requests: list[tuple[str, str, str | None, float]] = []
        self.drops: list[float] = []
        self.connections: set = set()
        self.stopped = False
        self.held: socket.socket | None = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                proxy.forward(self)

            do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self, hold_port: bool = False) -> None:
        """Stop answering and close the listening socket (transfers in flight break off).

        With ``hold_port`` the port stays bound without listening: connections are refused as by a stopped
        server, but no other process can take the port before a new proxy listens on it (bind that one,
        then :meth:`release_port`).
        """
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()
        if hold_port:
            self.held = socket.socket()
            self.held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.held.bind(("127.0.0.1", self.port))
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def release_port(self) -> None:
        """Unbind the port held by :meth:`stop`."""
        self.held.close()

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests.append((handler.command, handler.path, handler.headers.get("Range"), time.monotonic()))
        self.connections.add(handler.connection)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        if self.fail_next:
            self.fail_next -= 1 if self.fail_next > 0 else 0
            code = "ServiceUnavailable" if self.fail_status == 503 else "InternalError"
            payload = ERROR_BODY.replace(b"{code}", code.encode())
            handler.send_response(self.fail_status)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        headers = {key: value for key, value in handler.headers.items()}
        upstream.request(handler.command, handler.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "date", "server"):
                handler.send_header(key, value)
        handler.end_headers()
        if handler.command == "HEAD":
            return
        is_object = handler.command == "GET" and "list-type" not in handler.path and response.status < 300
        if is_object and self.drop_next:
            self.drop_next -= 1
            handler.wfile.write(data[: self.drop_after])
            handler.wfile.flush()
            handler.close_connection = True
            self.drops.append(time.monotonic())
            handler.connection.shutdown(2)
            return
        chunk = max(1, self.bytes_per_s // 20) if self.bytes_per_s else len(data) or 1
        for start in range(0, len(data), chunk):
            if self.stopped:
                return
            handler.wfile.write(data[start : start + chunk])
            if self.bytes_per_s:
                handler.wfile.flush()
                time.sleep(0.05)
