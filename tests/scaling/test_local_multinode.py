"""Two local "nodes" (torchrun agents over a loopback rendezvous) train like one node with as many processes."""

from __future__ import annotations

import json
from pathlib import Path

from kubetune.backends.local import LocalBackend
from kubetune.client import BuiltinTrainer, JobStatus, LLMConfig, Name, TrainerClient

ROWS = [{"instruction": f"Add {i} and {i + 1}.", "output": f"The sum is {2 * i + 1}."} for i in range(16)]


def _losses(job) -> list[float]:
    records = [json.loads(line) for line in (job.output_dir / "metrics.jsonl").read_text().splitlines()]
    return [record["loss"] for record in records]


def test_two_nodes_of_one_process_match_one_node_of_two(tmp_path: Path, smollm2_dir: Path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    config = LLMConfig.model_validate(
        {
            "model": {"path": str(smollm2_dir)},
            "dataset": {"path": str(data)},
            "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 3, "batch_size": 2, "max_seq_len": 48, "learning_rate": 1e-3},
            "output": {"save_merged": False},
        }
    )
    backend = LocalBackend(tmp_path / "home")
    client = TrainerClient(backend)
    env = {"OMP_NUM_THREADS": "1"}
    shapes = {"two-nodes": (2, 1), "one-node": (1, 2)}
    for name, (nodes, procs) in shapes.items():
        client.train(
            trainer=BuiltinTrainer(config=config, num_nodes=nodes, procs_per_node=procs, env=env),
            options=[Name(name)],
        )
    try:
        jobs = {name: client.wait_for_job_status(name, timeout=600) for name in shapes}
        for name, job in jobs.items():
            assert job.status == JobStatus.COMPLETE, (name, job.reason, job.message)
        two, one = _losses(jobs["two-nodes"]), _losses(jobs["one-node"])
        assert len(two) == len(one) == 3
        for a, b in zip(two, one, strict=True):
            assert abs(a - b) <= 1e-4 * abs(b), (two, one)
        node_logs = {step: list(client.get_job_logs("two-nodes", step=step)) for step in ("node-0", "node-1")}
        assert all(node_logs.values()), "both local nodes should have logged"
    finally:
        for name in shapes:
            backend.delete_job(name)
