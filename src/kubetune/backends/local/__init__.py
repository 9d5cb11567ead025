"""The local backend: jobs as detached process trees on this machine, state in SQLite."""

from kubetune.backends.local.backend import LocalBackend, default_home

__all__ = ["LocalBackend", "default_home"]
