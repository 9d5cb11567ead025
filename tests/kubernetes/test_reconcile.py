"""The pure reconciler: TrainJob + runtime -> ConfigMap, PVC, PodGroup, JobSet (valid, correct, safe)."""

from __future__ import annotations

import pytest
import yaml
from k8s_schemas import make_trainjob, validate_k8s

from kubetune.contracts.kubernetes import TRAINJOB_LABEL
from kubetune.controller.reconcile import NODE_GRACE_S, InvalidTrainJob, reconcile
from kubetune.errors import PREEMPTED_EXIT_CODE
from kubetune.spec.job import JobSpec


def jobs_by_name(jobset: dict) -> dict[str, dict]:
    return {job["name"]: job for job in jobset["spec"]["replicatedJobs"]}


def pod_spec(job: dict) -> dict:
    return job["template"]["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_initializers_run_before_the_node_job_in_a_chain(runtime):
    trainjob = make_trainjob(initializer={"dataset": {"storageUri": "s3://bucket/data.jsonl"}})
    jobset = reconcile(trainjob, runtime, {}).jobset
    jobs = jobset["spec"]["replicatedJobs"]
    assert [job["name"] for job in jobs] == ["dataset-initializer", "model-initializer", "node"]
    assert "dependsOn" not in jobs[0]
    assert jobs[1]["dependsOn"] == [{"name": "dataset-initializer", "status": "Complete"}]
    assert jobs[2]["dependsOn"] == [{"name": "model-initializer", "status": "Complete"}]


def test_initializer_without_a_storage_uri_is_left_out(runtime):
    jobset = reconcile(make_trainjob(), runtime, {}).jobset
    jobs = jobs_by_name(jobset)
    assert list(jobs) == ["model-initializer", "node"]
    assert "dependsOn" not in jobs["model-initializer"]


def test_initializer_containers_get_uri_and_target_on_the_workspace(runtime):
    trainjob = make_trainjob(initializer={"model": {"storageUri": "hf://org/other-model"}})
    container = pod_spec(jobs_by_name(reconcile(trainjob, runtime, {}).jobset)["model-initializer"])["containers"][0]
    assert container["command"] == ["python", "-m", "kubetune.initializers", "model"]
    assert container["args"] == ["--uri", "hf://org/other-model", "--target", "/workspace/model"]
    assert {"name": "workspace", "mountPath": "/workspace"} in container["volumeMounts"]


@pytest.mark.parametrize(("num_nodes", "num_proc"), [(1, 1), (4, 8)])
def test_node_job_has_num_nodes_indexed_pods_and_torchrun_env(runtime, num_nodes, num_proc):
    trainjob = make_trainjob(name="big", trainer={"numNodes": num_nodes, "numProcPerNode": num_proc})
    node = jobs_by_name(reconcile(trainjob, runtime, {}).jobset)["node"]
    job_spec = node["template"]["spec"]
    assert (job_spec["parallelism"], job_spec["completions"], job_spec["completionMode"]) == (
        num_nodes,
        num_nodes,
        "Indexed",
    )
    container = pod_spec(node)["containers"][0]
    env = env_of(container)
    assert env["PET_NNODES"]["value"] == str(num_nodes)
    assert env["PET_NPROC_PER_NODE"]["value"] == str(num_proc)
    assert env["PET_MASTER_ADDR"]["value"] == "big-node-0-0.big"
    assert env["PET_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert container["command"] == ["python", "-m", "kubetune.trainer.launch"]
    assert container["args"][:2] == ["-m", "kubetune.trainer"]


def test_master_address_resolves_through_the_jobset_headless_service(runtime):
    jobset = reconcile(make_trainjob(name="tune"), runtime, {}).jobset
    assert jobset["spec"]["network"]["enableDNSHostnames"] is True
    assert jobset["spec"]["network"]["subdomain"] == "tune"


def test_runtime_scale_defaults_apply_when_the_trainjob_omits_them(runtime):
    runtime["spec"]["mlPolicy"] = {"numNodes": 3, "torch": {"numProcPerNode": 2}}
    node = jobs_by_name(reconcile(make_trainjob(), runtime, {}).jobset)["node"]
    env = env_of(pod_spec(node)["containers"][0])
    assert (env["PET_NNODES"]["value"], env["PET_NPROC_PER_NODE"]["value"]) == ("3", "2")
    assert node["template"]["spec"]["parallelism"] == 3


def test_job_config_merges_the_users_llm_config_over_runtime_defaults(runtime):
    trainjob = make_trainjob(
        trainer={"llmConfig": {"training": {"max_steps": 7}, "dataset": {"format": "completion"}}},
        initializer={"dataset": {"storageUri": "s3://b/d.jsonl"}},
    )
    desired = reconcile(trainjob, runtime, {})
    config = JobSpec.model_validate(yaml.safe_load(desired.config_map["data"]["config.yaml"]))
    assert config.trainer.training.max_steps == 7
    assert config.trainer.training.batch_size == 8  # from the runtime
    assert config.trainer.method == "lora"
    assert config.output_dir == "/workspace"
    assert config.name == "tune"
    node = pod_spec(jobs_by_name(desired.jobset)["node"])
    assert {"name": "kubetune-config", "configMap": {"name": "tune-config"}} in node["volumes"]


def test_a_job_choosing_another_method_drops_the_runtimes_method_section(runtime):
    runtime["spec"]["llmConfig"]["lora"] = {"r": 64}
    trainjob = make_trainjob(trainer={"llmConfig": {"method": "prefix"}})
    config = yaml.safe_load(reconcile(trainjob, runtime, {}).config_map["data"]["config.yaml"])["trainer"]
    assert config["method"] == "prefix" and config["lora"] is None
    same = make_trainjob(trainer={"llmConfig": {"lora": {"alpha": 8}}})
    config = yaml.safe_load(reconcile(same, runtime, {}).config_map["data"]["config.yaml"])["trainer"]
    assert (config["lora"]["r"], config["lora"]["alpha"]) == (64, 8)


def test_a_misplaced_method_section_fails_the_trainjob_in_one_line(runtime):
    trainjob = make_trainjob(trainer={"llmConfig": {"method": "full", "lora": {"r": 8}}})
    with pytest.raises(InvalidTrainJob) as caught:
        reconcile(trainjob, runtime, {})
    assert caught.value.reason == "InvalidLLMConfig"
    assert "'lora' is not a setting of method 'full'" in caught.value.message and "\n" not in caught.value.message


def test_every_object_but_the_workspace_is_owned_by_the_trainjob(runtime):
    runtime["spec"]["podGroupPolicy"] = {"coscheduling": {"scheduleTimeoutSeconds": 30}}
    desired = reconcile(make_trainjob(), runtime, {})
    # deleting the TrainJob must not garbage-collect the trained model
    assert "ownerReferences" not in desired.workspace["metadata"]
    assert desired.workspace["metadata"]["labels"][TRAINJOB_LABEL] == "tune"
    kinds = [obj["kind"] for obj in desired.objects()]
    assert kinds == [
        "ConfigMap",
        "PersistentVolumeClaim",
        "PodGroup",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "JobSet",
    ]
    for obj in desired.objects():
        if obj is desired.workspace:
            continue
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["kind"] == "TrainJob" and owner["controller"] is True
        assert owner["uid"] == "0b7c5e1e-2f0a-4a53-9d5e-7f1b2c3d4e5f"
        assert obj["metadata"]["namespace"] == "team-a"


def test_workspace_pvc_comes_from_the_runtime_claim_template(runtime):
    runtime["spec"]["workspace"]["volumeClaimTemplate"]["spec"]["storageClassName"] = "fast-rwx"
    desired = reconcile(make_trainjob(), runtime, {})
    assert desired.workspace["metadata"]["name"] == "tune-workspace"
    assert desired.workspace["spec"]["storageClassName"] == "fast-rwx"
    for job in desired.jobset["spec"]["replicatedJobs"]:
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in pod_spec(job)["volumes"] if "persistentVolumeClaim" in v
        ]
        assert claims == ["tune-workspace"]


def test_secret_keys_become_secret_key_refs_never_values(runtime):
    trainjob = make_trainjob(initializer={"model": {"storageUri": "s3://models/m", "secretRef": {"name": "s3-creds"}}})
    secrets = {"s3-creds": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]}
    desired = reconcile(trainjob, runtime, secrets)
    env = env_of(pod_spec(jobs_by_name(desired.jobset)["model-initializer"])["containers"][0])
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}},
    }
    assert all("value" not in entry for name, entry in env.items() if name.startswith("AWS_"))


def test_kueue_queue_label_passes_through_and_starts_suspended(runtime):
    trainjob = make_trainjob(labels={"kueue.x-k8s.io/queue-name": "gpu-queue"})
    first = reconcile(trainjob, runtime, {}).jobset
    assert first["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert first["spec"]["suspend"] is True
    # Once the JobSet exists Kueue owns suspend (it admits by unsuspending): the controller leaves it alone.
    again = reconcile(trainjob, runtime, {}, existing_jobset=first).jobset
    assert "suspend" not in again["spec"]


@pytest.mark.parametrize("suspend", [True, False])
def test_suspend_is_mirrored_to_the_jobset(runtime, suspend):
    jobset = reconcile(make_trainjob(suspend=suspend), runtime, {}).jobset
    assert jobset["spec"]["suspend"] is suspend


@pytest.mark.parametrize(
    ("labels", "after_resume"),
    [(None, False), ({"kueue.x-k8s.io/queue-name": "gpu-queue"}, None)],  # None: left to Kueue, which readmits
)
def test_suspending_a_running_trainjob_suspends_its_jobset_and_resuming_unsuspends_it(runtime, labels, after_resume):
    running = reconcile(make_trainjob(labels=labels), runtime, {}).jobset
    running["spec"]["suspend"] = False  # started (admitted by Kueue, when queued)
    suspended = reconcile(make_trainjob(labels=labels, suspend=True), runtime, {}, existing_jobset=running).jobset
    assert suspended["spec"]["suspend"] is True  # the JobSet's pods get SIGTERM and checkpoint
    # The update changes nothing else: the pods that come back resume from the shared volume.
    assert {**suspended["spec"], "suspend": False} == running["spec"]
    resumed = reconcile(make_trainjob(labels=labels), runtime, {}, existing_jobset=suspended).jobset
    assert resumed["spec"].get("suspend") is after_resume


def test_node_pods_ignore_the_preemption_exit_code_and_disruptions(runtime, jobset_validator):
    jobset = reconcile(make_trainjob(maxRestarts=2), runtime, {}).jobset
    jobset_validator.validate(jobset)
    node = jobs_by_name(jobset)["node"]["template"]["spec"]
    rules = node["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "Ignore",
        "onExitCodes": {"containerName": "node", "operator": "In", "values": [PREEMPTED_EXIT_CODE]},
    }
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    # Ignored pod failures never fail the Job, so the JobSet's maxRestarts budget is not spent on them.
    assert node["backoffLimit"] == 0 and jobset["spec"]["failurePolicy"] == {"maxRestarts": 2}
    pod = node["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] == NODE_GRACE_S


def test_coscheduling_pod_group_gangs_the_node_pods(runtime):
    runtime["spec"]["podGroupPolicy"] = {"coscheduling": {"scheduleTimeoutSeconds": 30}}
    desired = reconcile(make_trainjob(trainer={"numNodes": 4}), runtime, {})
    assert desired.pod_group["spec"] == {"minMember": 4, "scheduleTimeoutSeconds": 30}
    node = jobs_by_name(desired.jobset)["node"]
    assert node["template"]["spec"]["template"]["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "tune"


def test_coscheduled_node_pods_use_the_named_scheduler(runtime):
    runtime["spec"]["podGroupPolicy"] = {"coscheduling": {"schedulerName": "scheduler-plugins-scheduler"}}
    jobs = jobs_by_name(reconcile(make_trainjob(), runtime, {}).jobset)
    assert pod_spec(jobs["node"])["schedulerName"] == "scheduler-plugins-scheduler"
    assert "schedulerName" not in pod_spec(jobs["model-initializer"])


def test_no_pod_group_unless_the_runtime_asks(runtime):
    assert reconcile(make_trainjob(), runtime, {}).pod_group is None


def test_pod_overrides_reach_every_pod(runtime):
    overrides = {
        "nodeSelector": {"pool": "a100"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
        "serviceAccountName": "trainer",
    }
    jobset = reconcile(make_trainjob(podOverrides=overrides), runtime, {}).jobset
    for job in jobset["spec"]["replicatedJobs"]:
        spec = pod_spec(job)
        assert spec["nodeSelector"] == {"pool": "a100"}
        assert spec["serviceAccountName"] == "trainer"
        assert {"name": "cache", "emptyDir": {}} in spec["volumes"]
        assert {"name": "cache", "mountPath": "/cache"} in spec["containers"][0]["volumeMounts"]


def test_custom_command_replaces_the_builtin_trainer(runtime):
    trainer = {"image": "me/custom:1", "command": ["python", "train.py"], "args": ["--fast"]}
    container = pod_spec(jobs_by_name(reconcile(make_trainjob(trainer=trainer), runtime, {}).jobset)["node"])[
        "containers"
    ][0]
    assert (container["image"], container["command"], container["args"]) == (
        "me/custom:1",
        ["python", "train.py"],
        ["--fast"],
    )
    assert "PET_NNODES" in env_of(container)


def test_deadline_bounds_the_node_job(runtime):
    node = jobs_by_name(reconcile(make_trainjob(activeDeadlineSeconds=3600), runtime, {}).jobset)["node"]
    assert node["template"]["spec"]["activeDeadlineSeconds"] == 3600


def test_max_restarts_becomes_the_jobset_failure_policy(runtime, jobset_validator, trainjob_validator):
    trainjob = make_trainjob(maxRestarts=3)
    trainjob_validator.validate(trainjob)
    jobset = reconcile(trainjob, runtime, {}).jobset
    assert jobset["spec"]["failurePolicy"] == {"maxRestarts": 3}
    jobset_validator.validate(jobset)
    assert "failurePolicy" not in reconcile(make_trainjob(), runtime, {}).jobset["spec"]


def test_reconcile_is_deterministic(runtime):
    trainjob = make_trainjob(initializer={"dataset": {"storageUri": "s3://b/d"}})
    assert reconcile(trainjob, runtime, {}) == reconcile(trainjob, runtime, {})


@pytest.mark.parametrize(
    ("change", "secrets", "reason", "text"),
    [
        ({"runtime": None}, {}, "RuntimeNotFound", "smollm2-135m-lora"),
        ({"trainer": {"numNodes": 0}}, {}, "InvalidSpec", "spec.trainer.numNodes"),
        ({"trainer": {"env": [{"name": "MASTER_ADDR", "value": "x"}]}}, {}, "ReservedEnvVar", "MASTER_ADDR"),
        ({"trainer": {"env": [{"name": "WORLD_SIZE", "value": "8"}]}}, {}, "ReservedEnvVar", "WORLD_SIZE"),
        ({"trainer": {"env": [{"name": "PET_NNODES", "value": "2"}]}}, {}, "ReservedEnvVar", "PET_NNODES"),
        (
            {"initializer": {"model": {"storageUri": "s3://m", "secretRef": {"name": "nope"}}}},
            {"other": ["K"]},
            "SecretNotFound",
            "'nope'",
        ),
        ({"trainer": {"llmConfig": {"method": "magic"}}}, {}, "InvalidLLMConfig", "spec.trainer.llmConfig.method"),
        ({"trainer": {"llmConfig": {"trainig": {}}}}, {}, "InvalidLLMConfig", "trainig"),
        (
            {"trainer": {"llmConfig": {"model": {"path": "/models/x"}}}},
            {},
            "InvalidLLMConfig",
            "model.path",
        ),
        ({"bogusField": 1}, {}, "InvalidSpec", "bogusField"),
    ],
)
def test_bad_input_is_refused_with_a_clear_reason(runtime, change, secrets, reason, text):
    change = dict(change)
    runtime_obj = change.pop("runtime", runtime)
    with pytest.raises(InvalidTrainJob) as caught:
        reconcile(make_trainjob(**change), runtime_obj, secrets)
    assert caught.value.reason == reason
    assert text in caught.value.message


def test_node_pods_may_patch_their_own_trainjob_status_and_nothing_else(runtime):
    desired = reconcile(make_trainjob(initializer={"dataset": {"storageUri": "s3://b/d"}}), runtime, {})
    account, role, binding = desired.progress_access
    assert account["metadata"]["name"] == "tune-trainer"
    assert role["rules"] == [
        {
            "apiGroups": ["kubetune.dev"],
            "resources": ["trainjobs/status"],
            "resourceNames": ["tune"],
            "verbs": ["get", "patch"],
        }
    ]
    assert binding["roleRef"]["name"] == "tune-trainer"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tune-trainer", "namespace": "team-a"}]
    jobs = jobs_by_name(desired.jobset)
    assert pod_spec(jobs["node"])["serviceAccountName"] == "tune-trainer"
    assert "serviceAccountName" not in pod_spec(jobs["dataset-initializer"])  # initializers get no API access
    env = env_of(pod_spec(jobs["node"])["containers"][0])
    assert env["KUBETUNE_TRAINJOB"] == {"name": "KUBETUNE_TRAINJOB", "value": "tune"}
    assert env["KUBETUNE_NAMESPACE"] == {"name": "KUBETUNE_NAMESPACE", "value": "team-a"}


@pytest.mark.parametrize(
    "spec",
    [
        {"trainer": {"command": ["python", "train.py"]}},  # a custom trainer reports no progress record
        {"podOverrides": {"serviceAccountName": "mine"}},  # the user's account (it needs the grant itself)
    ],
)
def test_no_progress_account_when_the_node_runs_something_else_or_as_the_users(runtime, spec):
    desired = reconcile(make_trainjob(**spec), runtime, {})
    assert desired.progress_access == []
    assert pod_spec(jobs_by_name(desired.jobset)["node"]).get("serviceAccountName") in (None, "mine")


def test_long_names_are_refused():
    with pytest.raises(InvalidTrainJob, match="at most 40"):
        reconcile(make_trainjob(name="x" * 41), {"spec": {}}, {})


def test_generated_objects_validate_against_official_schemas(runtime, jobset_validator):
    runtime["spec"]["podGroupPolicy"] = {"coscheduling": {}}
    trainjob = make_trainjob(
        initializer={
            "dataset": {"storageUri": "s3://b/d", "env": [{"name": "AWS_REGION", "value": "eu-west-1"}]},
            "model": {"storageUri": "hf://org/m", "secretRef": {"name": "hf"}},
        },
        trainer={"numNodes": 2, "resourcesPerNode": {"limits": {"nvidia.com/gpu": 1}}},
        activeDeadlineSeconds=600,
        podOverrides={"tolerations": [{"key": "gpu", "operator": "Exists"}], "nodeSelector": {"a": "b"}},
        labels={"team": "nlp"},
        annotations={"note": "x"},
    )
    desired = reconcile(trainjob, runtime, {"hf": ["HF_TOKEN"]})
    validate_k8s(desired.config_map)
    validate_k8s(desired.workspace)
    for obj in desired.progress_access:
        validate_k8s(obj)
    jobset_validator.validate(desired.jobset)
    for job in desired.jobset["spec"]["replicatedJobs"]:
        validate_k8s({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job["name"]}, **job["template"]})


def test_schema_validation_catches_a_misspelt_field(runtime, jobset_validator):
    jobset = reconcile(make_trainjob(), runtime, {}).jobset
    jobset["spec"]["replicatedJobs"][0]["dependOn"] = []
    assert not jobset_validator.is_valid(jobset)
    node = jobset["spec"]["replicatedJobs"][-1]
    pod_spec(node)["containers"][0]["resource"] = {}
    with pytest.raises(Exception, match="resource"):
        validate_k8s({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "n"}, **node["template"]})
