"""What Kubeflow users hold, accepted by the native API: nvidia.com/gpu, and a clear refusal of tasks kubetune
does not train (TrainingArguments and PEFT objects: tests/compat/test_kubeflow_mapping.py; token
classification: tests/trainer/test_token_classification.py)."""

from __future__ import annotations

import pytest

from kubetune.client import BuiltinTrainer, TrainerClient
from kubetune.errors import ConfigError
from kubetune.spec import JobSpec


def test_nvidia_gpu_is_the_gpu_resource_and_sets_the_processes_per_node():
    assert (
        JobSpec.model_validate({"resources": {"nvidia.com/gpu": "2", "cpu": "5", "memory": "10G"}}).resources.gpu == 2
    )
    with pytest.raises(ConfigError, match=r"resources.gpu: 2 GPUs per node requested, this machine has \d"):
        # procs_per_node follows the GPUs (2), and the local backend checks them against this machine
        TrainerClient("local").train(trainer=BuiltinTrainer(config={}, resources_per_node={"nvidia.com/gpu": 2}))


def test_gpu_given_twice_with_different_counts_is_refused():
    with pytest.raises(ConfigError, match=r"resources_per_node: gpu \(1\) and nvidia.com/gpu \(2\) disagree"):
        TrainerClient("local").train(
            trainer=BuiltinTrainer(config={}, resources_per_node={"gpu": 1, "nvidia.com/gpu": 2})
        )


def test_a_task_kubetune_does_not_train_is_refused_in_one_line_with_the_way():
    with pytest.raises(ConfigError) as info:
        TrainerClient("local").train(trainer=BuiltinTrainer(config={"model": {"task": "question-answering"}}))
    message = str(info.value)
    assert "trainer.model.task" in message and "'question-answering' is not supported" in message
    assert "train the answers as a 'completion' dataset" in message
    assert "\n" not in message
