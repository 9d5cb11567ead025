"""Fixtures for the initializer tests: moto's S3 server and a Hub-layout HTTP server, on loopback."""

from __future__ import annotations

import pytest

from .servers import S3_REGION, FakeHub


@pytest.fixture
def s3_client(s3_endpoint):
    """A boto3 client for setting up buckets (any credentials: moto does not check them)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=S3_REGION,
        aws_access_key_id="setup-key-id",
        aws_secret_access_key="setup-secret-key",
    )


@pytest.fixture
def aws_env(monkeypatch):
    """Credentials in the standard AWS chain (environment) for the code under test."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "chain-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake_hub(monkeypatch) -> FakeHub:
    """A fresh fake Hub; in-process code reaches it through HF_ENDPOINT with offline mode off."""
    import huggingface_hub.constants

    hub = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield hub
    hub.stop()
