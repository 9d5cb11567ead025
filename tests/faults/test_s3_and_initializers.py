"""S3 faults through a loopback proxy in front of moto's server (real boto3 over HTTP): error statuses and
dropped connections are retried with backoff then fail clearly; a stopped server or a killed initializer
leaves a cache that the next run resumes, never a corrupt entry."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import uuid

import pytest

from kubetune.errors import FetchError
from kubetune.initializers import run_initializer
from kubetune.initializers.cache import Cache
from kubetune.spec.initializer import DatasetInitializer
from tests.faults.jobs import wait_for
from tests.faults.s3_proxy import FaultyS3Proxy

S3_REGION = "us-east-1"
BLOB = os.urandom(3 << 20)  # one 3 MiB object, fetched in one GET when all goes well


@pytest.fixture
def bucket(s3_endpoint, monkeypatch):
    import boto3

    for var, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_DEFAULT_REGION", S3_REGION)):
        monkeypatch.setenv(var, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=S3_REGION)
    name = f"b-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="data/blob.bin", Body=BLOB)
    return name


@pytest.fixture
def proxy(s3_endpoint):
    faulty = FaultyS3Proxy(s3_endpoint)
    yield faulty
    faulty.stop()


def spec(bucket: str, endpoint: str) -> DatasetInitializer:
    return DatasetInitializer(storage_uri=f"s3://{bucket}/data", s3={"endpoint_url": endpoint, "region": S3_REGION})


def entries(cache_dir) -> list:
    folder = cache_dir / "entries"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_503s_are_retried_then_the_download_succeeds(tmp_path, bucket, proxy):
    proxy.fail_next, proxy.fail_status = 2, 503
    result = run_initializer(spec(bucket, proxy.endpoint), tmp_path / "dataset", tmp_path / "cache")
    assert (tmp_path / "dataset" / "blob.bin").read_bytes() == BLOB
    listing = [r for r in proxy.requests if "list-type" in r[1]]
    assert len(listing) == 3  # two refused, the third answered
    assert result.downloaded_bytes == len(BLOB)


def test_persistent_500s_end_in_one_clear_failure_after_retries(tmp_path, bucket, proxy):
    proxy.fail_next, proxy.fail_status = -1, 500
    with pytest.raises(FetchError) as caught:
        run_initializer(spec(bucket, proxy.endpoint), tmp_path / "dataset", tmp_path / "cache")
    assert str(caught.value) == f"s3://{bucket}/data: S3 error InternalError while trying to list objects"
    listing = [r for r in proxy.requests if "list-type" in r[1]]
    # botocore's standard retry mode: several attempts, spaced by its (jittered) exponential backoff.
    assert len(listing) >= 4
    assert all(later[3] > earlier[3] for earlier, later in itertools.pairwise(listing))
    assert not (tmp_path / "dataset").exists() and entries(tmp_path / "cache") == []


def test_dropped_connections_are_retried_and_resumed(tmp_path, bucket, proxy, caplog):
    proxy.drop_next, proxy.drop_after = 2, 1 << 20
    result = run_initializer(spec(bucket, proxy.endpoint), tmp_path / "dataset", tmp_path / "cache")
    assert (tmp_path / "dataset" / "blob.bin").read_bytes() == BLOB
    gets = [r for r in proxy.requests if r[0] == "GET" and "list-type" not in r[1]]
    assert [r[2] for r in gets] == [None, f"bytes={1 << 20}-", f"bytes={2 << 20}-"]  # each retry resumes
    # Backoff 0.5 s, then 1 s: each retry waits at least that long after the client could see the drop (the time
    # from one request to the next also holds the transfer and scheduling, so it gives no upper bound).
    assert gets[1][3] - proxy.drops[0] >= 0.5 and gets[2][3] - proxy.drops[1] >= 1.0
    assert "retrying in 0.5 s (attempt 2 of 4)" in caplog.text
    assert "retrying in 1.0 s (attempt 3 of 4)" in caplog.text
    assert result.downloaded_bytes == len(BLOB)
    assert Cache(tmp_path / "cache").verify_entry(result.key) is None


def test_connections_dropped_every_time_end_in_one_clear_failure(tmp_path, bucket, proxy):
    proxy.drop_next, proxy.drop_after = -1, 1 << 18
    with pytest.raises(FetchError) as caught:
        run_initializer(spec(bucket, proxy.endpoint), tmp_path / "dataset", tmp_path / "cache")
    # The exception class in parentheses is botocore's and varies across its versions.
    assert re.fullmatch(
        rf"s3://{bucket}/data: connection lost while downloading blob\.bin \(\w+\) \(gave up after 4 attempts\)",
        str(caught.value),
    ), str(caught.value)
    assert entries(tmp_path / "cache") == []  # the partial download stays in staging/ for the next run


def run_cli(bucket: str, endpoint: str, tmp_path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kubetune.initializers", "dataset", "--uri", f"s3://{bucket}/data", "--target",
         str(tmp_path / "dataset"), "--cache-dir", str(tmp_path / "cache"), "--s3-endpoint", endpoint],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def partial_bytes(cache_dir) -> int:
    return sum(p.stat().st_size for p in (cache_dir / "staging").rglob("incoming/*") if p.is_file())


def finish_and_check(bucket: str, endpoint: str, tmp_path) -> dict:
    again = run_cli(bucket, endpoint, tmp_path)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert 0 < summary["downloaded_bytes"] < len(BLOB)  # resumed, not restarted
    assert (tmp_path / "dataset" / "blob.bin").read_bytes() == BLOB
    (key,) = [entry.name for entry in entries(tmp_path / "cache")]
    assert Cache(tmp_path / "cache").verify_entry(key) is None
    return summary


def test_initializer_killed_mid_download_then_rerun_resumes_cleanly(tmp_path, bucket, proxy):
    proxy.bytes_per_s = 1 << 20
    first = run_cli(bucket, proxy.endpoint, tmp_path)
    wait_for(lambda: partial_bytes(tmp_path / "cache") > 0, 60, "a partial download")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert entries(tmp_path / "cache") == [] and not (tmp_path / "dataset").exists()
    proxy.bytes_per_s = 0
    finish_and_check(bucket, proxy.endpoint, tmp_path)


def test_server_stopped_mid_transfer_fails_clearly_then_resumes_when_back(tmp_path, bucket, s3_endpoint):
    slow = FaultyS3Proxy(s3_endpoint)
    slow.bytes_per_s = 1 << 20
    running = run_cli(bucket, slow.endpoint, tmp_path)
    wait_for(lambda: partial_bytes(tmp_path / "cache") > 0, 60, "a partial download")
    slow.stop(hold_port=True)  # refused from now on; the port is kept for the server coming back
    _, err = running.communicate(timeout=180)
    assert running.returncode == 2
    assert err.strip().splitlines()[-1] == (
        f"error: s3://{bucket}/data: cannot reach the S3 endpoint {slow.endpoint}/{bucket}/data/blob.bin while "
        "trying to download blob.bin (gave up after 4 attempts)"
    )
    assert entries(tmp_path / "cache") == []
    back = FaultyS3Proxy(s3_endpoint, port=slow.port)
    slow.release_port()
    try:
        finish_and_check(bucket, back.endpoint, tmp_path)
    finally:
        back.stop()
