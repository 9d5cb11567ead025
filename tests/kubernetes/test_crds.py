"""Our CRDs: valid CustomResourceDefinitions, structural schemas, CEL rules that do what they say."""

from __future__ import annotations

from pathlib import Path

import celpy
import pytest
import yaml
from k8s_schemas import DEPLOY, crd_schema, make_trainjob, schema_validator, validate_k8s

from kubetune.controller.api import RuntimeSpec, TrainJobSpec
from kubetune.runtimes import list_runtimes

CRDS = sorted((DEPLOY / "crds").glob("*.yaml"))
TRAINJOB_CRD = DEPLOY / "crds" / "kubetune.dev_trainjobs.yaml"
CLUSTER_RUNTIME_CRD = DEPLOY / "crds" / "kubetune.dev_clustertrainingruntimes.yaml"
RUNTIME_CRD = DEPLOY / "crds" / "kubetune.dev_trainingruntimes.yaml"


def structural_problems(schema: dict, path: str = "") -> list[str]:
    """Violations of the structural-schema rules the API server enforces for CRDs.

    Every node has a ``type`` (unless it preserves unknown fields or is int-or-string), an
    object does not mix ``properties`` with ``additionalProperties``, and metadata may only
    restrict ``name`` / ``generateName``.
    """
    problems = []
    special = schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string")
    if "type" not in schema and not special:
        problems.append(f"{path or '<root>'}: no type")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: both properties and additionalProperties")
    for key in ("anyOf", "oneOf", "allOf", "not"):
        if key in schema and any("type" in branch for branch in schema[key]):
            problems.append(f"{path}: {key} branches must not declare types")
    for name, child in schema.get("properties", {}).items():
        if path == "" and name == "metadata" and set(child) - {"type"}:
            problems.append("metadata: only name/generateName may be restricted")
        problems += structural_problems(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += structural_problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += structural_problems(schema["additionalProperties"], f"{path}{{}}")
    return problems


def cel_rules(schema: dict, path: str = "") -> list[tuple[str, str]]:
    """Every (schema path, rule) of x-kubernetes-validations."""
    found = [(path, rule["rule"]) for rule in schema.get("x-kubernetes-validations", [])]
    for name, child in schema.get("properties", {}).items():
        found += cel_rules(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += cel_rules(schema["items"], f"{path}[]")
    return found


def evaluate(rule: str, value, old=None) -> bool:
    env = celpy.Environment()
    activation = {"self": celpy.json_to_cel(value)}
    if old is not None:
        activation["oldSelf"] = celpy.json_to_cel(old)
    return bool(env.program(env.compile(rule)).evaluate(activation))


def rule_at(path: Path, schema_path: str) -> str:
    (rule,) = [rule for where, rule in cel_rules(crd_schema(path)) if where == schema_path]
    return rule


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name)
def test_crd_is_a_valid_customresourcedefinition(path):
    validate_k8s(yaml.safe_load(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name)
def test_crd_schema_is_structural(path):
    assert structural_problems(crd_schema(path)) == []


def test_structural_check_finds_a_node_without_type():
    assert structural_problems({"type": "object", "properties": {"a": {"description": "x"}}}) == [".a: no type"]


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name)
def test_every_cel_rule_compiles(path):
    for _, rule in cel_rules(crd_schema(path)):
        celpy.Environment().compile(rule)


def test_crds_are_in_our_group_at_v1alpha1():
    kinds = {}
    for path in CRDS:
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert crd["spec"]["group"] == "kubetune.dev"
        assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"]
        kinds[crd["spec"]["names"]["kind"]] = crd["spec"]["scope"]
    assert kinds == {"TrainJob": "Namespaced", "TrainingRuntime": "Namespaced", "ClusterTrainingRuntime": "Cluster"}


def test_trainjob_has_a_status_subresource():
    crd = yaml.safe_load(TRAINJOB_CRD.read_text(encoding="utf-8"))
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_both_runtime_kinds_share_one_schema():
    assert crd_schema(CLUSTER_RUNTIME_CRD)["properties"]["spec"] == crd_schema(RUNTIME_CRD)["properties"]["spec"]


def schema_fields(schema: dict) -> set[str]:
    return set(schema.get("properties", {}))


def model_fields(model) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_crd_spec_fields_match_the_controller_models():
    trainjob = crd_schema(TRAINJOB_CRD)["properties"]["spec"]
    assert schema_fields(trainjob) == model_fields(TrainJobSpec)
    runtime = crd_schema(CLUSTER_RUNTIME_CRD)["properties"]["spec"]
    assert schema_fields(runtime) == model_fields(RuntimeSpec)
    from kubetune.controller.api import InitializerSource, PodOverrides, Trainer

    assert schema_fields(trainjob["properties"]["trainer"]) == model_fields(Trainer)
    assert schema_fields(trainjob["properties"]["podOverrides"]) == model_fields(PodOverrides)
    assert schema_fields(trainjob["properties"]["initializer"]["properties"]["model"]) == model_fields(
        InitializerSource
    )


def test_runtime_ref_is_immutable():
    rule = rule_at(TRAINJOB_CRD, ".spec.runtimeRef")
    same = {"name": "a", "kind": "ClusterTrainingRuntime"}
    assert evaluate(rule, same, old=dict(same))
    assert not evaluate(rule, {**same, "name": "b"}, old=same)


@pytest.mark.parametrize(
    ("name", "allowed"),
    [("HF_HOME", True), ("MASTER_ADDR", False), ("RANK", False), ("WORLD_SIZE", False), ("PET_NNODES", False)],
)
def test_reserved_torchrun_env_is_rejected_by_cel(name, allowed):
    rule = rule_at(TRAINJOB_CRD, ".spec.trainer.env")
    assert evaluate(rule, [{"name": "OK", "value": "1"}, {"name": name, "value": "x"}]) is allowed


def test_long_trainjob_names_are_rejected_by_cel():
    rule = rule_at(TRAINJOB_CRD, "")
    assert evaluate(rule, {"metadata": {"name": "a" * 40}})
    assert not evaluate(rule, {"metadata": {"name": "a" * 41}})


def test_runtime_template_needs_a_node_job():
    rule = rule_at(CLUSTER_RUNTIME_CRD, ".spec.template.spec")
    assert evaluate(rule, {"replicatedJobs": [{"name": "node"}]})
    assert not evaluate(rule, {"replicatedJobs": [{"name": "trainer"}]})


def test_a_full_trainjob_validates(trainjob_validator):
    trainjob = make_trainjob(
        initializer={"model": {"storageUri": "hf://org/m", "secretRef": {"name": "hf"}}},
        trainer={"numNodes": 2, "numProcPerNode": 4, "llmConfig": {"method": "qlora", "anything": {"x": 1}}},
        suspend=True,
        activeDeadlineSeconds=60,
        podOverrides={"nodeSelector": {"a": "b"}, "serviceAccountName": "sa"},
    )
    trainjob_validator.validate(trainjob)


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"trainer": {"numNodes": 0}}, "numNodes"),
        ({"trainer": {"numProcPerNode": -1}}, "numProcPerNode"),
        ({"activeDeadlineSeconds": 0}, "activeDeadlineSeconds"),
        ({"runtimeRef": {"name": ""}}, "name"),
        ({"runtimeRef": {"name": "x", "kind": "Deployment"}}, "kind"),
        ({"initializer": {"model": {"secretRef": {}}}}, "secretRef"),
        ({"trainer": {"numNodes": "two"}}, "numNodes"),
        ({"trainer": {"nodes": 2}}, "nodes"),
    ],
)
def test_bad_trainjobs_are_rejected_by_the_schema(trainjob_validator, spec, where):
    errors = list(trainjob_validator.iter_errors(make_trainjob(**spec)))
    assert errors
    assert any(where in (".".join(map(str, e.absolute_path)) + e.message) for e in errors)


def test_catalog_runtimes_validate_against_the_runtime_crd():
    validator = schema_validator(crd_schema(CLUSTER_RUNTIME_CRD))
    for runtime in list_runtimes():
        validator.validate(runtime.manifest)
