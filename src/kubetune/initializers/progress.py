"""Download progress as log lines: bytes done, total, bytes/s and time left.

Initializers run in containers whose output is read as logs, so progress is a log line every
few seconds (and one at the end) rather than a terminal bar.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("kubetune.initializers")


def format_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class TransferProgress:
    """Counts bytes of one initializer's downloads and logs progress with the transfer rate.

    Args:
        label: what is being fetched (``model s3://bucket/prefix``), shown on every line.
        total_bytes: bytes to download (files already complete are not counted).
        total_files: files to download.
        interval: seconds between progress lines.
    """

    def __init__(self, label: str, total_bytes: int, total_files: int, interval: float = 2.0) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.interval = interval
        self.done_bytes = 0
        self.done_files = 0
        self._start = time.monotonic()
        self._last_log = self._start
        self._lock = threading.Lock()

    def advance(self, count: int) -> None:
        """Record ``count`` more bytes received; log a line if the interval has passed."""
        with self._lock:
            self.done_bytes += count
            now = time.monotonic()
            if now - self._last_log >= self.interval:
                self._last_log = now
                log.info("%s", self._line(now))

    def file_done(self) -> None:
        """Record one more complete file."""
        with self._lock:
            self.done_files += 1

    @property
    def rate(self) -> float:
        """Mean bytes per second since the start."""
        return self.done_bytes / max(time.monotonic() - self._start, 1e-6)

    def finish(self) -> float:
        """Log the final line; return the elapsed seconds."""
        elapsed = time.monotonic() - self._start
        log.info(
            "%s: downloaded %s in %d files in %.1f s (%s/s)",
            self.label,
            format_bytes(self.done_bytes),
            self.done_files,
            elapsed,
            format_bytes(self.done_bytes / max(elapsed, 1e-6)),
        )
        return elapsed

    def _line(self, now: float) -> str:
        rate = self.done_bytes / max(now - self._start, 1e-6)
        percent = 100.0 * self.done_bytes / self.total_bytes if self.total_bytes else 100.0
        left = (self.total_bytes - self.done_bytes) / rate if rate > 0 else float("inf")
        eta = f"{left:.0f} s" if left != float("inf") else "?"
        return (
            f"{self.label}: {format_bytes(self.done_bytes)} / {format_bytes(self.total_bytes)} ({percent:.0f}%), "
            f"{format_bytes(rate)}/s, {self.done_files}/{self.total_files} files, eta {eta}"
        )
