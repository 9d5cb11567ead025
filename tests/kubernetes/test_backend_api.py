"""The Kubernetes backend's API calls, made by the real ``kubernetes`` client against a real HTTP server.

The server (``apiserver.py``) keeps objects in memory; the tests play the controller by writing
TrainJob status and pods into it, and check the request paths and bodies, the TrainJob the
CRD schema accepts, and how status, pods, logs and events come back through the SDK.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from apiserver import ApiServerState, now, serve_api
from k8s_schemas import validate_k8s

import kubernetes
from kubetune.backends.kubernetes import KubernetesBackend, KubernetesJobOptions
from kubetune.client import (
    BuiltinTrainer,
    CustomTrainer,
    Initializer,
    JobStatus,
    LLMConfig,
    Name,
    StepStatus,
    TrainerClient,
)
from kubetune.controller.reconcile import reconcile
from kubetune.errors import ConfigError, JobExistsError, JobFailedError, JobNotFoundError
from kubetune.runtimes import get_runtime
from kubetune.spec.initializer import DatasetInitializer
from kubetune.spec.job import JobSpec

NS = "ml"
TRAINJOBS = f"/apis/kubetune.dev/v1alpha1/namespaces/{NS}/trainjobs"
PODS = f"/api/v1/namespaces/{NS}/pods"
RUNTIMES = "/apis/kubetune.dev/v1alpha1/clustertrainingruntimes"
RUNTIME = "smollm2-135m-lora"


def square(x: int) -> int:
    """A custom trainer's function."""
    return x * x


@pytest.fixture
def api():
    with serve_api() as (url, state):
        for name in (RUNTIME, "qwen2.5-0.5b-lora"):
            state.put(RUNTIMES, copy.deepcopy(get_runtime(name).manifest))
        yield url, state


@pytest.fixture
def state(api) -> ApiServerState:
    return api[1]


def make_backend(url: str, **options) -> KubernetesBackend:
    config = kubernetes.client.Configuration()
    config.host = url
    return KubernetesBackend(
        namespace=NS,
        options=KubernetesJobOptions(**options),
        api_client=kubernetes.client.ApiClient(config),
        log_poll_s=0.05,
    )


@pytest.fixture
def backend(api) -> KubernetesBackend:
    return make_backend(api[0])


@pytest.fixture
def client(backend) -> TrainerClient:
    return TrainerClient(backend)


def lora_config(**training) -> LLMConfig:
    return LLMConfig.model_validate(
        {"dataset": {"format": "completion"}, "lora": {"r": 4}, "training": {"max_steps": 5, **training}}
    )


def submit_builtin(client: TrainerClient, name: str = "tune", num_nodes: int | None = None) -> str:
    return client.train(
        runtime=RUNTIME,
        initializer=Initializer(dataset="s3://data/train.jsonl"),
        trainer=BuiltinTrainer(config=lora_config(), num_nodes=num_nodes),
        options=[Name(name)],
    )


def add_pod(state: ApiServerState, job: str, step: str, phase: str, logs: list[str] | None = None, **status) -> str:
    """A pod as the JobSet's Job controller labels it; returns its name."""
    replicated, _, index = step.rpartition("-") if step.startswith("node-") else (step, "", "0")
    name = f"{job}-{replicated}-0-{index}-x{len(state.objects.get(PODS, {}))}"
    labels = {
        "kubetune.dev/trainjob-name": job,
        "jobset.sigs.k8s.io/replicatedjob-name": replicated,
        "batch.kubernetes.io/job-completion-index": index,
    }
    for container in status.get("containerStatuses", []):
        container.update(
            name=replicated, image="kubetune:test", imageID="sha256:1", ready=phase == "Running", restartCount=0
        )
    state.put(PODS, {"metadata": {"name": name, "labels": labels}, "status": {"phase": phase, **status}})
    if logs is not None:
        state.logs[(name, replicated)] = logs
    return name


def set_conditions(state: ApiServerState, name: str, *conditions: tuple[str, str, str], **status) -> None:
    """Write TrainJob status as the controller does: (type, reason, message) conditions, all True."""
    stamp = now()
    state.objects[TRAINJOBS][name]["status"] = {
        "conditions": [
            {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": stamp}
            for kind, reason, message in conditions
        ],
        **status,
    }


def test_runtimes_are_read_from_the_cluster(client, state):
    assert [r.name for r in client.list_runtimes()] == ["qwen2.5-0.5b-lora", RUNTIME]
    runtime = client.get_runtime(RUNTIME)
    packaged = get_runtime(RUNTIME)
    assert (runtime.llm_config, runtime.spec, runtime.model_uri) == (
        packaged.llm_config,
        packaged.spec,
        packaged.model_uri,
    )
    assert (runtime.family, runtime.method, runtime.procs_per_node) == ("smollm", "lora", 1)
    assert state.made("GET", f"{RUNTIMES}/{RUNTIME}")
    with pytest.raises(ConfigError, match=r"unknown runtime 'smollm2-135m-lorra'; did you mean smollm2-135m-lora"):
        client.get_runtime("smollm2-135m-lorra")


def test_train_creates_a_trainjob_the_crd_accepts_with_only_the_users_fields(
    client, state, trainjob_validator, jobset_validator
):
    assert submit_builtin(client) == "tune"
    (post,) = state.made("POST", TRAINJOBS)
    assert post.path == TRAINJOBS
    manifest = post.body
    trainjob_validator.validate(manifest)
    trainer = manifest["spec"]["trainer"]
    assert trainer["llmConfig"] == {"dataset": {"format": "completion"}, "lora": {"r": 4}, "training": {"max_steps": 5}}
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (1, 1)  # resolved against the runtime
    assert "resourcesPerNode" not in trainer  # the runtime's container resources stay in charge
    assert manifest["spec"]["runtimeRef"] == {"name": RUNTIME, "kind": "ClusterTrainingRuntime"}
    assert manifest["spec"]["initializer"] == {"dataset": {"storageUri": "s3://data/train.jsonl"}}
    # what the controller makes of it: the runtime's defaults under the user's fields, a valid JobSet
    desired = reconcile(state.objects[TRAINJOBS]["tune"], get_runtime(RUNTIME).manifest, {})
    jobset_validator.validate(desired.jobset)
    config = yaml.safe_load(desired.config_map["data"]["config.yaml"])["trainer"]
    assert (config["training"]["max_steps"], config["training"]["batch_size"]) == (5, 8)
    assert [job["name"] for job in desired.jobset["spec"]["replicatedJobs"]] == [
        "dataset-initializer",
        "model-initializer",  # from the runtime's model
        "node",
    ]


def test_backend_options_reach_the_trainjob(api, state, trainjob_validator):
    backend = make_backend(
        api[0], image="registry.local/kubetune:dev", queue_name="gpu-queue", tolerations=[{"operator": "Exists"}]
    )
    TrainerClient(backend).train(
        runtime=RUNTIME,
        initializer=Initializer(
            dataset=DatasetInitializer(
                storage_uri="s3://data/train.jsonl",
                s3={
                    "endpoint_url": "http://minio:9000",
                    "access_key_id": {"kubernetes": {"name": "s3-creds", "key": "id"}},
                    "secret_access_key": {"kubernetes": {"name": "s3-creds", "key": "secret"}},
                },
            )
        ),
        trainer=BuiltinTrainer(config=lora_config(), num_nodes=2, resources_per_node={"cpu": 2, "memory": "8Gi"}),
        options=[Name("opts")],
    )
    manifest = state.made("POST", TRAINJOBS)[0].body
    trainjob_validator.validate(manifest)
    assert manifest["metadata"]["labels"] == {"kueue.x-k8s.io/queue-name": "gpu-queue"}
    trainer = manifest["spec"]["trainer"]
    assert (trainer["image"], trainer["numNodes"]) == ("registry.local/kubetune:dev", 2)
    assert trainer["resourcesPerNode"] == {"requests": {"cpu": "2000m", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
    env = {e["name"]: e for e in manifest["spec"]["initializer"]["dataset"]["env"]}
    assert env["KUBETUNE_SECRET_S3_CREDS_ID"]["valueFrom"] == {"secretKeyRef": {"name": "s3-creds", "key": "id"}}
    assert '"endpoint_url": "http://minio:9000"' in env["KUBETUNE_INITIALIZER_SPEC"]["value"]
    assert (
        '"secret_access_key": {"kubernetes": {"key": "secret", "name": "s3-creds"}}'
        in env["KUBETUNE_INITIALIZER_SPEC"]["value"]
    )
    desired = reconcile(state.objects[TRAINJOBS]["opts"], get_runtime(RUNTIME).manifest, {})
    validate_k8s(
        desired.jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
        | {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"runtime": "no-such-runtime"}, r"unknown runtime 'no-such-runtime'"),
        ({"trainer": BuiltinTrainer(config=lora_config())}, r"runtime: a job on Kubernetes needs a runtime"),
        (
            {"runtime": RUNTIME, "trainer": BuiltinTrainer(config=lora_config())},
            r"trainer\.dataset\.path: no dataset given and runtime 'smollm2-135m-lora' has no dataset initializer",
        ),
        (
            {"runtime": RUNTIME, "initializer": Initializer(dataset="/home/me/data")},
            r"initializer\.dataset\.storage_uri: '/home/me/data' is a local path",
        ),
        (
            {"runtime": RUNTIME, "initializer": Initializer(dataset="s3://d/x"), "options": [Name("a" * 41)]},
            r"name: 'a{41}' is longer than 40 characters",
        ),
    ],
)
def test_bad_jobs_are_refused_before_anything_is_created(client, state, call, message):
    call = {"trainer": BuiltinTrainer(config=lora_config()), **call}
    with pytest.raises(ConfigError, match=message):
        client.train(**call)
    assert not state.made("POST", "")


def test_a_taken_name_is_refused(client):
    submit_builtin(client)
    with pytest.raises(JobExistsError, match="'tune' already exists"):
        submit_builtin(client)


def test_custom_trainer_ships_its_function_in_a_configmap_owned_by_the_trainjob(
    client, state, trainjob_validator, tmp_path: Path
):
    client.train(
        runtime=RUNTIME, trainer=CustomTrainer(func=square, func_args={"x": 7}, num_nodes=2), options=[Name("fn")]
    )
    manifest = state.made("POST", TRAINJOBS)[0].body
    trainjob_validator.validate(manifest)
    trainer = manifest["spec"]["trainer"]
    assert trainer["command"] == ["python", "-m", "kubetune.trainer.launch"]
    assert trainer["args"][:2] == ["-m", "kubetune.backends.function_worker"] and trainer["numNodes"] == 2
    (post,) = state.made("POST", f"/api/v1/namespaces/{NS}/configmaps")
    config_map = post.body
    validate_k8s(config_map)
    assert config_map["metadata"]["ownerReferences"][0]["uid"] == state.objects[TRAINJOBS]["fn"]["metadata"]["uid"]
    mount = manifest["spec"]["podOverrides"]["volumeMounts"][0]["mountPath"]
    assert trainer["args"][3] == f"{mount}/job.yaml"
    # the payload really runs: the node's command on the ConfigMap's file
    (tmp_path / "job.yaml").write_text(config_map["data"]["job.yaml"])
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetune.backends.function_worker",
            "--config",
            str(tmp_path / "job.yaml"),
            "--run-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={"RANK": "0", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )
    assert run.returncode == 0, run.stderr
    assert "returned 49" in run.stdout
    # the desired JobSet mounts it on the node pods
    desired = reconcile(state.objects[TRAINJOBS]["fn"], get_runtime(RUNTIME).manifest, {})
    node = desired.jobset["spec"]["replicatedJobs"][-1]["template"]["spec"]["template"]["spec"]
    assert {"name": "kubetune-function", "configMap": {"name": "fn-function"}} in node["volumes"]


@pytest.mark.parametrize(
    ("conditions", "extra", "status", "reason"),
    [
        ((), {}, JobStatus.CREATED, None),
        ((("Created", "JobSetCreated", ""),), {}, JobStatus.CREATED, None),
        ((("Created", "JobSetCreated", ""), ("Running", "Initializing", "")), {}, JobStatus.INITIALIZING, None),
        ((("Created", "JobSetCreated", ""), ("Running", "Training", "")), {}, JobStatus.RUNNING, None),
        ((("Suspended", "QueuedByKueue", "waiting for quota"),), {}, JobStatus.CREATED, "QueuedByKueue"),
        ((("Complete", "JobSetCompleted", ""),), {}, JobStatus.COMPLETE, None),
        (
            (("Running", "Training", ""), ("Failed", "JobSetFailed", "node-1 exited 1")),
            {},
            JobStatus.FAILED,
            "JobSetFailed",
        ),
        ((("Failed", "SecretNotFound", "Secret 'x' does not exist"),), {}, JobStatus.FAILED, "SecretNotFound"),
        (
            (("Running", "Training", ""),),
            {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            JobStatus.CANCELLED,
            "Terminated",
        ),
    ],
)
def test_trainjob_conditions_map_to_the_sdk_lifecycle(client, state, conditions, extra, status, reason):
    submit_builtin(client)
    set_conditions(state, "tune", *conditions)
    state.objects[TRAINJOBS]["tune"]["metadata"].update(extra)
    job = client.get_job("tune")
    assert (job.status, job.reason) == (status, reason)
    assert [j.status for j in client.list_jobs()] == [status]


def test_a_status_progress_that_is_not_a_record_shows_no_progress(client, state):
    submit_builtin(client)
    set_conditions(state, "tune", ("Running", "Training", ""), trainingProgress={"step": 3, "totalSteps": 5})
    assert client.get_job("tune").progress is None


def test_steps_and_progress_come_from_pods_and_status(client, state):
    submit_builtin(client, num_nodes=2)
    set_conditions(
        state,
        "tune",
        ("Running", "Training", ""),
        jobsStatus=[{"name": "dataset-initializer", "succeeded": 1}, {"name": "model-initializer", "succeeded": 1}],
        trainingProgress={"step": 3, "total_steps": 5, "loss": 1.25, "eta_s": 12.0},
    )
    add_pod(
        state,
        "tune",
        "node-0",
        "Running",
        containerStatuses=[{"state": {"running": {"startedAt": "2026-01-01T00:01:00Z"}}}],
    )
    add_pod(
        state,
        "tune",
        "node-1",
        "Failed",
        containerStatuses=[
            {
                "state": {
                    "terminated": {
                        "exitCode": 3,
                        "startedAt": "2026-01-01T00:01:00Z",
                        "finishedAt": "2026-01-01T00:02:00Z",
                    }
                }
            }
        ],
    )
    add_pod(state, "other", "node-0", "Running")  # another job's pod is not ours
    job = client.get_job("tune")
    assert [(s.name, s.status) for s in job.steps] == [
        ("dataset-initializer", StepStatus.SUCCEEDED),
        ("model-initializer", StepStatus.SUCCEEDED),
        ("node-0", StepStatus.RUNNING),
        ("node-1", StepStatus.FAILED),
    ]
    assert job.steps[3].exit_code == 3 and job.steps[3].finished_at.minute == 2
    assert (job.progress.step, job.progress.total_steps, job.progress.loss, job.progress.eta_s) == (3, 5, 1.25, 12.0)
    assert client.get_job_metrics("tune") == [job.progress]  # the status holds the newest record only
    assert client.get_job_config("tune") is None
    with pytest.raises(ConfigError, match="cannot cancel a job; suspend it or delete it"):
        client.cancel_job("tune")
    assert (job.num_nodes, job.procs_per_node, job.runtime, job.trainer_kind) == (2, 1, RUNTIME, "builtin")
    (pods,) = {r.query["labelSelector"] for r in state.made("GET", PODS)}
    assert pods == "kubetune.dev/trainjob-name=tune"


def test_logs_of_a_step_come_from_its_pod(client, state):
    submit_builtin(client, num_nodes=2)
    node0 = add_pod(state, "tune", "node-0", "Running", logs=["rank 0 up"])
    add_pod(state, "tune", "node-1", "Running", logs=["rank 1 up"])
    add_pod(state, "tune", "dataset-initializer", "Succeeded", logs=["fetched 3 files"])
    assert list(client.get_job_logs("tune")) == ["rank 0 up"]
    assert list(client.get_job_logs("tune", step="node-1")) == ["rank 1 up"]
    assert list(client.get_job_logs("tune", step="dataset-initializer")) == ["fetched 3 files"]
    reads = state.made("GET", "/log")
    assert reads[0].path == f"{PODS}/{node0}/log" and reads[0].query["container"] == "node"
    assert reads[2].query["container"] == "dataset-initializer"
    with pytest.raises(ConfigError, match=r"no step 'node-5'.*node-0"):
        client.get_job_logs("tune", step="node-5")
    with pytest.raises(JobNotFoundError):
        client.get_job_logs("nope")


def test_follow_waits_for_the_pod_then_streams_whole_lines(client, state):
    submit_builtin(client)
    state.log_delay_s = 0.01
    pod = add_pod(state, "tune", "node-0", "Pending")
    lines = [f"step {i}/5 | loss {2 - i / 5:.2f}" for i in range(1, 6)]
    state.logs[(pod, "node")] = lines
    follow = client.get_job_logs("tune", follow=True)
    state.objects[PODS][pod]["status"]["phase"] = "Running"  # starts while the caller waits
    assert list(follow) == lines
    assert state.made("GET", "/log")[-1].query["follow"] == "true"


def test_follow_ends_when_the_job_ends_before_its_pod_starts(client, state):
    submit_builtin(client)
    set_conditions(state, "tune", ("Failed", "RuntimeNotFound", "gone"))
    assert list(client.get_job_logs("tune", follow=True)) == []


def test_events_of_the_job_and_its_objects_in_order(client, state):
    submit_builtin(client)
    events = f"/api/v1/namespaces/{NS}/events"
    for i, (kind, obj, reason, stamp) in enumerate(
        [
            ("TrainJob", "tune", "Created", "2026-01-01T00:00:02Z"),
            ("Pod", "tune-node-0-0-0-abc", "Started", "2026-01-01T00:00:03Z"),
            ("JobSet", "tune", "SuccessfulCreate", "2026-01-01T00:00:01Z"),
            ("TrainJob", "tune-2", "Created", "2026-01-01T00:00:00Z"),  # another job that starts the same
        ]
    ):
        state.put(
            events,
            {
                "metadata": {"name": f"e{i}"},
                "involvedObject": {"kind": kind, "name": obj},
                "type": "Normal",
                "reason": reason,
                "message": "m",
                "lastTimestamp": stamp,
            },
        )
    got = client.get_job_events("tune")
    assert [e.reason for e in got] == ["SuccessfulCreate", "Created", "Started"]
    assert got[0].message == "JobSet/tune: m" and got[1].message == "m"


def test_wait_and_delete(client, state):
    submit_builtin(client)
    set_conditions(state, "tune", ("Complete", "JobSetCompleted", ""))
    assert client.wait_for_job_status("tune", timeout=5, polling_interval=0.01).status == JobStatus.COMPLETE
    set_conditions(state, "tune", ("Failed", "DeadlineExceeded", "ran past 60s"))
    with pytest.raises(JobFailedError, match=r"ended Failed \(DeadlineExceeded: ran past 60s\)"):
        client.wait_for_job_status("tune", timeout=5, polling_interval=0.01)
    client.delete_job("tune")
    (delete,) = state.made("DELETE", TRAINJOBS)
    assert delete.path == f"{TRAINJOBS}/tune" and delete.query["propagationPolicy"] == "Foreground"
    assert [r for r in state.requests if r.method == "DELETE" and "persistentvolumeclaims" in r.path] == []
    with pytest.raises(JobNotFoundError, match="no TrainJob 'tune' in namespace 'ml'"):
        client.get_job("tune")
    with pytest.raises(JobNotFoundError):
        client.delete_job("tune")


PVCS = f"/api/v1/namespaces/{NS}/persistentvolumeclaims"


def test_delete_keeps_the_workspace_volume_and_purge_removes_it(client, state):
    submit_builtin(client)
    state.put(
        PVCS,
        {"metadata": {"name": "tune-workspace"}, "spec": {"resources": {"requests": {"storage": "10Gi"}}}},
    )
    set_conditions(state, "tune", ("Complete", "JobSetCompleted", ""))
    outputs = client.get_job_outputs("tune")
    assert outputs.locations == ["PersistentVolumeClaim/tune-workspace"] and outputs.size_bytes == 10 * 2**30
    with pytest.raises(ConfigError, match=r"keeps its outputs on PersistentVolumeClaim tune-workspace"):
        client.prepare_replacement(JobSpec.model_validate({"name": "tune"}))

    client.delete_job("tune")
    assert state.made("DELETE", PVCS) == [] and "tune-workspace" in state.objects[PVCS]

    submit_builtin(client)
    client.delete_job("tune", purge=True)
    (purge,) = state.made("DELETE", PVCS)
    assert purge.path == f"{PVCS}/tune-workspace" and state.objects[PVCS] == {}


def test_suspend_and_resume_set_the_trainjobs_suspend_field(client, state, trainjob_validator):
    submit_builtin(client)
    set_conditions(state, "tune", ("Running", "Training", ""))
    job = client.suspend_job("tune", wait=False)
    (patch,) = state.made("PATCH", TRAINJOBS)
    assert (patch.path, patch.body) == (f"{TRAINJOBS}/tune", {"spec": {"suspend": True}})
    stored = state.objects[TRAINJOBS]["tune"]
    trainjob_validator.validate({key: stored[key] for key in ("apiVersion", "kind", "metadata", "spec")})
    assert stored["spec"]["suspend"] is True and stored["spec"]["runtimeRef"]["name"] == RUNTIME  # merged, not replaced
    assert job.status == JobStatus.RUNNING  # the controller has not acted yet
    # The controller suspends the JobSet and reports it; the SDK waits for that.
    set_conditions(state, "tune", ("Suspended", "Suspended", "suspended by spec.suspend"))
    job = client.suspend_job("tune", timeout=5)
    assert (job.status, job.reason) == (JobStatus.SUSPENDED, "Suspended")
    client.resume_job("tune")
    assert state.made("PATCH", TRAINJOBS)[-1].body == {"spec": {"suspend": False}}
    assert state.objects[TRAINJOBS]["tune"]["spec"]["suspend"] is False
    # Waiting for Kueue is not a suspend the user can lift.
    set_conditions(state, "tune", ("Suspended", "QueuedByKueue", "waiting for Kueue to admit the job"))
    assert client.get_job("tune").status == JobStatus.CREATED
    set_conditions(state, "tune", ("Complete", "JobSetCompleted", ""))
    with pytest.raises(ConfigError, match="already ended"):
        client.suspend_job("tune")
    with pytest.raises(JobNotFoundError):
        client.resume_job("nope")


def test_return_values_point_at_the_node_logs(client):
    client.train(runtime=RUNTIME, trainer=CustomTrainer(func=square, func_args={"x": 2}), options=[Name("fn")])
    with pytest.raises(ConfigError, match=r"each node's log prints them"):
        client.get_job_return_values("fn")


def test_client_picks_the_kubernetes_backend_by_name(api, tmp_path: Path, monkeypatch):
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": api[0]}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": NS}}],
        "current-context": "x",
    }
    (tmp_path / "config").write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    client = TrainerClient(backend="kubernetes")
    assert isinstance(client.backend, KubernetesBackend) and client.backend.namespace == NS
    assert submit_builtin(client) == "tune"
    with pytest.raises(ConfigError, match="backend: 'slurm' is not"):
        TrainerClient(backend="slurm")


def test_the_exporter_step_of_a_pushing_job_shows_its_pod_and_logs(client, state):
    config = LLMConfig.model_validate(
        {**lora_config().model_dump(exclude_unset=True), "output": {"push_to": "s3://models/tune"}}
    )
    client.train(
        runtime=RUNTIME,
        initializer=Initializer(dataset="s3://data/train.jsonl"),
        trainer=BuiltinTrainer(config=config),
        options=[Name("tune")],
    )
    (post,) = state.made("POST", TRAINJOBS)
    assert post.body["spec"]["trainer"]["llmConfig"]["output"] == {"push_to": "s3://models/tune"}
    assert [(s.name, s.status) for s in client.get_job("tune").steps][-1] == ("exporter", StepStatus.PENDING)
    add_pod(state, "tune", "node-0", "Succeeded")
    pod = add_pod(state, "tune", "exporter", "Running", logs=["push: 9 file(s) uploaded, 0 already there"])
    assert [(s.name, s.status) for s in client.get_job("tune").steps][-2:] == [
        ("node-0", StepStatus.SUCCEEDED),
        ("exporter", StepStatus.RUNNING),
    ]
    assert list(client.get_job_logs("tune", step="exporter")) == ["push: 9 file(s) uploaded, 0 already there"]
    assert state.made("GET", "/log")[-1].path == f"{PODS}/{pod}/log"
    assert state.made("GET", "/log")[-1].query["container"] == "exporter"
