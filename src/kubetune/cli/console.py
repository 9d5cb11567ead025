"""The two rich consoles every command prints through: results to stdout, errors to stderr."""

from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
