"""The Kubernetes backend: jobs run as TrainJobs, reconciled by the kubetune controller."""

from kubetune.backends.kubernetes.backend import KubernetesBackend
from kubetune.backends.kubernetes.job_info import JobEvent, StepStatus, TrainJobInfo
from kubetune.backends.kubernetes.render_trainjob import KubernetesJobOptions, render_trainjob

__all__ = [
    "JobEvent",
    "KubernetesBackend",
    "KubernetesJobOptions",
    "StepStatus",
    "TrainJobInfo",
    "render_trainjob",
]
