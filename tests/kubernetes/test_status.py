"""JobSet state mirrored into TrainJob conditions and job counts; the trainer's progress left to the trainer."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from k8s_schemas import make_trainjob

from kubetune.controller.status import failed_status, mirror_status

NOW = datetime(2026, 1, 1, 0, 10, tzinfo=timezone.utc)


def jobset(suspend=False, conditions=(), jobs=()):
    return {
        "metadata": {"name": "tune"},
        "spec": {"suspend": suspend},
        "status": {
            "conditions": [{"type": t, "status": "True", "message": m} for t, m in conditions],
            "replicatedJobsStatus": [
                {"name": name, "ready": r, "active": a, "succeeded": s, "failed": f, "suspended": 0}
                for name, r, a, s, f in jobs
            ],
        },
    }


def conditions(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


@pytest.mark.parametrize(
    ("js", "expected"),
    [
        (None, {"Created": ("False", "Creating")}),
        (
            jobset(jobs=[("model-initializer", 1, 1, 0, 0), ("node", 0, 0, 0, 0)]),
            {"Created": ("True", "JobSetCreated"), "Running": ("True", "Initializing")},
        ),
        (
            jobset(jobs=[("model-initializer", 0, 0, 1, 0), ("node", 2, 2, 0, 0)]),
            {"Created": ("True", "JobSetCreated"), "Running": ("True", "Training")},
        ),
        (
            jobset(conditions=[("Completed", "done")], jobs=[("node", 0, 0, 1, 0)]),
            {
                "Created": ("True", "JobSetCreated"),
                "Running": ("False", "Completed"),
                "Complete": ("True", "JobSetCompleted"),
            },
        ),
        (
            jobset(conditions=[("Failed", "pod node-0 failed")], jobs=[("node", 0, 0, 0, 1)]),
            {"Created": ("True", "JobSetCreated"), "Running": ("False", "Failed"), "Failed": ("True", "JobSetFailed")},
        ),
        (
            jobset(suspend=True),
            {
                "Created": ("True", "JobSetCreated"),
                "Running": ("False", "Suspended"),
                "Suspended": ("True", "Suspended"),
            },
        ),
        (jobset(jobs=[("node", 0, 0, 0, 0)]), {"Created": ("True", "JobSetCreated"), "Running": ("False", "Pending")}),
    ],
)
def test_jobset_state_maps_to_conditions(js, expected):
    trainjob = make_trainjob(suspend=bool(js and js["spec"]["suspend"]))
    assert conditions(mirror_status(trainjob, js, NOW)) == expected


def test_job_counts_are_reported_per_step():
    status = mirror_status(
        make_trainjob(), jobset(jobs=[("dataset-initializer", 0, 0, 1, 0), ("node", 2, 2, 0, 0)]), NOW
    )
    assert status["jobsStatus"] == [
        {"name": "dataset-initializer", "ready": 0, "active": 0, "succeeded": 1, "failed": 0, "suspended": 0},
        {"name": "node", "ready": 2, "active": 2, "succeeded": 0, "failed": 0, "suspended": 0},
    ]


def test_waiting_for_kueue_is_not_a_user_suspend():
    trainjob = make_trainjob(labels={"kueue.x-k8s.io/queue-name": "q"})
    status = mirror_status(trainjob, jobset(suspend=True), NOW)
    assert conditions(status)["Suspended"] == ("True", "QueuedByKueue")


def test_resume_flips_suspended_to_false():
    suspended = make_trainjob(suspend=True)
    suspended["status"] = mirror_status(suspended, jobset(suspend=True), NOW)
    resumed = make_trainjob()
    resumed["status"] = suspended["status"]
    status = mirror_status(resumed, jobset(jobs=[("node", 1, 1, 0, 0)]), NOW + timedelta(minutes=1))
    assert conditions(status)["Suspended"] == ("False", "Resumed")
    assert conditions(status)["Running"] == ("True", "Training")


def test_transition_time_moves_only_when_status_changes():
    trainjob = make_trainjob()
    first = mirror_status(trainjob, jobset(jobs=[("node", 1, 1, 0, 0)]), NOW)
    trainjob["status"] = first
    later = mirror_status(trainjob, jobset(jobs=[("node", 2, 2, 0, 0)]), NOW + timedelta(minutes=5))
    running = {c["type"]: c for c in later["conditions"]}["Running"]
    assert running["lastTransitionTime"] == "2026-01-01T00:10:00Z"


def test_complete_is_terminal():
    trainjob = make_trainjob()
    trainjob["status"] = mirror_status(trainjob, jobset(conditions=[("Completed", "")]), NOW)
    # A later JobSet deletion (or any change) does not undo completion.
    assert conditions(mirror_status(trainjob, None, NOW))["Complete"] == ("True", "JobSetCompleted")


def test_deadline_fails_a_running_job():
    trainjob = make_trainjob(activeDeadlineSeconds=60)  # created at 00:00, now is 00:10
    status = mirror_status(trainjob, jobset(jobs=[("node", 1, 1, 0, 0)]), NOW)
    assert conditions(status)["Failed"] == ("True", "DeadlineExceeded")
    within = mirror_status(make_trainjob(activeDeadlineSeconds=3600), jobset(jobs=[("node", 1, 1, 0, 0)]), NOW)
    assert "Failed" not in conditions(within)


def test_bad_input_status_is_failed_with_the_reason():
    status = failed_status(make_trainjob(), "RuntimeNotFound", "spec.runtimeRef: nope", NOW)
    assert conditions(status) == {"Created": ("False", "RuntimeNotFound"), "Failed": ("True", "RuntimeNotFound")}
    assert status["observedGeneration"] == 1


def test_the_trainers_progress_is_never_part_of_the_controllers_status():
    trainjob = make_trainjob()
    trainjob["status"] = {"trainingProgress": {"step": 3, "total_steps": 9}}
    for status in (
        mirror_status(trainjob, jobset(jobs=[("node", 1, 1, 0, 0)]), NOW),
        mirror_status(trainjob, None, NOW),
        failed_status(trainjob, "SecretNotFound", "x", NOW),
    ):
        assert "trainingProgress" not in status


def test_status_written_by_the_controller_fits_the_crd(trainjob_validator):
    trainjob = make_trainjob()
    trainjob["status"] = mirror_status(trainjob, jobset(jobs=[("node", 1, 1, 0, 0)]), NOW)
    trainjob_validator.validate(trainjob)
    trainjob["status"] = failed_status(trainjob, "SecretNotFound", "spec.initializer.model.secretRef: x", NOW)
    trainjob_validator.validate(trainjob)
