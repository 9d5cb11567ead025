"""A hyperparameter study on Kubernetes: each trial is a TrainJob, scored from the progress record
its trainer reports to the TrainJob status, and a pruned trial's TrainJob is deleted.

The real Kubernetes backend talks to the loopback API server; the test plays the controller and
the trainer: it marks each new TrainJob Running with a progress record at step 2 and, once the
study has read it, Complete with the final record. The eval loss depends on the learning rate the
study put into the TrainJob (best at 1e-2), so the study's result can be checked against it.
"""

from __future__ import annotations

import math
import threading
import time

from test_backend_api import NS, RUNTIME, TRAINJOBS, api, make_backend, set_conditions  # noqa: F401

from kubetune.client import Initializer, JobStatus, LLMConfig, OptimizerClient
from kubetune.contracts.kubernetes import PROGRESS_STATUS_FIELD
from kubetune.contracts.progress import Progress


def eval_loss(learning_rate: float, step: int) -> float:
    """The eval loss the fake trainer reports: 1 at lr 1e-2, 2 more per decade away; 0.5 higher at step 2."""
    return 1.0 + 2 * abs(math.log10(learning_rate) + 2) + (0.5 if step == 2 else 0.0)


# Reads of a TrainJob after it shows step 2 before it completes: submitting reads it twice (its output
# location), a poll once, and cancelling a pruned trial once more; so the study has polled it at step
# 2, and decided whether to prune it, before it can complete.
READS_BEFORE_COMPLETE = 4


def play_controller(state, stop: threading.Event) -> None:
    """Run each TrainJob the study creates: Running at step 2, then (once polled) Complete at step 4."""
    seen_at: dict[str, int] = {}
    while not stop.is_set():
        for name, obj in list(state.objects.get(TRAINJOBS, {}).items()):
            lr = obj["spec"]["trainer"]["llmConfig"]["training"]["learning_rate"]
            reads = len(state.made("GET", f"/trainjobs/{name}"))
            if name not in seen_at:
                progress = Progress(step=2, total_steps=4, loss=3.0, eval_loss=eval_loss(lr, 2)).to_json()
                set_conditions(state, name, ("Running", "Training", "running"), **{PROGRESS_STATUS_FIELD: progress})
                seen_at[name] = reads
            elif seen_at[name] >= 0 and reads >= seen_at[name] + READS_BEFORE_COMPLETE:
                progress = Progress(step=4, total_steps=4, loss=2.0, eval_loss=eval_loss(lr, 4)).to_json()
                set_conditions(state, name, ("Complete", "Succeeded", "done"), **{PROGRESS_STATUS_FIELD: progress})
                seen_at[name] = -1
        time.sleep(0.05)


def test_a_study_runs_its_trials_as_trainjobs_and_prunes_by_deleting_them(api, tmp_path, trainjob_validator):  # noqa: F811
    url, state = api
    client = OptimizerClient(make_backend(url), home=tmp_path / "home")
    base = client.trainer_client.job_spec(
        runtime=RUNTIME,
        initializer=Initializer(dataset="s3://data/train.jsonl"),
        trainer=_trainer(),
    )
    stop = threading.Event()
    controller = threading.Thread(target=play_controller, args=(state, stop), daemon=True)
    controller.start()
    try:
        result = client.optimize(
            name="k8s",
            job=base,
            search_space={"training.learning_rate": "choice([0.01, 0.0001, 1e-06])"},
            n_trials=3,
            sampler={"type": "grid", "seed": 5},  # the grid in the order 1e-2, 1e-4, 1e-6
            pruner={"type": "median", "n_startup_trials": 1},
            polling_interval=0.1,
        )
    finally:
        stop.set()
        controller.join()

    posted = [r.body for r in state.made("POST", "/trainjobs")]
    assert [body["metadata"]["name"] for body in posted] == ["k8s-0", "k8s-1", "k8s-2"]
    for body in posted:  # as created (the status is the fake controller's, written into the same object)
        trainjob_validator.validate({key: value for key, value in body.items() if key != "status"})
    rates = {b["metadata"]["name"]: b["spec"]["trainer"]["llmConfig"]["training"]["learning_rate"] for b in posted}
    assert {t.job: t.params["training.learning_rate"] for t in result.trials} == rates

    by_job = {t.job: t for t in result.trials}
    assert by_job["k8s-0"].status == "complete" and by_job["k8s-0"].value == eval_loss(0.01, 4)
    for name in ("k8s-1", "k8s-2"):  # worse than the first trial's median at step 2: deleted
        assert by_job[name].status == "pruned" and by_job[name].reason == "Pruned"
        assert by_job[name].last_value == eval_loss(rates[name], 2)
        assert state.made("DELETE", f"/trainjobs/{name}")
        assert name not in state.objects[TRAINJOBS]
    assert not state.made("DELETE", "/trainjobs/k8s-0")
    assert client.backend.get_job("k8s-0").status == JobStatus.COMPLETE
    assert result.best.job == "k8s-0" and result.plot is not None and result.plot.is_file()
    assert state.objects[TRAINJOBS]["k8s-0"]["metadata"]["namespace"] == NS


def _trainer():
    from kubetune.client import BuiltinTrainer

    return BuiltinTrainer(
        config=LLMConfig.model_validate(
            {
                "dataset": {"format": "completion", "eval_fraction": 0.2},
                "training": {"max_steps": 4, "eval_every": 2},
            }
        )
    )


def score(job) -> float:
    """A user objective: the finished trial's eval loss plus its training loss."""
    return job.progress.eval_loss + job.progress.loss


def test_a_user_objective_function_scores_trials_and_successive_halving_prunes(api, tmp_path):  # noqa: F811
    url, state = api
    client = OptimizerClient(make_backend(url), home=tmp_path / "home")
    base = client.trainer_client.job_spec(
        runtime=RUNTIME, initializer=Initializer(dataset="s3://data/train.jsonl"), trainer=_trainer()
    )
    stop = threading.Event()
    controller = threading.Thread(target=play_controller, args=(state, stop), daemon=True)
    controller.start()
    try:
        result = client.optimize(
            name="fn",
            job=base,
            search_space={"training.learning_rate": "choice([0.01, 0.0001])"},
            objective={"function": "test_study_trainjobs:score"},
            n_trials=2,
            sampler={"type": "grid", "seed": 1},  # 1e-2 first
            pruner={"type": "successive_halving", "min_resource": 1, "reduction_factor": 2},
            polling_interval=0.1,
        )
    finally:
        stop.set()
        controller.join()
    first, second = result.trials
    assert (first.status, first.value) == ("complete", eval_loss(0.01, 4) + 2.0)
    assert result.metric == "test_study_trainjobs:score"
    assert second.status == "pruned" and "successive_halving pruner at step 2" in second.message
    assert state.made("DELETE", "/trainjobs/fn-1") and not state.made("DELETE", "/trainjobs/fn-0")
