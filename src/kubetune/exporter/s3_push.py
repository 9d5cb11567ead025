"""``output.push_to: s3://bucket/prefix``: the results uploaded to S3 (or MinIO, Ceph), checked, resumable.

Files up to one part (``part_size``, 16 MiB) are one PUT; larger ones a multipart upload. Every
request carries its ``Content-MD5``, so the server refuses a body damaged on the way, and every
uploaded object's ETag is compared to the one the local bytes give (the md5 of the file, or of its
parts' md5s followed by ``-<parts>``); the file's sha256 is stored as object metadata. Progress is
recorded in ``output/push.json`` after each file and part: a rerun skips what is already there
and continues a multipart upload with its missing parts. Requests are retried by botocore, and a
lost connection or a 5xx answer by the push itself with backoff, before the push fails with one
line naming the target.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ConfigError, OutputError
from kubetune.exporter.manifest import LocalFile, PushRecord, file_digests, result_files
from kubetune.initializers.s3_provider import s3_client
from kubetune.spec.tracking import PushConfig

PART_SIZE = 16 << 20
ATTEMPTS = 5
FIRST_BACKOFF_S = 1.0
SHA256_METADATA = "kubetune-sha256"
T = TypeVar("T")


def split_target(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b/")`` (the prefix ends with '/', or is empty)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def push_client(push: PushConfig):
    """The S3 client of the push target (the initializers' construction: endpoint, region, secret references)."""
    return s3_client(push.s3, "output.s3")


def existing_keys(client, bucket: str, prefix: str, limit: int | None = None) -> list[str]:
    """Keys under ``prefix`` (at most ``limit``)."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
        if limit is not None and len(keys) >= limit:
            return keys[:limit]
    return keys


def check_s3_target(push: PushConfig, own_keys: set[str] = frozenset()) -> None:
    """Credentials readable, bucket reachable, prefix empty (or only this job's keys, or ``overwrite``).

    Raises:
        ConfigError: a credential reference cannot be read, the credentials are refused, the bucket is
            missing, or the prefix holds other objects and ``overwrite`` is off.
    """
    bucket, prefix = split_target(push.push_to)
    try:
        client = push_client(push)
        keys = existing_keys(client, bucket, prefix, limit=None if own_keys else 10)
    except ConfigError as err:
        raise ConfigError(f"output.push_to {push.push_to}: {err}") from None
    except Exception as err:
        raise ConfigError(f"output.push_to {push.push_to}: {_describe(err)}") from None
    others = [key for key in keys if key.removeprefix(prefix) not in own_keys]
    if others and not push.overwrite:
        raise ConfigError(
            f"output.push_to {push.push_to} is not empty (holds {others[0]!r}"
            f"{' and more' if len(others) > 1 else ''}); "
            "choose an empty prefix or set output.overwrite: true"
        )


def _describe(err: Exception) -> str:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(err, NoCredentialsError):
        return "no S3 credentials (set output.s3.access_key_id/secret_access_key references or the AWS chain)"
    if isinstance(err, EndpointConnectionError):
        return f"cannot reach the S3 endpoint ({err.kwargs.get('endpoint_url', '')})"
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return "the bucket does not exist"
        return f"S3 refused the request ({code or err.response.get('ResponseMetadata', {}).get('HTTPStatusCode')})"
    return f"{type(err).__name__}: {err}"


def _retrying(action: str, call: Callable[[], T], target: str) -> T:
    """``call()``, again after a lost connection or a server error, with backoff; then one clear OutputError."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    backoff = FIRST_BACKOFF_S
    for attempt in range(ATTEMPTS):
        try:
            return call()
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if status < 500 or attempt == ATTEMPTS - 1:
                raise OutputError(f"output.push_to {target}: {action}: {_describe(err)}") from None
        except (BotoCoreError, ConnectionError) as err:
            if attempt == ATTEMPTS - 1 or isinstance(err, NoCredentialsError):
                raise OutputError(f"output.push_to {target}: {action}: {_describe(err)}") from None
        time.sleep(backoff)
        backoff *= 2
    raise AssertionError("unreachable")


def expected_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives an object uploaded in these parts (one part: a plain PUT)."""
    if len(part_md5s) == 1:
        return part_md5s[0].hex()
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def push_to_s3(layout: RunDir, push: PushConfig, part_size: int = PART_SIZE, say=print) -> dict[str, Any]:
    """Upload the run's results under ``push.push_to``; returns ``{key: {size, sha256, etag}}``.

    Raises:
        ConfigError: the target is not empty (and not this job's earlier, interrupted push), or credentials fail.
        OutputError: an upload failed after its retries, or an uploaded object's ETag does not match.
    """
    bucket, prefix = split_target(push.push_to)
    record = PushRecord(layout, push.push_to)
    check_s3_target(push, own_keys=record.keys())
    client = push_client(push)
    files = result_files(layout)
    sent = skipped = 0
    for file in files:
        sha256, parts = file_digests(file.path, part_size)
        entry = record.files.get(file.key, {})
        if entry.get("sha256") != sha256:
            entry = {"sha256": sha256, "size": file.size}
        etag = expected_etag(parts)
        if entry.get("done") and _matches(client, bucket, prefix + file.key, etag, push.push_to):
            skipped += 1
            continue
        record.files[file.key] = entry
        record.save()
        if len(parts) == 1:
            _put(client, bucket, prefix + file.key, file, sha256, parts[0], push.push_to)
        else:
            _multipart(client, bucket, prefix + file.key, file, sha256, parts, part_size, record, push.push_to)
        if not _matches(client, bucket, prefix + file.key, etag, push.push_to):
            raise OutputError(f"output.push_to {push.push_to}: {file.key} arrived changed (its ETag is not {etag})")
        entry.update(done=True, etag=etag)
        entry.pop("upload_id", None)
        entry.pop("parts", None)
        record.save()
        sent += 1
    say(f"push: {sent} file(s) uploaded, {skipped} already there, to {push.push_to}")
    return {key: {k: v for k, v in entry.items() if k != "done"} for key, entry in record.files.items()}


def _matches(client, bucket: str, key: str, etag: str, target: str) -> bool:
    """True when ``key`` exists with ``etag``."""
    from botocore.exceptions import ClientError

    def head() -> dict | None:
        try:
            return client.head_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise

    found = _retrying(f"check {key}", head, target)
    return found is not None and found["ETag"].strip('"') == etag


def _md5_header(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _put(client, bucket: str, key: str, file: LocalFile, sha256: str, md5: bytes, target: str) -> None:
    body = file.path.read_bytes()
    _retrying(
        f"upload {key}",
        lambda: client.put_object(
            Bucket=bucket, Key=key, Body=body, ContentMD5=_md5_header(md5), Metadata={SHA256_METADATA: sha256}
        ),
        target,
    )


def _multipart(
    client,
    bucket: str,
    key: str,
    file: LocalFile,
    sha256: str,
    md5s: list[bytes],
    part_size: int,
    record: PushRecord,
    target: str,
) -> None:
    entry = record.files[file.key]
    done: dict[int, str] = {}
    upload_id = entry.get("upload_id")
    if upload_id is not None:  # resume: keep the parts the server has, with the right checksum
        try:
            listed = client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", [])
            done = {
                p["PartNumber"]: p["ETag"] for p in listed if p["ETag"].strip('"') == md5s[p["PartNumber"] - 1].hex()
            }
        except Exception:
            upload_id = None
    if upload_id is None:
        created = _retrying(
            f"start {key}",
            lambda: client.create_multipart_upload(Bucket=bucket, Key=key, Metadata={SHA256_METADATA: sha256}),
            target,
        )
        upload_id = created["UploadId"]
        entry["upload_id"] = upload_id
        record.save()
    with file.path.open("rb") as handle:
        for number, md5 in enumerate(md5s, start=1):
            if number in done:
                continue
            handle.seek((number - 1) * part_size)
            body = handle.read(part_size)
            answer = _retrying(
                f"upload part {number} of {key}",
                lambda body=body, number=number, md5=md5: client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentMD5=_md5_header(md5),
                ),
                target,
            )
            done[number] = answer["ETag"]
            entry["parts"] = sorted(done)
            record.save()
    parts = [{"PartNumber": number, "ETag": done[number]} for number in sorted(done)]
    _retrying(
        f"complete {key}",
        lambda: client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        ),
        target,
    )
