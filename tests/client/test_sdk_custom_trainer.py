"""CustomTrainer: a user's function runs under torchrun on every worker of several local nodes."""

from __future__ import annotations

from kubetune.client import CustomTrainer, JobStatus, Name, StepStatus, TrainerClient


def all_reduce_ranks(scale: float) -> dict:
    """Sum (rank + 1) over all workers with gloo; every rank must see the same total."""
    import os

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    value = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(value)
    print(f"rank {dist.get_rank()} of {dist.get_world_size()} sees sum {value.item()}", flush=True)
    world = dist.get_world_size()
    dist.destroy_process_group()
    return {"rank": int(os.environ["RANK"]), "node": int(os.environ["GROUP_RANK"]), "world": world,
            "total": value.item() * scale}  # fmt: skip


def test_two_nodes_by_two_processes_all_reduce_and_report_per_node(client: TrainerClient):
    name = client.train(
        trainer=CustomTrainer(func=all_reduce_ranks, func_args={"scale": 10.0}, num_nodes=2, procs_per_node=2),
        options=[Name("allreduce")],
    )
    job = client.wait_for_job_status(name, timeout=240, polling_interval=0.5)

    assert job.status == JobStatus.COMPLETE
    assert [(s.name, s.status, s.exit_code) for s in job.steps] == [
        ("node-0", StepStatus.SUCCEEDED, 0),
        ("node-1", StepStatus.SUCCEEDED, 0),
    ]
    returns = client.get_job_return_values(name)
    assert sorted(returns) == [0, 1, 2, 3]
    assert {r["total"] for r in returns.values()} == {100.0}  # (1 + 2 + 3 + 4) * 10 on every rank
    assert {r["world"] for r in returns.values()} == {4}
    assert sorted(r["node"] for r in returns.values()) == [0, 0, 1, 1]  # two nodes, two workers each

    for node in ("node-0", "node-1"):
        lines = list(client.get_job_logs(name, step=node))
        assert sum("of 4 sees sum 10.0" in line for line in lines) == 2, lines
        assert sum("all_reduce_ranks returned" in line for line in lines) == 2, lines
