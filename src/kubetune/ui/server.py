"""Serving the dashboard: a token generated per start, loopback by default, the URL printed like Jupyter's."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable

from kubetune.client import TrainerClient
from kubetune.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8265


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    """The warning to print when the dashboard listens beyond this machine (None on loopback)."""
    if is_loopback(host):
        return None
    return (
        f"warning: serving on {host}: anyone who can reach this address and has the token can cancel and "
        "delete jobs; traffic is plain HTTP (use an SSH tunnel or a TLS proxy)"
    )


def dashboard_url(host: str, port: int, token: str) -> str:
    """``http://127.0.0.1:8265/?token=...``: the address to open (a wildcard host shows as 127.0.0.1)."""
    shown = DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={token}"


def serve(
    client: TrainerClient,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard of ``client`` until interrupted; prints the URL (with the token) first.

    Raises:
        ConfigError: FastAPI or uvicorn is missing (install the ``ui`` extra).
    """
    try:
        import uvicorn

        from kubetune.ui.app import create_app
    except ImportError as err:
        raise ConfigError(f"kubetune ui needs the ui extra: pip install 'kubetune[ui]' ({err})") from None
    echo = echo or _print_now
    token = token or secrets.token_urlsafe(24)
    app = create_app(client, token)
    warning = exposure_warning(host)
    if warning:
        echo(warning)
    echo(f"kubetune dashboard: {dashboard_url(host, port, token)}")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _print_now(line: str) -> None:
    print(line, flush=True)
