"""Which provider handles which URI scheme.

Built-in schemes: ``hf``, ``s3``, ``file`` (and plain paths), ``pkg``. Others come from
:func:`register_provider` calls or from entry points in the ``kubetune.providers`` group
(name = scheme, value = ``module:Class``), loaded the first time an unknown scheme is asked for.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import re

from kubetune.errors import ConfigError, FetchError
from kubetune.initializers.providers import DatasetProvider, Kind, ModelProvider, Provider

ENTRY_POINT_GROUP = "kubetune.providers"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")

_BUILTIN = {
    "hf": "kubetune.initializers.hf_provider:HuggingFaceProvider",
    "s3": "kubetune.initializers.s3_provider:S3Provider",
    "file": "kubetune.initializers.local_provider:LocalProvider",
    "pkg": "kubetune.initializers.package_files:PackageProvider",
}
_registered: dict[str, type[Provider]] = {}


def register_provider(scheme: str, provider: type[Provider]) -> None:
    """Make ``provider`` handle ``scheme://`` URIs (replacing any earlier registration).

    The kinds it serves follow from its bases: :class:`ModelProvider`, :class:`DatasetProvider`
    or both.

    Raises:
        ConfigError: ``scheme`` is not a valid URI scheme, or ``provider`` subclasses neither base.
    """
    if not _SCHEME.match(scheme):
        raise ConfigError(f"provider scheme {scheme!r}: use lowercase letters, digits, '+', '-' or '.'")
    if not (isinstance(provider, type) and issubclass(provider, (ModelProvider, DatasetProvider))):
        raise ConfigError(f"provider for {scheme!r} must subclass ModelProvider or DatasetProvider")
    _registered[scheme] = provider


def unregister_provider(scheme: str) -> None:
    """Forget a provider registered with :func:`register_provider` (built-ins come back)."""
    _registered.pop(scheme, None)


def _load(target: str, what: str) -> type[Provider]:
    module_name, _, attr = target.partition(":")
    try:
        provider = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise FetchError(f"{what}: cannot load provider {target}: {err}") from None
    return provider


def _from_entry_points(scheme: str) -> type[Provider] | None:
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == scheme:
            try:
                provider = entry.load()
            except Exception as err:  # a broken plugin is the user's to fix; say which
                raise FetchError(f"{scheme}://: cannot load provider entry point {entry.value}: {err}") from None
            register_provider(scheme, provider)
            return provider
    return None


def provider_class(scheme: str, kind: Kind, uri: str) -> type[Provider]:
    """The provider class for ``scheme`` that can fetch ``kind``; ``uri`` (redacted) names errors.

    Raises:
        FetchError: no provider handles the scheme, or it cannot fetch this kind.
    """
    provider = _registered.get(scheme)
    if provider is None and scheme in _BUILTIN:
        provider = _load(_BUILTIN[scheme], uri)
    if provider is None:
        provider = _from_entry_points(scheme)
    if provider is None:
        known = sorted({*_BUILTIN, *_registered})
        raise FetchError(
            f"{uri}: unknown storage scheme {scheme!r} (known: {', '.join(known)}; "
            f"custom providers register with register_provider() or the {ENTRY_POINT_GROUP!r} entry point group)"
        )
    base = ModelProvider if kind == "model" else DatasetProvider
    if not issubclass(provider, base):
        raise FetchError(f"{uri}: the {scheme}:// provider {provider.__name__} cannot fetch a {kind}")
    return provider
