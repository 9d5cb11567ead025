"""report_to: a real MLflow tracking server on loopback, W&B offline (real library, files on disk) and TensorBoard
event files get the resolved config, tags, every progress field per step and the artifacts; an unreachable server
costs training nothing (one warning, retries with backoff), and strict_tracking fails before training instead."""

from __future__ import annotations

import time

import pytest
import yaml

from kubetune.backends.local import LocalBackend
from kubetune.contracts.progress import Progress
from kubetune.contracts.run_dir import RunDir
from kubetune.spec.job import JobSpec
from kubetune.tracking import TrackingError, TrackingSession, read_tracking_file
from tests.after_training.wandb_files import wandb_records
from tests.faults.s3_proxy import FaultyS3Proxy

pytest.importorskip("mlflow")
pytest.importorskip("wandb")


def job(name: str, mlflow_uri: str, report_to=("mlflow",), **trainer) -> JobSpec:
    return JobSpec(
        name=name,
        runtime=None,
        trainer={
            "report_to": list(report_to),
            "tracking": {"mlflow": {"tracking_uri": mlflow_uri, "experiment": "tests"}, "wandb": {"mode": "offline"}},
            "training": {"learning_rate": 3e-4, "max_steps": 3},
            **trainer,
        },
    )


def progress(step: int) -> Progress:
    return Progress(
        step=step, total_steps=3, loss=2.0 / step, lr=1e-3, tokens_per_s=100.0 * step, objective={"kl": 0.1}
    )


def test_every_tracker_gets_config_tags_each_step_and_artifacts(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    layout = RunDir(tmp_path / "run")
    adapter = layout.adapter
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    layout.loss_curve.write_bytes(b"\x89PNG not really")
    warnings: list[str] = []
    spec = job("tracked", mlflow_server, ("tensorboard", "mlflow", "wandb"))
    spec.trainer.tracking.log_adapter = True
    session = TrackingSession(spec, layout, warn=warnings.append)
    session.start()
    for step in (1, 2, 3):
        session.report(progress(step))
    # A record only metrics.jsonl has (an evaluation appended after the last step) is caught up at the end.
    session.catch_up([progress(3).to_json(), {"step": 3, "total_steps": 3, "eval": {"exact_match": 0.75}}])
    session.finish("FINISHED", [(layout.loss_curve, "loss.png"), (adapter, "adapter")])
    assert warnings == []

    runs = read_tracking_file(layout)
    client = MlflowClient(mlflow_server)
    run = client.get_run(runs["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    assert run.data.params["trainer.training.learning_rate"] == "0.0003"
    assert run.data.params["trainer.report_to"] == '["tensorboard", "mlflow", "wandb"]'
    assert {k: v for k, v in run.data.tags.items() if k.startswith("kubetune.")} == {
        "kubetune.job": "tracked",
        "kubetune.runtime": "none",
        "kubetune.backend": "local",
    }
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)] for key in run.data.metrics
    }
    assert history["loss"] == [(1, 2.0), (2, 1.0), (3, 2.0 / 3)]
    assert [step for step, _ in history["tokens_per_s"]] == [1, 2, 3]
    assert history["objective/kl"] == [(1, 0.1), (2, 0.1), (3, 0.1)]
    assert history["eval/exact_match"] == [(3, 0.75)]
    assert "step" not in history and "total_steps" not in history
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"loss.png", "adapter"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "adapter")] == ["adapter/adapter_config.json"]

    events = EventAccumulator(str(layout.tensorboard))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 2.0), (2, 1.0), (3, pytest.approx(2 / 3))]
    assert [e.step for e in events.Scalars("train/eval/exact_match")] == [3]

    (run_file,) = layout.wandb.glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    (header,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert header.run_id == runs["wandb"]["run_id"] and header.display_name == "tracked"
    assert set(header.tags) == {"job:tracked", "runtime:none", "backend:local"}
    config = {item.key: item.value_json for item in header.config.update}
    assert config["trainer.training.learning_rate"] == '"0.0003"'
    steps = [
        {i.key or "/".join(i.nested_key): i.value_json for i in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    assert [(s["_step"], float(s["loss"])) for s in steps if "loss" in s] == [("1", 2.0), ("2", 1.0), ("3", 2 / 3)], (
        steps
    )
    assert any(s.get("eval/exact_match") == "0.75" for s in steps)
    assert sum(r.WhichOneof("record_type") == "artifact" for r in records) == 2
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [0]

    # A resumed attempt of the job continues the same MLflow run.
    again = TrackingSession(job("tracked", mlflow_server), layout, warn=warnings.append)
    again.start()
    again.report(progress(3))
    again.finish(None)
    assert read_tracking_file(layout)["mlflow"]["run_id"] == run.info.run_id
    assert client.get_run(run.info.run_id).info.status == "RUNNING"


def test_an_unreachable_server_warns_once_retries_with_backoff_and_catches_up(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    proxy = FaultyS3Proxy(mlflow_server)  # a plain HTTP forwarder here
    port = proxy.port
    proxy.stop(hold_port=True)  # connections refused, as by a server that is down
    warnings: list[str] = []
    layout = RunDir(tmp_path / "run")
    session = TrackingSession(job("flaky", proxy.endpoint), layout, warn=warnings.append)
    started = time.monotonic()
    session.start()
    for step in (1, 2, 3):
        session.report(progress(step))
    assert time.monotonic() - started < 1.0  # training never waits for the tracker
    time.sleep(3.5)  # attempts at about 0, 1 and 3 s
    assert len(warnings) == 1 and "mlflow failed to start its run" in warnings[0] and "retrying" in warnings[0]
    proxy.release_port()
    back = FaultyS3Proxy(mlflow_server, port=port)
    try:
        session.finish("FINISHED", wait_s=30)
    finally:
        back.stop()
    assert len(warnings) == 2 and "reachable again" in warnings[1]
    run_id = read_tracking_file(layout)["mlflow"]["run_id"]
    history = MlflowClient(mlflow_server).get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3]


def test_strict_tracking_fails_before_training_when_the_server_is_down(mlflow_server, tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from kubetune.cli.main import app

    proxy = FaultyS3Proxy(mlflow_server)
    proxy.stop(hold_port=True)
    try:
        spec = job("strict", proxy.endpoint, strict_tracking=True)
        started = time.monotonic()
        with pytest.raises(TrackingError, match=r"strict_tracking.*mlflow: start its run failed"):
            TrackingSession(spec, RunDir(tmp_path / "run")).start()  # what trainer rank 0 does first
        assert time.monotonic() - started < 10
        # `kubetune train --strict-tracking`: refused at submit, naming the server; no job is created.
        data = tmp_path / "data.jsonl"
        data.write_text('{"instruction": "a", "output": "b"}\n')
        loose = job("strict", proxy.endpoint).model_dump(mode="json", exclude_unset=True)
        loose["trainer"].update(model={"path": str(tiny_model_dir)}, dataset={"path": str(data)})
        job_file = tmp_path / "job.yaml"
        job_file.write_text(yaml.safe_dump(loose))
        home = tmp_path / "home"
        result = CliRunner().invoke(app, ["train", "-f", str(job_file), "--home", str(home), "--strict-tracking"])
        assert result.exit_code == 2, result.output
        assert "tracking.mlflow.tracking_uri" in result.output and "unreachable with strict_tracking" in result.output
        assert LocalBackend(home).list_jobs() == []
    finally:
        proxy.release_port()
