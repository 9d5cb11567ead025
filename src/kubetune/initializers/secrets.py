"""Reading secrets from their references, and keeping their values out of every message.

A :class:`~kubetune.spec.initializer.SecretRef` names where a secret lives; its value is read
only here, when the initializer runs. Every value read is remembered for the life of the
process so that :func:`scrub` can blank it out of any text about to be logged or raised, and
:class:`ScrubbingFilter` does that for log records.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kubetune.errors import ConfigError
from kubetune.spec.initializer import SecretRef

_READ_VALUES: set[str] = set()
REDACTED = "***"


def read_secret(ref: SecretRef, what: str) -> str:
    """Return the secret ``ref`` points to; ``what`` names its use in error messages.

    Raises:
        ConfigError: the variable is unset or empty, the file is missing or empty, or the
            reference is a Kubernetes Secret that was not injected into this process.
    """
    if ref.file is not None:
        path = Path(ref.file).expanduser()
        if not path.is_file():
            raise ConfigError(f"{what}: secret file {path} not found")
        value = path.read_text(encoding="utf-8").strip()
        if not value:
            raise ConfigError(f"{what}: secret file {path} is empty")
    else:
        name = ref.env_var_name()
        value = os.environ.get(name, "").strip()
        if not value:
            if ref.kubernetes is not None:
                raise ConfigError(
                    f"{what}: {ref.describe()} is not available here (expected in environment variable {name}; "
                    "the local backend cannot read cluster Secrets, use env or file)"
                )
            raise ConfigError(f"{what}: environment variable {name} is not set or empty")
    remember_secret(value)
    return value


def remember_secret(value: str) -> None:
    """Register a secret value so that :func:`scrub` hides it from now on."""
    if len(value) >= 4:  # very short values would blank out ordinary words
        _READ_VALUES.add(value)


def scrub(text: str) -> str:
    """``text`` with every remembered secret value replaced by ``***``."""
    for value in sorted(_READ_VALUES, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


class ScrubbingFilter(logging.Filter):
    """A logging filter that removes remembered secret values from log messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the record's message, scrubbed, in place of its format and arguments."""
        if _READ_VALUES:
            record.msg = scrub(record.getMessage())
            record.args = None
        return True
