"""Kubeflow Trainer v2's CustomTrainer runs on the local backend, waited on with Kubeflow's status names."""

from __future__ import annotations

import pytest

from kubetune.backends.local import LocalBackend
from kubetune.compat import kubeflow
from kubetune.errors import ConfigError


def train_func(greeting: str) -> str:
    """The user's function: what each worker sees of the torchrun environment."""
    import os

    print(f"{greeting} from rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}", flush=True)
    return f"{greeting}:{os.environ['RANK']}"


def test_custom_trainer_runs_and_kubeflow_status_names_work(tmp_path):
    client = kubeflow.TrainerClient(LocalBackend(tmp_path / "home"))
    name = client.train(
        trainer=kubeflow.CustomTrainer(
            func=train_func, func_args={"greeting": "hello"}, num_nodes=2, resources_per_node={"cpu": 1}
        )
    )
    job = client.wait_for_job_status(name, status={"Complete"}, timeout=300, polling_interval=0.5)
    assert job.num_nodes == 2
    assert client.get_job_return_values(name) == {0: "hello:0", 1: "hello:1"}
    assert "hello from rank 1 of 2" in "\n".join(client.get_job_logs(name, step="node-1"))
    with pytest.raises(ConfigError, match=r"status: .*'Succeeded'.* are not all among"):
        client.wait_for_job_status(name, status={"Succeeded"})
    client.delete_job(name)
