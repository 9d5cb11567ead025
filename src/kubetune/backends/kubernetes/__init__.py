"""The Kubernetes backend: jobs run as TrainJobs, reconciled by the kubetune controller."""

from kubetune.backends.kubernetes.backend import KubernetesBackend
from kubetune.backends.kubernetes.render_trainjob import KubernetesJobOptions, render_trainjob

__all__ = ["KubernetesBackend", "KubernetesJobOptions", "render_trainjob"]
