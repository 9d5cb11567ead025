"""``output.push_to: hf://org/repo``: the results committed to a Hugging Face Hub model repository.

One commit through ``huggingface_hub``'s upload API (``HfApi.create_commit``): large files go
through the Hub's LFS/Xet storage with their sha256, files the repository already holds with the
same content are not sent again (a rerun after a failure resumes), and the client retries server
errors. The token comes from ``output.token`` (a secret reference) or the client's own login.
"""

from __future__ import annotations

import os

from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ConfigError, OutputError
from kubetune.exporter.manifest import PushRecord, result_files
from kubetune.initializers.secrets import read_secret, scrub
from kubetune.spec.tracking import PushConfig

#: Files a new Hub repository starts with; they do not make it "not empty".
_NEW_REPO_FILES = {".gitattributes", "README.md"}


def repo_id(push: PushConfig) -> str:
    """``hf://org/repo`` -> ``org/repo``."""
    return push.push_to.removeprefix("hf://").strip("/")


def hub_api(push: PushConfig):
    """The Hub client for the target: ``HF_ENDPOINT`` (a Hub-compatible server) or huggingface.co."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=hub_token(push), library_name="kubetune")


def hub_token(push: PushConfig) -> str:
    """The Hub token: ``output.token``, else the client's login (``HF_TOKEN``, ``hf auth login``).

    Raises:
        ConfigError: no token anywhere (a push would fail after training).
    """
    if push.token is not None:
        return read_secret(push.token, "output.token")
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise ConfigError(
            f"output.push_to {push.push_to}: no Hub token (set output.token to a secret reference, or HF_TOKEN)"
        )
    return token


def check_hub_target(push: PushConfig, own_keys: set[str] = frozenset()) -> None:
    """A token is there, the Hub answers, and the repository is new or empty (or ``overwrite``).

    Raises:
        ConfigError: no token, the token is refused, the Hub cannot be reached, or the repository holds files.
    """
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    api = hub_api(push)
    try:
        files = api.list_repo_files(repo_id(push))
    except RepositoryNotFoundError:
        return  # created by the push
    except HfHubHTTPError as err:
        raise ConfigError(f"output.push_to {push.push_to}: the Hub refused the request ({scrub(str(err))})") from None
    except OSError as err:
        raise ConfigError(f"output.push_to {push.push_to}: cannot reach the Hub ({type(err).__name__})") from None
    others = sorted(set(files) - _NEW_REPO_FILES - own_keys)
    if others and not push.overwrite:
        raise ConfigError(
            f"output.push_to {push.push_to} is not empty (holds {others[0]!r}); "
            "choose a new repository or set output.overwrite: true"
        )


def push_to_hub(layout: RunDir, push: PushConfig, say=print) -> dict[str, dict]:
    """Commit the run's results to the repository (created private unless ``private: false``).

    Raises:
        ConfigError: see :func:`check_hub_target`.
        OutputError: the commit failed after the client's retries.
    """
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    record = PushRecord(layout, push.push_to)
    check_hub_target(push, own_keys=record.keys())
    files = result_files(layout)
    record.files = {file.key: {"size": file.size} for file in files}
    record.save()
    api = hub_api(push)
    try:
        api.create_repo(repo_id(push), private=push.private, exist_ok=True)
        commit = api.create_commit(
            repo_id(push),
            operations=[CommitOperationAdd(path_in_repo=file.key, path_or_fileobj=str(file.path)) for file in files],
            commit_message=f"kubetune: {layout.root.name}",
        )
    except (HfHubHTTPError, OSError) as err:
        raise OutputError(f"output.push_to {push.push_to}: the upload failed ({scrub(str(err))})") from None
    for entry in record.files.values():
        entry.update(done=True, commit=commit.oid)
    record.save()
    say(f"push: {len(files)} file(s) committed to {push.push_to} ({commit.commit_url})")
    return record.files
