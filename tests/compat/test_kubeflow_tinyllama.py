"""Kubeflow's "fine-tune TinyLlama with an HF dataset" call (examples/kubeflow) trains on the local backend.

The example's own ``fine_tune`` runs the notebook's ``TrainingClient().train()`` call (packaged
SmolLM2 for TinyLlama, HumanEval text as a Hub-style dataset); the test shortens it to a few steps.
"""

from __future__ import annotations

import json
import math

from tinyllama_hf_dataset import NAME, fine_tune, write_humaneval_text

from kubetune.contracts.progress import Progress
from kubetune.contracts.run_dir import RunDir

STEPS = 4


def test_tinyllama_notebook_call_trains_its_lora_on_the_split(tmp_path):
    dataset = write_humaneval_text(tmp_path / "humaneval_text")
    client = fine_tune(dataset, max_steps=STEPS)

    job = client.get_job(NAME)
    assert client.get_job_conditions(NAME)[-1] == "Succeeded"
    run = RunDir(job.run_dir)
    records = [Progress.from_json(json.loads(line)) for line in run.metrics_file.read_text().splitlines()]
    assert [r.step for r in records] == list(range(1, STEPS + 1))  # logging_steps=1, max_steps honoured
    assert all(r.loss is not None and math.isfinite(r.loss) for r in records)
    # The LoraConfig object's settings are the adapter's, not kubetune's defaults.
    adapter = json.loads((run.adapter / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"]) == (8, 8, 0.1)
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    client.delete_job(NAME)
