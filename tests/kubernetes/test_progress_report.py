"""On Kubernetes, trainer rank 0 reports its progress record to the TrainJob status, and the SDK reads it back.

The reporter talks to the loopback API server over HTTP; the patched TrainJob is checked
against the CRD schema, and read back by the real Kubernetes backend.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from apiserver import ApiServerState, serve_api
from k8s_schemas import make_trainjob

import kubernetes
from kubetune.backends.kubernetes import KubernetesBackend
from kubetune.contracts.kubernetes import PROGRESS_STATUS_FIELD, TRAINJOB_NAME_ENV, TRAINJOB_NAMESPACE_ENV
from kubetune.contracts.progress import Progress
from kubetune.contracts.run_dir import RunDir
from kubetune.controller.status import mirror_status
from kubetune.trainer.metrics import MetricsWriter
from kubetune.trainer.status_report import TrainJobStatusReporter, reporter_from_environment

TRAINJOBS = "/apis/kubetune.dev/v1alpha1/namespaces/team-a/trainjobs"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api():
    with serve_api() as (url, state):
        state.put(TRAINJOBS, make_trainjob())
        yield url, state


def patches(state: ApiServerState) -> list[dict]:
    return [r.body["status"][PROGRESS_STATUS_FIELD] for r in state.made("PATCH", "/trainjobs/tune/status")]


def stored_progress(state: ApiServerState) -> dict:
    return state.objects[TRAINJOBS]["tune"]["status"][PROGRESS_STATUS_FIELD]


def test_trainer_records_reach_the_trainjob_status_and_the_sdk(api, tmp_path: Path):
    url, _ = api
    reporter = TrainJobStatusReporter(url, "team-a", "tune", min_interval_s=0.0)
    writer = MetricsWriter(RunDir(tmp_path).metrics_file, total_steps=10, reporters=(reporter,))
    writer.log(4, loss=1.5, lr=1e-4, tokens_per_s=812.5, eval_loss=1.75)
    writer.log(5, loss=1.25, lr=1e-4, grad_norm=0.5, tokens_per_s=900.0, real_tokens=4096, eval_loss=None)

    api_client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=url))
    job = KubernetesBackend(namespace="team-a", api_client=api_client).get_job("tune")
    progress = job.progress
    assert (progress.step, progress.total_steps, progress.loss, progress.tokens_per_s) == (5, 10, 1.25, 900.0)
    assert progress.eval_loss == 1.75  # the last evaluation, carried to a step that did not evaluate
    assert progress.eta_s is not None and progress.elapsed_s is not None
    assert (progress.grad_norm, progress.real_tokens, progress.lr) == (0.5, 4096, 1e-4)
    # the same record as the run directory's metrics.jsonl line of that step
    local = Progress.from_json(json.loads(RunDir(tmp_path).metrics_file.read_text().splitlines()[-1]))
    assert dataclasses.replace(local, eval_loss=1.75) == progress


def test_patched_status_fits_the_crd_and_the_crd_has_every_record_field(api, trainjob_validator):
    url, state = api
    reporter = TrainJobStatusReporter(url, "team-a", "tune", min_interval_s=0.0)
    record = Progress(3, 9, loss=1.0, eval_loss=None, lr=2e-4, tokens_per_s=10.0, epoch=0, eta_s=6.0)
    reporter(dataclasses.replace(record, objective={"reward_margin": 0.25}))
    trainjob = state.objects[TRAINJOBS]["tune"]
    trainjob_validator.validate(trainjob)
    assert stored_progress(state)["objective"] == {"reward_margin": 0.25}
    assert "eval_loss" not in stored_progress(state)  # null in a merge patch: not known yet
    schema = trainjob_validator.schema["properties"]["status"]["properties"][PROGRESS_STATUS_FIELD]["properties"]
    assert {f.name for f in dataclasses.fields(Progress)} <= set(schema)


def test_reports_are_rate_limited_but_the_last_step_always_goes(api):
    url, state = api
    clock = Clock()
    reporter = TrainJobStatusReporter(url, "team-a", "tune", min_interval_s=10.0, clock=clock)
    for step in range(1, 6):  # five steps within one interval: one request
        clock.now += 1.0
        reporter(Progress(step, 20, loss=1.0))
    clock.now += 10.0
    reporter(Progress(6, 20, loss=0.9))
    clock.now += 0.1
    reporter(Progress(20, 20, loss=0.5))
    assert [p["step"] for p in patches(state)] == [1, 6, 20]
    assert stored_progress(state)["step"] == 20


def test_a_failing_api_warns_once_and_never_stops_training(api, capsys):
    url, _ = api
    clock = Clock()
    reporter = TrainJobStatusReporter(url, "team-a", "missing", min_interval_s=1.0, clock=clock)
    for step in range(1, 4):
        clock.now += 5.0
        reporter(Progress(step, 10, loss=1.0))  # 404: no such TrainJob
    err = capsys.readouterr().err
    assert err.count("warning: progress not reported") == 1 and "HTTP 404" in err
    assert reporter.interval_s > 1.0  # backs off while failing


def test_controller_status_never_overwrites_the_trainers_progress(api):
    url, state = api
    TrainJobStatusReporter(url, "team-a", "tune", min_interval_s=0.0)(Progress(7, 9, loss=0.5))
    trainjob = state.objects[TRAINJOBS]["tune"]
    status = mirror_status(trainjob, None, datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert PROGRESS_STATUS_FIELD not in status  # a patch of it leaves the trainer's field alone


def test_the_pod_environment_names_the_trainjob_and_its_credentials(tmp_path: Path):
    (tmp_path / "token").write_text("secret-token\n")
    env = {
        TRAINJOB_NAME_ENV: "tune",
        TRAINJOB_NAMESPACE_ENV: "team-a",
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "KUBERNETES_SERVICE_PORT": "6443",
    }
    reporter = reporter_from_environment(env, account_dir=tmp_path)
    assert reporter.url == "https://10.0.0.1:6443/apis/kubetune.dev/v1alpha1/namespaces/team-a/trainjobs/tune/status"
    assert reporter.token_file == tmp_path / "token"
    assert reporter_from_environment({**env, TRAINJOB_NAME_ENV: ""}, account_dir=tmp_path) is None
    assert reporter_from_environment({}, account_dir=tmp_path) is None


def test_the_token_is_sent_as_a_bearer_header(api, tmp_path: Path):
    url, state = api
    (tmp_path / "token").write_text("rotated-token\n")
    TrainJobStatusReporter(url, "team-a", "tune", token_file=tmp_path / "token")(Progress(1, 2, loss=1.0))
    (request,) = state.made("PATCH", "/status")
    assert request.headers["Authorization"] == "Bearer rotated-token"
    assert request.headers["Content-Type"] == "application/merge-patch+json"


def test_evaluation_scores_reach_the_trainjob_status_beside_the_last_training_step(api, tmp_path: Path):
    url, state = api
    reporter = TrainJobStatusReporter(url, "team-a", "tune", min_interval_s=3600.0)
    writer = MetricsWriter(RunDir(tmp_path).metrics_file, total_steps=10, reporters=(reporter,))
    writer.log(1, loss=2.0)
    writer.log(2, loss=1.5)  # within the interval: not sent
    writer.log_evaluation(2, {"exact_match": 0.5, "rouge_l": 0.75})  # sent at once, on the last training record
    assert [(p["step"], p["loss"], p.get("evaluation")) for p in patches(state)] == [
        (1, 2.0, None),
        (2, 1.5, {"exact_match": 0.5, "rouge_l": 0.75}),
    ]
    api_client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=url))
    progress = KubernetesBackend(namespace="team-a", api_client=api_client).get_job("tune").progress
    assert (progress.step, progress.loss, progress.evaluation) == (2, 1.5, {"exact_match": 0.5, "rouge_l": 0.75})
