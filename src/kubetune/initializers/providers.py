"""The provider contract: how an initializer lists and downloads files for one URI scheme.

A provider answers two questions about a storage URI: *what is there* (:meth:`Provider.list_files`,
a pinned listing with sizes and, where the source publishes them, checksums) and *give me this
file* (:meth:`Provider.download`). Everything else (pattern selection, path safety, the
verified content-addressed cache, progress, materializing into the run folder) is shared, so
a custom provider is a short class:

.. code-block:: python

    from kubetune.initializers import ModelProvider, Listing, RemoteFile, register_provider

    class MyStoreProvider(ModelProvider):
        def list_files(self) -> Listing:
            ...  # self.location.location is what follows "mystore://"

        def download(self, file, dest, scratch, progress) -> None:
            ...  # write the file's bytes to dest, calling progress.advance(n)

    register_provider("mystore", MyStoreProvider)

or, from an installed package, an entry point in the ``kubetune.providers`` group whose name
is the scheme: ``mystore = my_package.providers:MyStoreProvider``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from kubetune.errors import FetchError
from kubetune.initializers.progress import TransferProgress
from kubetune.initializers.sources import StorageLocation
from kubetune.spec.initializer import InitializerSpec

Kind = Literal["model", "dataset"]


class TransientFetchError(FetchError):
    """A download broke off (connection lost, timeout): the partial data is kept and the next
    run of the same initializer resumes or restarts it."""


@dataclass(frozen=True)
class RemoteFile:
    """One file a provider can download.

    Attributes:
        path: relative POSIX path the file gets inside the target folder.
        size: size in bytes (checked after download).
        sha256: hex sha256 of the content, if the source publishes it (checked).
        git_sha1: hex git blob id of the content, if known (checked).
        md5: hex md5 of the content, if known, e.g. a single-part S3 ETag (checked).
        handle: provider-private locator (an object key, a source path).
    """

    path: str
    size: int
    sha256: str | None = None
    git_sha1: str | None = None
    md5: str | None = None
    handle: str = ""


@dataclass(frozen=True)
class Listing:
    """The files behind a URI at one content version.

    Attributes:
        version: identifies this exact content (a commit hash, a digest of object ETags...);
            part of the cache key, so a changed source is fetched again.
        files: every file under the URI, before pattern selection.
    """

    version: str
    files: list[RemoteFile] = field(default_factory=list)


class Provider(ABC):
    """Lists and downloads the files behind storage URIs of some scheme.

    One instance serves one initializer run. Raise :class:`kubetune.errors.FetchError` with
    ``self.location.display`` in the message for anything the user must fix (missing
    repository or bucket, bad credentials): the staging folder is then removed. Raise
    :class:`TransientFetchError` when a download breaks off: the partial data stays for the
    next attempt to resume.

    Attributes:
        spec: the initializer's spec (patterns, token reference, options).
        location: the parsed storage URI.
        kind: ``"model"`` or ``"dataset"``.
        supports_resume: whether :meth:`download` continues from a partial ``dest``.
    """

    supports_resume: ClassVar[bool] = False

    def __init__(self, spec: InitializerSpec, location: StorageLocation, kind: Kind) -> None:
        self.spec = spec
        self.location = location
        self.kind = kind

    @abstractmethod
    def list_files(self) -> Listing:
        """List every file behind ``self.location`` at its current version.

        Raises:
            FetchError: the source does not exist, is empty or refuses the credentials.
        """

    @abstractmethod
    def download(self, file: RemoteFile, dest: Path, scratch: Path, progress: TransferProgress) -> None:
        """Write ``file``'s complete content to ``dest``, reporting bytes to ``progress.advance``.

        ``dest``'s folder exists. ``dest`` may hold a partial earlier attempt at the same file
        version: continue from it if :attr:`supports_resume`, otherwise overwrite it.
        ``scratch`` is a folder private to this cache key that survives interrupted runs.
        """

    def check(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Validate provider-specific settings before any network call (optional)."""

    def identity(self) -> str:
        """Extra cache-key text telling apart sources that share a URI (e.g. the endpoint)."""
        return ""


class ModelProvider(Provider, ABC):
    """A provider that can fetch models. Subclass it (and/or :class:`DatasetProvider`)."""


class DatasetProvider(Provider, ABC):
    """A provider that can fetch datasets. Subclass it (and/or :class:`ModelProvider`)."""
