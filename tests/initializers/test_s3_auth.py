"""Wrong S3 credentials against a moto server that enforces IAM authentication.

moto accepts any credentials unless ``INITIAL_NO_AUTH_ACTION_COUNT`` is set: after that many
requests it checks every request's SigV4 signature against the IAM access keys it knows and
the caller's IAM policies. The server runs in its own process (the setting is process-wide,
so the suite's shared in-process server is unaffected); its first five requests (create a
user with an ``s3:*`` policy and an access key, and a user with a key but no policy) are the
only unauthenticated ones.

The URIs name a whole bucket: moto 5.x miscomputes the signature of a request whose query
string holds an escaped character (``prefix=data%2F``; getmoto/moto#5948), so a prefix would
be refused even with the right key.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kubetune.errors import FetchError
from kubetune.initializers import run_initializer
from kubetune.spec.initializer import DatasetInitializer

from .servers import S3_REGION, run_cli

SETUP_ACTIONS = 5  # CreateUser, PutUserPolicy, CreateAccessKey; CreateUser, CreateAccessKey
S3_ONLY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
DATA = b'{"text": "only for the right key"}\n'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A moto server enforcing IAM auth; yields the endpoint, a bucket, the key id and secret of a
    user allowed s3:*, and those of a user allowed nothing."""
    import boto3

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_ACTIONS)
    log = tmp_path_factory.mktemp("moto-auth") / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        anonymous = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup", "region_name": S3_REGION}
        iam = boto3.client("iam", endpoint_url=endpoint, **anonymous)
        iam.create_user(UserName="trainer")
        iam.put_user_policy(UserName="trainer", PolicyName="s3", PolicyDocument=json.dumps(S3_ONLY))
        key = iam.create_access_key(UserName="trainer")["AccessKey"]
        key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
        iam.create_user(UserName="nobody")
        powerless = iam.create_access_key(UserName="nobody")["AccessKey"]
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name=S3_REGION, aws_access_key_id=key_id, aws_secret_access_key=secret
        )
        bucket = f"auth-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="train.jsonl", Body=DATA)
        yield endpoint, bucket, key_id, secret, (powerless["AccessKeyId"], powerless["SecretAccessKey"])
    finally:
        server.terminate()
        server.wait(timeout=10)


def cached_files(cache: Path) -> list[Path]:
    """Every file in the cache's entries and staging folders (none when the cache was never created)."""
    return [p for sub in ("entries", "staging") for p in (cache / sub).rglob("*") if p.is_file()]


def spec_env(endpoint: str, bucket: str, key_id: str, secret: str) -> dict[str, str]:
    spec = {
        "kind": "dataset",
        "storage_uri": f"s3://{bucket}",
        "s3": {
            "endpoint_url": endpoint,
            "region": S3_REGION,
            "access_key_id": {"env": "TEST_S3_KEY_ID"},
            "secret_access_key": {"env": "TEST_S3_SECRET"},
        },
    }
    return {"KUBETUNE_INITIALIZER_SPEC": json.dumps(spec), "TEST_S3_KEY_ID": key_id, "TEST_S3_SECRET": secret}


def test_server_enforces_auth_so_the_wrong_key_tests_mean_something(auth_server):
    import boto3
    from botocore.exceptions import ClientError

    endpoint, bucket, key_id, _, _ = auth_server
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name=S3_REGION, aws_access_key_id=key_id, aws_secret_access_key="x" * 40
    )
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        s3.list_objects_v2(Bucket=bucket)


def test_wrong_secret_key_fails_with_one_line_exit_2_and_no_cache_entry(auth_server, tmp_path):
    endpoint, bucket, key_id, secret, _ = auth_server
    wrong = "WRONG-" + secret[6:][::-1]
    cache, target = tmp_path / "c", tmp_path / "run" / "dataset"
    proc = run_cli(
        ["dataset", "--target", str(target), "--cache-dir", str(cache)],
        env=spec_env(endpoint, bucket, key_id, wrong),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: s3://{bucket}: the S3 credentials were refused (SignatureDoesNotMatch) while trying to list objects"
    )
    assert "Traceback" not in proc.stderr
    for text in (proc.stdout, proc.stderr):
        assert wrong not in text and secret not in text and wrong[6:20] not in text
    assert not cached_files(cache) and not target.exists()


def test_unknown_access_key_id_is_refused_in_process(auth_server, tmp_path, monkeypatch):
    endpoint, bucket, _, secret, _ = auth_server
    for name, value in spec_env(endpoint, bucket, "AKIAUNKNOWNKEY000000", secret).items():
        monkeypatch.setenv(name, value)
    spec = DatasetInitializer.model_validate_json(os.environ["KUBETUNE_INITIALIZER_SPEC"])
    with pytest.raises(FetchError) as err:
        run_initializer(spec, tmp_path / "dataset", tmp_path / "c")
    assert str(err.value) == (
        f"s3://{bucket}: the S3 credentials were refused (InvalidAccessKeyId) while trying to list objects"
    )
    assert secret not in str(err.value)
    assert not cached_files(tmp_path / "c") and not (tmp_path / "dataset").exists()


def test_right_key_fetches_the_data(auth_server, tmp_path):
    endpoint, bucket, key_id, secret, _ = auth_server
    target = tmp_path / "run" / "dataset"
    proc = run_cli(
        ["dataset", "--target", str(target), "--cache-dir", str(tmp_path / "c")],
        env=spec_env(endpoint, bucket, key_id, secret),
    )
    assert proc.returncode == 0, proc.stderr
    assert (target / "train.jsonl").read_bytes() == DATA
    assert secret not in proc.stdout + proc.stderr


def test_valid_key_without_permission_is_access_denied(auth_server, tmp_path):
    endpoint, bucket, _, _, (key_id, secret) = auth_server
    proc = run_cli(
        ["dataset", "--target", str(tmp_path / "dataset"), "--cache-dir", str(tmp_path / "c")],
        env=spec_env(endpoint, bucket, key_id, secret),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: s3://{bucket}: access denied while trying to list objects (check the credentials)"
    )
    assert secret not in proc.stdout + proc.stderr and not cached_files(tmp_path / "c")
