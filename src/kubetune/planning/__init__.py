"""Torch-free planning of a job before launch: peak GPU memory per process, checkpointing, strategy."""

from kubetune.planning.memory import (
    GIB,
    MemoryPlan,
    ModelShape,
    PlanSetup,
    advice,
    choose_checkpointing,
    choose_strategy,
    plan_memory,
)

__all__ = [
    "GIB",
    "MemoryPlan",
    "ModelShape",
    "PlanSetup",
    "advice",
    "choose_checkpointing",
    "choose_strategy",
    "plan_memory",
]
