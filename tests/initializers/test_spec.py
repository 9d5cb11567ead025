"""The initializer spec: secret references only, URIs without credentials, coherent options."""

from __future__ import annotations

import pytest

from kubetune.errors import ConfigError
from kubetune.initializers.__main__ import build_parser, spec_from_args
from kubetune.spec.base import validate_config
from kubetune.spec.initializer import DatasetInitializer, ModelInitializer, SecretRef


def invalid(model, data) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(model, data, source="initializer")
    return str(err.value)


def test_secret_ref_needs_exactly_one_source():
    assert "give exactly one of env, file, kubernetes (got env, file)" in invalid(
        SecretRef, {"env": "HF_TOKEN", "file": "/t"}
    )
    assert "got none" in invalid(SecretRef, {})


def test_secret_ref_env_must_be_a_variable_name_not_a_value():
    assert "must be an environment variable name" in invalid(SecretRef, {"env": "hf_abc-123/xyz"})


def test_kubernetes_secret_ref_maps_to_a_stable_env_var():
    ref = SecretRef(kubernetes={"name": "hf-creds", "key": "token.txt"})
    assert ref.env_var_name() == "KUBETUNE_SECRET_HF_CREDS_TOKEN_TXT"
    assert ref.describe() == "Kubernetes Secret hf-creds/token.txt"


def test_storage_uri_with_credentials_is_rejected():
    message = invalid(ModelInitializer, {"storage_uri": "s3://AKID:hunter2@bucket/p"})
    assert "storage_uri: Value error, must not contain credentials" in message


def test_s3_options_need_a_key_pair_and_an_s3_uri():
    pair = {"access_key_id": {"env": "K"}}
    assert "give both access_key_id and secret_access_key" in invalid(
        ModelInitializer, {"storage_uri": "s3://b/p", "s3": pair}
    )
    assert "s3 options apply to s3:// URIs only" in invalid(
        ModelInitializer, {"storage_uri": "hf://a/b", "s3": {"region": "x"}}
    )


def test_revision_in_uri_and_field_conflict():
    assert "not both" in invalid(ModelInitializer, {"storage_uri": "hf://a/b@v1", "revision": "v2"})


def test_unknown_field_rejected():
    assert "token_value: unknown field" in invalid(DatasetInitializer, {"storage_uri": "x", "token_value": "s"})


def test_cli_merges_json_spec_env_and_arguments():
    args = build_parser().parse_args(
        ["dataset", "--uri", "s3://b/data", "--s3-region", "eu-west-1", "--allow", "*.jsonl"]
    )
    env = {"KUBETUNE_INITIALIZER_SPEC": '{"storage_uri": "s3://b/other", "s3": {"endpoint_url": "http://minio:9000"}}'}
    spec = spec_from_args(args, env)
    assert isinstance(spec, DatasetInitializer)
    assert spec.storage_uri == "s3://b/data" and spec.allow_patterns == ["*.jsonl"]
    assert (spec.s3.endpoint_url, spec.s3.region) == ("http://minio:9000", "eu-west-1")
