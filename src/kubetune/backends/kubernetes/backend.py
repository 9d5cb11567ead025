"""``KubernetesBackend``: run jobs as TrainJobs on a cluster with the official ``kubernetes`` client.

The backend submits a TrainJob (rendered by :func:`render_trainjob`) and reads everything back
from the cluster: the TrainJob status the controller maintains (conditions, per-step job counts,
training progress), pod logs and events. Runtimes come from the cluster's
ClusterTrainingRuntimes and are typed with the same :class:`~kubetune.runtimes.Runtime` as the
packaged catalog.

Methods (all raise :class:`~kubetune.errors.KubetuneError` subclasses for user errors):

- ``list_runtimes() -> list[Runtime]``, ``get_runtime(name) -> Runtime``
- ``train(spec, options) -> str`` (the TrainJob name)
- ``list_jobs(runtime=None) -> list[TrainJobInfo]``, ``get_job(name) -> TrainJobInfo``
- ``get_job_logs(name, step="node", follow=False, node_rank=0) -> Iterator[str]``
- ``wait_for_job_status(name, status=("Complete",), timeout=3600, polling_interval=5) -> TrainJobInfo``
- ``delete_job(name) -> None``, ``get_job_events(name) -> list[JobEvent]``

Tested in ``tests/kubernetes``: the rendering purely, the API calls by the opt-in cluster suite.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator

from kubernetes.client.exceptions import ApiException

import kubernetes
from kubetune.backends.kubernetes.job_info import JobEvent, TrainJobInfo, job_info_from_trainjob
from kubetune.backends.kubernetes.render_trainjob import KubernetesJobOptions, render_trainjob
from kubetune.controller.api import CLUSTER_RUNTIME_PLURAL, GROUP, NODE, TRAINJOB_PLURAL, VERSION
from kubetune.controller.reconcile import TRAINJOB_LABEL
from kubetune.errors import ConfigError, KubetuneError
from kubetune.runtimes.catalog import Runtime, runtime_from_manifest
from kubetune.spec.job import JobSpec

STEPS = ("dataset-initializer", "model-initializer", NODE)


class TrainJobNotFound(KubetuneError):
    """No TrainJob of that name in the namespace."""


class TrainJobFailed(KubetuneError):
    """The TrainJob failed while a caller waited for another status."""


class WaitTimeout(KubetuneError):
    """The TrainJob did not reach the wanted status in time."""


class KubernetesBackend:
    """Run and observe kubetune jobs on a Kubernetes cluster.

    Args:
        namespace: namespace of the TrainJobs (default: the kubeconfig context's, else "default").
        context: kubeconfig context to use (default: the current one).
        config_file: kubeconfig path (default: ``$KUBECONFIG`` or ``~/.kube/config``; in-cluster
            config when running in a pod).
        api_client: a ready ``kubernetes.client.ApiClient`` (skips config loading).
    """

    def __init__(
        self,
        namespace: str | None = None,
        context: str | None = None,
        config_file: str | None = None,
        api_client: kubernetes.client.ApiClient | None = None,
    ):
        if api_client is None:
            try:
                kubernetes.config.load_kube_config(config_file=config_file, context=context)
                _, active = kubernetes.config.list_kube_config_contexts(config_file)
                namespace = namespace or active.get("context", {}).get("namespace")
            except (kubernetes.config.ConfigException, FileNotFoundError, TypeError):
                try:
                    kubernetes.config.load_incluster_config()
                except kubernetes.config.ConfigException:
                    raise ConfigError("no Kubernetes configuration: set KUBECONFIG or run inside a cluster") from None
            api_client = kubernetes.client.ApiClient()
        self.namespace = namespace or "default"
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)

    def list_runtimes(self) -> list[Runtime]:
        """The cluster's ClusterTrainingRuntimes, sorted by name (invalid ones are left out)."""
        items = self.custom.list_cluster_custom_object(GROUP, VERSION, CLUSTER_RUNTIME_PLURAL)["items"]
        runtimes = []
        for item in items:
            try:
                runtimes.append(runtime_from_manifest(item))
            except ConfigError:
                continue
        return sorted(runtimes, key=lambda runtime: runtime.name)

    def get_runtime(self, name: str) -> Runtime:
        """The ClusterTrainingRuntime ``name``.

        Raises:
            ConfigError: it does not exist or is invalid.
        """
        try:
            item = self.custom.get_cluster_custom_object(GROUP, VERSION, CLUSTER_RUNTIME_PLURAL, name)
        except ApiException as err:
            if err.status == 404:
                raise ConfigError(f"runtime {name!r} does not exist on the cluster") from None
            raise
        return runtime_from_manifest(item)

    def train(self, spec: JobSpec, options: KubernetesJobOptions) -> str:
        """Create a TrainJob for ``spec`` and return its name.

        The runtime is checked first, so an unknown runtime fails here, before anything is created.

        Raises:
            ConfigError: unknown runtime, local model/dataset path, name too long or taken.
        """
        if options.runtime_kind == "ClusterTrainingRuntime":
            self.get_runtime(options.runtime)
        manifest = render_trainjob(spec, options, self.namespace)
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, TRAINJOB_PLURAL, manifest)
        except ApiException as err:
            if err.status == 409:
                raise ConfigError(f"a TrainJob named {manifest['metadata']['name']!r} already exists") from None
            if err.status == 422:
                raise ConfigError(f"the cluster refused the TrainJob: {_api_message(err)}") from None
            raise
        return manifest["metadata"]["name"]

    def list_jobs(self, runtime: str | None = None) -> list[TrainJobInfo]:
        """TrainJobs of the namespace, oldest first, optionally only those on ``runtime``."""
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, TRAINJOB_PLURAL)["items"]
        jobs = [job_info_from_trainjob(item) for item in items]
        return sorted(
            (job for job in jobs if runtime is None or job.runtime == runtime), key=lambda job: job.created or ""
        )

    def get_job(self, name: str) -> TrainJobInfo:
        """The TrainJob ``name``.

        Raises:
            TrainJobNotFound: no such TrainJob.
        """
        try:
            item = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, TRAINJOB_PLURAL, name)
        except ApiException as err:
            if err.status == 404:
                raise TrainJobNotFound(f"no TrainJob {name!r} in namespace {self.namespace!r}") from None
            raise
        return job_info_from_trainjob(item)

    def get_job_logs(self, name: str, step: str = NODE, follow: bool = False, node_rank: int = 0) -> Iterator[str]:
        """Log lines of one step's pod (for ``node``: the pod of ``node_rank``).

        Args:
            name: TrainJob name.
            step: dataset-initializer, model-initializer or node.
            follow: keep streaming until the container exits.
            node_rank: which node pod (completion index) of the ``node`` step.

        Raises:
            ConfigError: unknown step. TrainJobNotFound: the job does not exist.
        """
        if step not in STEPS:
            raise ConfigError(f"step: {step!r} is not one of {', '.join(STEPS)}")
        self.get_job(name)
        selector = f"{TRAINJOB_LABEL}={name},jobset.sigs.k8s.io/replicatedjob-name={step}"
        if step == NODE:
            selector += f",batch.kubernetes.io/job-completion-index={node_rank}"
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        if not pods:
            return iter(())
        pod = max(pods, key=lambda p: p.metadata.creation_timestamp).metadata.name
        if follow:
            watch = kubernetes.watch.Watch()
            return watch.stream(self.core.read_namespaced_pod_log, pod, self.namespace, container=step, follow=True)
        return iter(self.core.read_namespaced_pod_log(pod, self.namespace, container=step).splitlines())

    def wait_for_job_status(
        self,
        name: str,
        status: Iterable[str] = ("Complete",),
        timeout: float = 3600,
        polling_interval: float = 5,
    ) -> TrainJobInfo:
        """Poll until the job's status is one of ``status``.

        Raises:
            TrainJobFailed: the job failed (and Failed was not among ``status``).
            WaitTimeout: ``timeout`` seconds passed.
        """
        wanted = set(status)
        deadline = time.monotonic() + timeout
        while True:
            job = self.get_job(name)
            if job.status in wanted:
                return job
            if job.status == "Failed":
                raise TrainJobFailed(f"TrainJob {name} failed: {job.reason}: {job.message}")
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"TrainJob {name} is {job.status}, not {'/'.join(sorted(wanted))}, after {timeout}s")
            time.sleep(polling_interval)

    def delete_job(self, name: str) -> None:
        """Delete the TrainJob; its JobSet, pods, config and volume go with it (owner references).

        Raises:
            TrainJobNotFound: no such TrainJob.
        """
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TRAINJOB_PLURAL, name, propagation_policy="Foreground"
            )
        except ApiException as err:
            if err.status == 404:
                raise TrainJobNotFound(f"no TrainJob {name!r} in namespace {self.namespace!r}") from None
            raise

    def get_job_events(self, name: str) -> list[JobEvent]:
        """Events about the TrainJob and the objects named after it (JobSet, Jobs, pods), oldest first."""
        events = self.core.list_namespaced_event(self.namespace).items
        mine = [
            event
            for event in events
            if event.involved_object.name == name or (event.involved_object.name or "").startswith(f"{name}-")
        ]

        def when(event) -> str | None:
            stamp = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
            return stamp.isoformat() if stamp else None

        return sorted(
            (
                JobEvent(
                    type=event.type or "",
                    reason=event.reason or "",
                    message=event.message or "",
                    object=f"{event.involved_object.kind}/{event.involved_object.name}",
                    time=when(event),
                )
                for event in mine
            ),
            key=lambda event: event.time or "",
        )


def _api_message(err: ApiException) -> str:
    try:
        return json.loads(err.body).get("message", err.reason)
    except (TypeError, ValueError):
        return str(err.reason)
