"""Bad input fails at train() with one clear error, and nothing is launched or stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.backends.local import LocalBackend
from kubetune.client import (
    BuiltinTrainer,
    CustomTrainer,
    Initializer,
    JobStatus,
    LLMConfig,
    MaxRestarts,
    Name,
    TrainerClient,
)
from kubetune.errors import ConfigError, JobExistsError
from kubetune.spec.initializer import ModelInitializer
from kubetune.spec.trainer import TrainingConfig


def double(x: int) -> int:
    """A trivial custom-trainer function."""
    return 2 * x


def _assert_nothing_left(backend: LocalBackend) -> None:
    assert backend.list_jobs() == []
    assert not (backend.home / "runs").exists() or not any((backend.home / "runs").iterdir())
    assert not (backend.home / "logs").exists() or not any((backend.home / "logs").iterdir())


def _builtin(model: str | None = "/models/x", dataset: str | None = "/data/y") -> BuiltinTrainer:
    return BuiltinTrainer(config=LLMConfig.model_validate({"model": {"path": model}, "dataset": {"path": dataset}}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runtime": "no-such-runtime", "trainer": CustomTrainer(func=double)}, "unknown runtime 'no-such-runtime'"),
        ({"trainer": CustomTrainer(func=double, num_nodes=0)}, "num_nodes"),
        ({"trainer": CustomTrainer(func=double, procs_per_node=0)}, "procs_per_node"),
        ({"trainer": CustomTrainer(func=double, resources_per_node={"gpu": 64})}, "resources.gpu: 64 GPUs per node"),
        ({"trainer": CustomTrainer(func="not a function")}, "trainer.func"),
        ({"trainer": CustomTrainer(func=double, env={"BAD-NAME": "1"})}, "env"),
        ({"trainer": _builtin(model=None)}, "trainer.model.path"),
        (
            {"trainer": _builtin(), "initializer": Initializer(dataset="file:///no/such/dataset")},
            "initializer.dataset.storage_uri",
        ),
        (
            {"trainer": _builtin(), "initializer": Initializer(model="gopher://host/model")},
            "initializer.model.storage_uri: gopher://host/model: unknown storage scheme 'gopher'",
        ),
        (
            {
                "trainer": _builtin(),
                "initializer": Initializer(
                    model=ModelInitializer(storage_uri="hf://org/m", token={"kubernetes": {"name": "s", "key": "k"}})
                ),
            },
            "initializer.model: a Kubernetes Secret reference needs the Kubernetes backend",
        ),
    ],
)
def test_invalid_job_is_refused_before_anything_starts(client, backend, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        client.train(**kwargs, options=[Name("bad")])
    _assert_nothing_left(backend)


def test_invalid_trainer_config_names_the_field(client, backend):
    # model_construct skips validation, as a config built from untrusted data might
    config = LLMConfig.model_construct(training=TrainingConfig.model_construct(batch_size=0))
    with pytest.raises(ConfigError, match=r"trainer\.training\.batch_size"):
        client.train(trainer=BuiltinTrainer(config=config))
    _assert_nothing_left(backend)


def test_existing_job_name_is_refused_and_the_first_job_is_untouched(client: TrainerClient, backend: LocalBackend):
    client.train(trainer=CustomTrainer(func=double, func_args={"x": 21}), options=[Name("twice")])
    with pytest.raises(JobExistsError, match="'twice' already exists"):
        client.train(trainer=CustomTrainer(func=double, func_args={"x": 0}), options=[Name("twice")])

    job = client.wait_for_job_status("twice", timeout=120, polling_interval=0.3)
    assert job.status == JobStatus.COMPLETE
    assert client.get_job_return_values("twice") == {0: 42}
    assert [j.name for j in client.list_jobs()] == ["twice"]
    assert sum(event.reason == "Created" for event in client.get_job_events("twice")) == 1


def test_unknown_log_step_is_a_clear_error(client: TrainerClient, tmp_path: Path):
    client.train(trainer=CustomTrainer(func=double, func_args={"x": 1}), options=[Name("steps")])
    with pytest.raises(ConfigError, match=r"no step 'node-3'.*node-0"):
        list(client.get_job_logs("steps", step="node-3"))


def test_max_restarts_option_is_validated(client, backend):
    with pytest.raises(ConfigError, match=r"max_restarts"):
        client.train(trainer=CustomTrainer(func=double), options=[Name("bad"), MaxRestarts(101)])
    _assert_nothing_left(backend)
