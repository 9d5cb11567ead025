"""BuiltinTrainer: the LLM Trainer runs through the SDK with initializers, progress visible while it runs."""

from __future__ import annotations

import time
from pathlib import Path

from kubetune.client import BuiltinTrainer, Initializer, JobStatus, LLMConfig, Name, StepStatus, TrainerClient
from kubetune.tracking.trackers import tensorboard_available


def test_lora_job_with_initializers_reports_progress_and_outputs(
    client: TrainerClient, smollm2_dir: Path, tiny_alpaca: Path
):
    config = LLMConfig.model_validate(
        {
            "method": "lora",
            "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 4, "batch_size": 2, "max_seq_len": 48, "learning_rate": 1e-3},
            "output": {"save_merged": False},
        }
    )
    name = client.train(
        initializer=Initializer(model=f"file://{smollm2_dir}", dataset=str(tiny_alpaca)),
        trainer=BuiltinTrainer(config=config),
        options=[Name("lora-smollm2")],
    )

    seen_statuses = []
    running_progress = []
    deadline = time.monotonic() + 400
    while True:
        job = client.get_job(name)
        seen_statuses.append(job.status)
        if job.status == JobStatus.RUNNING and job.progress is not None:
            running_progress.append(job.progress)
        if job.status.is_terminal or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert job.status == JobStatus.COMPLETE, (job.reason, job.message, list(client.get_job_logs(name)))
    assert JobStatus.INITIALIZING in seen_statuses
    assert running_progress, "no progress was visible while the job was running"
    first = running_progress[0]
    assert first.total_steps == 4 and 1 <= first.step <= 4
    assert first.loss is not None and first.loss > 0
    assert first.eta_s is not None and first.tokens_per_s is not None
    assert job.progress is not None and job.progress.step == 4

    assert [(s.name, s.status) for s in job.steps] == [
        ("model-initializer", StepStatus.SUCCEEDED),
        ("dataset-initializer", StepStatus.SUCCEEDED),
        ("node-0", StepStatus.SUCCEEDED),
    ]
    assert (job.run_dir / "model" / "config.json").is_file()
    assert (job.run_dir / "dataset" / "train.jsonl").is_file()
    assert (job.output_dir / "adapter" / "adapter_config.json").is_file()
    assert (job.output_dir / "config.yaml").is_file()
    if tensorboard_available():
        assert list((job.output_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert any("ready at" in line for line in client.get_job_logs(name, step="model-initializer"))
    assert any(line.startswith("step 4/4") for line in client.get_job_logs(name, step="node-0"))
