"""``s3://bucket/prefix``: objects in AWS S3 or an S3-compatible store (MinIO, Ceph), via boto3.

Every object under ``prefix/`` is fetched, keyed by its path below the prefix; when nothing is
under it, ``prefix`` may name one object. Credentials come from the spec's secret references
(``s3.access_key_id``/``s3.secret_access_key``[/``s3.session_token``]) or else the standard
AWS chain. Sizes are checked, and single-part ETags (the content's md5) too unless the
initializer's ``options`` set ``verify_etag: "false"`` (objects encrypted with SSE-KMS/SSE-C
have other ETags). Interrupted downloads resume with ranged GETs pinned to the listed ETag.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from kubetune.errors import FetchError
from kubetune.initializers.progress import TransferProgress
from kubetune.initializers.providers import DatasetProvider, Listing, ModelProvider, RemoteFile, TransientFetchError
from kubetune.initializers.secrets import read_secret
from kubetune.spec.initializer import S3Options

_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
_CHUNK = 1 << 20
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
}


def s3_client(options: S3Options | None, what: str):
    """A boto3 S3 client for ``options`` (endpoint, region, credential references; None: the AWS defaults).

    ``what`` names the settings in messages (``s3://bucket/prefix s3``). Credentials are read from their
    references here and remembered for scrubbing; without references boto3's standard chain applies.
    Requests are retried by botocore (standard mode, 4 attempts).

    Raises:
        ConfigError: a credential reference cannot be read.
    """
    import boto3
    from botocore.config import Config

    credentials = {}
    if options is not None and options.access_key_id is not None:
        credentials["aws_access_key_id"] = read_secret(options.access_key_id, f"{what}.access_key_id")
        credentials["aws_secret_access_key"] = read_secret(options.secret_access_key, f"{what}.secret_access_key")
        if options.session_token is not None:
            credentials["aws_session_token"] = read_secret(options.session_token, f"{what}.session_token")
    session = boto3.session.Session(region_name=options.region if options else None, **credentials)
    return session.client(
        "s3",
        endpoint_url=options.endpoint_url if options else None,
        config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=60),
    )


class S3Provider(ModelProvider, DatasetProvider):
    """Lists and downloads objects under an S3 prefix."""

    supports_resume = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        bucket, _, prefix = self.location.location.partition("/")
        self.bucket = bucket
        self.prefix = prefix
        self._client = None
        self._etags: dict[str, str] = {}

    def check(self) -> None:
        """Require a bucket name."""
        if not self.bucket:
            raise FetchError(f"{self.location.display}: no bucket name (expected s3://bucket/prefix)")

    def identity(self) -> str:
        """The endpoint and region: the same bucket name on two stores is two sources."""
        options = self.spec.s3
        return f"{options.endpoint_url or ''}|{options.region or ''}" if options else ""

    def client(self):
        """The boto3 S3 client, built once from the spec's endpoint, region and credentials."""
        if self._client is None:
            self._client = s3_client(self.spec.s3, f"{self.location.display} s3")
        return self._client

    def _error(self, err: Exception, action: str) -> FetchError:
        """Turn a botocore exception into one clear line naming the URI."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        display = self.location.display
        if isinstance(err, NoCredentialsError):
            return FetchError(
                f"{display}: no AWS credentials found (set s3.access_key_id/s3.secret_access_key references "
                "or configure the standard AWS chain)"
            )
        if isinstance(err, EndpointConnectionError):
            # Transient: a partial download is kept, and the next run resumes it.
            return TransientFetchError(
                f"{display}: cannot reach the S3 endpoint {err.kwargs.get('endpoint_url', '')} while trying to {action}"
            )
        if isinstance(err, ClientError):
            code = err.response.get("Error", {}).get("Code", "")
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return FetchError(f"{display}: bucket {self.bucket!r} does not exist")
            if code in _CREDENTIAL_CODES:
                return FetchError(f"{display}: the S3 credentials were refused ({code}) while trying to {action}")
            if code in ("AccessDenied", "403") or status == 403:
                return FetchError(f"{display}: access denied while trying to {action} (check the credentials)")
            if code in ("NoSuchKey", "404") or status == 404:
                return FetchError(f"{display}: object not found while trying to {action}")
            return FetchError(f"{display}: S3 error {code or status} while trying to {action}")
        return FetchError(f"{display}: S3 request failed while trying to {action}: {type(err).__name__}")

    def list_files(self) -> Listing:
        """List objects under ``prefix/`` (or the single object ``prefix``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        folder = self.prefix.rstrip("/") + "/" if self.prefix else ""
        files: list[RemoteFile] = []
        try:
            for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith("/"):
                        continue  # a "folder" marker object
                    files.append(self._remote_file(obj["Key"][len(folder) :], obj["Key"], obj["Size"], obj["ETag"]))
            if not files and self.prefix and not self.prefix.endswith("/"):
                try:
                    head = self.client().head_object(Bucket=self.bucket, Key=self.prefix)
                except ClientError as err:
                    if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                        raise
                else:
                    name = self.prefix.rsplit("/", 1)[-1]
                    files.append(self._remote_file(name, self.prefix, head["ContentLength"], head["ETag"]))
        except (BotoCoreError, ClientError) as err:
            raise self._error(err, "list objects") from None
        if not files:
            raise FetchError(f"{self.location.display}: no objects under this prefix (empty prefix?)")
        fingerprint = sorted((f.handle, f.size, self._etags[f.handle]) for f in files)
        return Listing(version=hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest(), files=files)

    def _remote_file(self, path: str, key: str, size: int, etag: str) -> RemoteFile:
        etag = etag.strip('"')
        self._etags[key] = etag
        verify = self.spec.options.get("verify_etag", "true").lower() != "false"
        md5 = etag if verify and _MD5_ETAG.match(etag) else None
        return RemoteFile(path=path, size=size, md5=md5, handle=key)

    def download(self, file: RemoteFile, dest: Path, scratch: Path, progress: TransferProgress) -> None:
        """GET the object (from the partial file's end when resuming), appending to ``dest``."""
        from botocore.exceptions import BotoCoreError, ClientError

        offset = dest.stat().st_size if dest.exists() else 0
        if offset >= file.size:
            return
        request = {"Bucket": self.bucket, "Key": file.handle, "IfMatch": self._etags[file.handle]}
        if offset:
            request["Range"] = f"bytes={offset}-"
        try:
            response = self.client().get_object(**request)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "PreconditionFailed":
                dest.unlink(missing_ok=True)
                raise FetchError(
                    f"{self.location.display}: {file.path} changed during the download; run again"
                ) from None
            raise self._error(err, f"download {file.path}") from None
        except BotoCoreError as err:
            raise self._error(err, f"download {file.path}") from None
        try:
            with open(dest, "ab") as out:
                for chunk in response["Body"].iter_chunks(_CHUNK):
                    out.write(chunk)
                    progress.advance(len(chunk))
        except (BotoCoreError, ConnectionError, TimeoutError) as err:
            raise TransientFetchError(
                f"{self.location.display}: connection lost while downloading {file.path} ({type(err).__name__})"
            ) from None
