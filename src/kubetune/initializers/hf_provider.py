"""``hf://<org>/<name>[@<revision>]``: a Hugging Face Hub repository, via ``huggingface_hub``.

The revision (branch, tag or commit; default ``main``) is pinned to its commit hash first, so
the cache key names exact content. Files are listed with the Hub's tree API, which publishes
each file's size, git blob id and, for LFS files, sha256; every downloaded file is checked
against them. Downloads go through ``hf_hub_download`` (its ``.incomplete`` files in this
key's scratch folder let an interrupted run resume). The endpoint is ``options.endpoint``,
else ``$HF_ENDPOINT``, else ``https://huggingface.co``. The token comes from the spec's
``token`` reference, else ``huggingface_hub``'s own chain (``$HF_TOKEN``, a saved login).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kubetune.errors import FetchError
from kubetune.initializers.progress import TransferProgress
from kubetune.initializers.providers import DatasetProvider, Listing, ModelProvider, RemoteFile, TransientFetchError
from kubetune.initializers.secrets import read_secret

_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
DEFAULT_ENDPOINT = "https://huggingface.co"


class HuggingFaceProvider(ModelProvider, DatasetProvider):
    """Model and dataset repositories on the Hugging Face Hub (or a Hub-compatible endpoint)."""

    supports_resume = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        repo, _, revision = self.location.location.partition("@")
        self.repo_id = repo.strip("/")
        self.revision = revision or self.spec.revision or "main"
        self.repo_type = "model" if self.kind == "model" else "dataset"
        self.endpoint = (self.spec.options.get("endpoint") or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip(
            "/"
        )
        self.commit: str | None = None
        self._token: str | None = None

    def check(self) -> None:
        """Require ``org/name`` and read the token reference (before any request)."""
        if not _REPO_ID.match(self.repo_id) or ".." in self.repo_id:
            raise FetchError(f"{self.location.display}: expected hf://<org>/<name>[@<revision>]")
        if self.spec.token is not None:
            self._token = read_secret(self.spec.token, f"{self.location.display} token")

    def identity(self) -> str:
        """The Hub endpoint."""
        return self.endpoint

    def _error(self, err: Exception) -> FetchError:
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        display, what = self.location.display, f"{self.repo_type} repository {self.repo_id!r}"
        if isinstance(err, GatedRepoError):
            return FetchError(f"{display}: {what} is gated; accept its terms and give a token with access")
        if isinstance(err, RepositoryNotFoundError):
            return FetchError(
                f"{display}: {what} not found at {self.endpoint} (or it is private and the token has no access)"
            )
        if isinstance(err, RevisionNotFoundError):
            return FetchError(f"{display}: revision {self.revision!r} not found in {what}")
        if isinstance(err, OfflineModeIsEnabled):
            return FetchError(f"{display}: HF_HUB_OFFLINE is set, so the Hub cannot be reached")
        if isinstance(err, HfHubHTTPError) and err.response is not None:
            status = err.response.status_code
            if status in (401, 403):
                source = f" from {self.spec.token.describe()}" if self.spec.token else ""
                return FetchError(f"{display}: the Hub refused the token{source} (HTTP {status})")
            return FetchError(f"{display}: the Hub answered HTTP {status}")
        return FetchError(f"{display}: cannot reach the Hub at {self.endpoint} ({type(err).__name__})")

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self._token, library_name="kubetune")

    def list_files(self) -> Listing:
        """Pin the revision to a commit and list the repository's files at it."""
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
        from huggingface_hub.hf_api import RepoFile

        api = self._api()
        try:
            info = api.repo_info(self.repo_id, repo_type=self.repo_type, revision=self.revision)
            self.commit = info.sha
            tree = api.list_repo_tree(self.repo_id, repo_type=self.repo_type, revision=self.commit, recursive=True)
            files = [
                RemoteFile(
                    path=entry.path,
                    size=entry.lfs.size if entry.lfs is not None else entry.size,
                    sha256=entry.lfs.sha256 if entry.lfs is not None else None,
                    git_sha1=entry.blob_id if entry.lfs is None and entry.xet_hash is None else None,
                    handle=entry.path,
                )
                for entry in tree
                if isinstance(entry, RepoFile)
            ]
        except (HfHubHTTPError, OfflineModeIsEnabled, httpx2.HTTPError) as err:
            raise self._error(err) from None
        if not self.commit:
            raise FetchError(f"{self.location.display}: the Hub did not report a commit for {self.revision!r}")
        return Listing(version=self.commit, files=files)

    def download(self, file: RemoteFile, dest: Path, scratch: Path, progress: TransferProgress) -> None:
        """Download one file at the pinned commit with ``hf_hub_download``, then move it to ``dest``."""
        import httpx2
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

        class _Progress:
            """The tqdm subset ``hf_hub_download`` calls, forwarding bytes to ``progress``."""

            def __init__(self, *args, **kwargs) -> None:
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                return None

            def update(self, count: int | float | None = 1) -> None:
                progress.advance(int(count or 0))

            def close(self) -> None:
                pass

            def set_postfix_str(self, *args, **kwargs) -> None:
                pass

            def refresh(self, *args, **kwargs) -> None:
                pass

        dest.unlink(missing_ok=True)
        try:
            path = hf_hub_download(
                self.repo_id,
                file.handle,
                repo_type=self.repo_type,
                revision=self.commit,
                endpoint=self.endpoint,
                token=self._token,
                local_dir=scratch / "hf",
                tqdm_class=_Progress,  # type: ignore[arg-type]
                library_name="kubetune",
            )
        except (httpx2.ConnectError, httpx2.TimeoutException, httpx2.RemoteProtocolError) as err:
            raise TransientFetchError(
                f"{self.location.display}: connection lost while downloading {file.path} ({type(err).__name__})"
            ) from None
        except (HfHubHTTPError, OfflineModeIsEnabled, httpx2.HTTPError) as err:
            raise self._error(err) from None
        os.replace(path, dest)
