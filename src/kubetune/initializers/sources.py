"""Parsing storage URIs into a scheme and a location, and redacting them for messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://(.*)$", re.DOTALL)


@dataclass(frozen=True)
class StorageLocation:
    """A storage URI split into what providers need.

    Attributes:
        uri: the URI as the user wrote it (never holds credentials: the spec rejects them).
        scheme: ``hf``, ``s3``, ``file``, ``pkg`` or a custom scheme; plain paths are ``file``.
        location: everything after ``scheme://`` (for plain paths, the path itself).
    """

    uri: str
    scheme: str
    location: str

    @classmethod
    def parse(cls, uri: str) -> StorageLocation:
        """Split ``uri``; a value without ``scheme://`` is a local path."""
        match = _SCHEME.match(uri)
        if match is None:
            return cls(uri=uri, scheme="file", location=uri)
        return cls(uri=uri, scheme=match.group(1), location=match.group(2))

    @property
    def display(self) -> str:
        """The URI safe to show: any user-info and query string replaced by ``***``."""
        return redact_uri(self.uri)


def redact_uri(uri: str) -> str:
    """Hide credentials a URI may carry (``user:password@``, query strings such as signatures)."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
