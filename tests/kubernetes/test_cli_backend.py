"""The CLI reaches a cluster with `--backend kubernetes`: the same job file, the same commands."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from apiserver import serve_api
from k8s_schemas import make_trainjob

from kubetune.contracts.progress import Progress
from kubetune.runtimes import get_runtime
from kubetune.trainer.status_report import TrainJobStatusReporter

RUNTIME = "smollm2-135m-lora"
RUNTIMES = "/apis/kubetune.dev/v1alpha1/clustertrainingruntimes"
TRAINJOBS = "/apis/kubetune.dev/v1alpha1/namespaces/ml/trainjobs"


@pytest.fixture
def cluster(tmp_path: Path):
    """A loopback API server holding one runtime, and a kubeconfig pointing at it (namespace ml)."""
    with serve_api() as (url, state):
        state.put(RUNTIMES, copy.deepcopy(get_runtime(RUNTIME).manifest))
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": url}}],
            "users": [{"name": "u", "user": {}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}],
            "current-context": "x",
        }
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        yield tmp_path / "kubeconfig", state


def kubetune(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_train_detach_then_jobs_and_delete_on_the_cluster(cluster, tmp_path: Path):
    kubeconfig, state = cluster
    job = {
        "name": "cli-tune",
        "runtime": RUNTIME,
        "initializer": {"dataset": "s3://data/train.jsonl"},
        "trainer": {"training": {"max_steps": 5}},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))

    submitted = kubetune(kubeconfig, "train", "-f", str(tmp_path / "job.yaml"), "--backend", "kubernetes", "--detach")
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted cli-tune" in submitted.stdout
    created = state.objects[TRAINJOBS]["cli-tune"]
    assert created["spec"]["runtimeRef"]["name"] == RUNTIME
    assert created["spec"]["trainer"]["llmConfig"]["training"] == {"max_steps": 5}

    listing = kubetune(kubeconfig, "jobs", "--backend", "kubernetes")
    assert listing.returncode == 0, listing.stderr
    assert "cli-tune" in listing.stdout

    deleted = kubetune(kubeconfig, "delete", "cli-tune", "--backend", "kubernetes")
    assert deleted.returncode == 0, deleted.stderr
    assert "cli-tune" not in state.objects.get(TRAINJOBS, {})


def test_jobs_shows_the_progress_the_trainer_reported_to_the_cluster(cluster):
    kubeconfig, state = cluster
    state.put(TRAINJOBS, make_trainjob(name="reported", namespace="ml"))
    url = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    report = TrainJobStatusReporter(url, "ml", "reported")
    report(Progress(6, 20, loss=1.2345, eval_loss=1.5, tokens_per_s=1234.0, elapsed_s=30.0, eta_s=75.0))
    listing = kubetune(kubeconfig, "jobs", "--backend", "kubernetes")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "reported" in line)
    assert "6/20" in row and "loss 1.2345" in row and "eval 1.5000" in row
    assert "1,234 tok/s" in row and "eta 1m15s" in row


def test_unknown_backend_and_local_namespace_are_user_errors(tmp_path: Path):
    bad = kubetune(tmp_path / "none", "jobs", "--backend", "slurm")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --backend: 'slurm' is not 'local' or 'kubernetes'"
    local_ns = kubetune(tmp_path / "none", "jobs", "--namespace", "ml")
    assert local_ns.returncode == 2 and "only the kubernetes backend has namespaces" in local_ns.stderr
