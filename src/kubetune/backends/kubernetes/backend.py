"""``KubernetesBackend``: run jobs as TrainJobs on a cluster with the official ``kubernetes`` client.

The backend submits a TrainJob (rendered by :func:`render_trainjob`) and reads everything back
from the cluster: the TrainJob status the controller maintains (conditions, per-step job counts,
training progress), the JobSet's pods, their logs and events. Runtimes are the cluster's
(Cluster)TrainingRuntimes, typed as the same :class:`~kubetune.runtimes.Runtime` as the
packaged catalog. It implements :class:`~kubetune.backends.base.RuntimeBackend`, so
``TrainerClient(backend="kubernetes")`` runs the same ``train()`` call as the local backend.

Tested in ``tests/kubernetes`` against a real HTTP server speaking the Kubernetes REST API
(``test_backend_api.py``), and end to end by the opt-in cluster suite.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

import kubernetes
from kubetune.backends.base import RuntimeBackend
from kubetune.backends.kubernetes.job_info import (
    event_from_kubernetes,
    is_about,
    job_from_trainjob,
    latest_pods,
)
from kubetune.backends.kubernetes.render_trainjob import (
    KubernetesJobOptions,
    function_config_map,
    generate_name,
    render_trainjob,
)
from kubetune.contracts.kubernetes import (
    CLUSTER_RUNTIME_PLURAL,
    COMPLETION_INDEX_LABEL,
    GROUP,
    REPLICATED_JOB_LABEL,
    RUNTIME_PLURAL,
    TRAINJOB_LABEL,
    TRAINJOB_PLURAL,
    VERSION,
    workspace_claim,
)
from kubetune.contracts.run_dir import SOURCE_KINDS
from kubetune.contracts.types import Event, Job, JobOutputs
from kubetune.controller.api import NODE
from kubetune.errors import ConfigError, JobExistsError, JobNotFoundError
from kubetune.runtimes import Runtime, apply_runtime, runtime_from_manifest, unknown_runtime
from kubetune.spec.job import JobSpec, require_sources


class KubernetesBackend(RuntimeBackend):
    """Run and observe kubetune jobs on a Kubernetes cluster.

    Args:
        namespace: namespace of the TrainJobs (default: the kubeconfig context's, else "default").
        options: cluster settings of every job (default runtime, image, Kueue queue, pod settings).
        context: kubeconfig context to use (default: the current one).
        config_file: kubeconfig path (default: ``$KUBECONFIG`` or ``~/.kube/config``; in-cluster
            config when running in a pod).
        api_client: a ready ``kubernetes.client.ApiClient`` (skips config loading).
        log_poll_s: how often following logs checks whether a pod has started.
    """

    def __init__(
        self,
        namespace: str | None = None,
        options: KubernetesJobOptions | None = None,
        context: str | None = None,
        config_file: str | None = None,
        api_client: kubernetes.client.ApiClient | None = None,
        log_poll_s: float = 2.0,
    ):
        if api_client is None:
            config_file = config_file or os.environ.get("KUBECONFIG")  # as set now, not when kubernetes was imported
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
        self.options = options or KubernetesJobOptions()
        self.api = api_client
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.log_poll_s = log_poll_s

    # runtimes
    def list_runtimes(self) -> list[Runtime]:
        """The cluster's runtimes of the configured kind, sorted by name (invalid ones are left out)."""
        if self.options.runtime_kind == "ClusterTrainingRuntime":
            items = self.custom.list_cluster_custom_object(GROUP, VERSION, CLUSTER_RUNTIME_PLURAL)["items"]
        else:
            items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, RUNTIME_PLURAL)["items"]
        runtimes = []
        for item in items:
            try:
                runtimes.append(runtime_from_manifest(item))
            except ConfigError:
                continue
        return sorted(runtimes, key=lambda runtime: runtime.name)

    def get_runtime(self, name: str) -> Runtime:
        """The runtime ``name`` on the cluster.

        Raises:
            ConfigError: it does not exist (naming the closest ones) or is invalid.
        """
        try:
            if self.options.runtime_kind == "ClusterTrainingRuntime":
                item = self.custom.get_cluster_custom_object(GROUP, VERSION, CLUSTER_RUNTIME_PLURAL, name)
            else:
                item = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, RUNTIME_PLURAL, name)
        except ApiException as err:
            if err.status == 404:
                raise unknown_runtime(name, [runtime.name for runtime in self.list_runtimes()]) from None
            raise
        return runtime_from_manifest(item)

    # submission
    def submit(self, spec: JobSpec) -> str:
        """Create a TrainJob for ``spec`` (and, for a custom trainer, the ConfigMap with its function).

        The runtime is read from the cluster and applied first, so an unknown runtime, a merged
        config that does not validate, or a builtin job with no model or dataset fails here,
        before anything is created.

        Raises:
            ConfigError: see above, or a local model/dataset path, a name too long, the cluster refusing the
                TrainJob. JobExistsError: a TrainJob of that name exists.
        """
        runtime_name = spec.runtime or self.options.default_runtime
        if runtime_name is None:
            raise ConfigError("runtime: a job on Kubernetes needs a runtime (see list_runtimes()) or default_runtime")
        spec = spec.model_copy(update={"runtime": runtime_name, "name": spec.name or generate_name()})
        runtime = self.get_runtime(runtime_name)
        resolved = apply_runtime(spec, runtime)
        defaults = runtime.spec.initializer
        fetched = [
            kind for kind in SOURCE_KINDS if defaults and (source := getattr(defaults, kind)) and source.storage_uri
        ]
        require_sources(resolved, runtime.name, fetched)
        manifest = render_trainjob(spec, resolved, self.options, self.namespace, runtime.spec.workspace.mount_path)
        name = manifest["metadata"]["name"]
        try:
            created = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TRAINJOB_PLURAL, manifest
            )
        except ApiException as err:
            if err.status == 409:
                raise JobExistsError(f"a TrainJob named {name!r} already exists in {self.namespace!r}") from None
            if err.status == 422:
                raise ConfigError(f"the cluster refused the TrainJob: {_api_message(err)}") from None
            raise
        if spec.function is not None:
            config_map = function_config_map(spec, name, self.namespace, created["metadata"]["uid"])
            try:
                self.core.create_namespaced_config_map(self.namespace, config_map)
            except ApiException:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, TRAINJOB_PLURAL, name)
                raise
        return name

    # reading
    def _trainjob(self, name: str) -> dict[str, Any]:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, TRAINJOB_PLURAL, name)
        except ApiException as err:
            if err.status == 404:
                raise JobNotFoundError(f"no TrainJob {name!r} in namespace {self.namespace!r}") from None
            raise

    def _pods(self, selector: str) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector)
        return self.api.sanitize_for_serialization(pods).get("items", [])

    def list_jobs(self) -> list[Job]:
        """TrainJobs of the namespace, oldest first."""
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, TRAINJOB_PLURAL)["items"]
        pods = self._pods(TRAINJOB_LABEL) if items else []
        jobs = [
            job_from_trainjob(
                item, [pod for pod in pods if pod["metadata"]["labels"].get(TRAINJOB_LABEL) == item["metadata"]["name"]]
            )
            for item in items
        ]
        return sorted(jobs, key=lambda job: job.created_at)

    def get_job(self, name: str) -> Job:
        """The TrainJob ``name``: status, steps (from its pods) and training progress. Raises JobNotFoundError."""
        return job_from_trainjob(self._trainjob(name), self._pods(f"{TRAINJOB_LABEL}={name}"))

    def get_job_logs(self, name: str, step: str = "node-0", follow: bool = False) -> Iterator[str]:
        """Log lines of one step's pod (``dataset-initializer``, ``model-initializer``, ``node-0``...).

        With ``follow``, waits for the pod to start and streams until its container exits (or,
        if it never starts, until the job ends).

        Raises:
            JobNotFoundError, ConfigError (a step the job does not have).
        """
        steps = [s.name for s in self.get_job(name).steps]
        if step not in steps:
            raise ConfigError(f"step: job {name!r} has no step {step!r} (steps: {', '.join(steps)})")
        return self._logs(name, step, follow)

    def _logs(self, name: str, step: str, follow: bool) -> Iterator[str]:
        container = NODE if step.startswith(f"{NODE}-") else step
        selector = f"{TRAINJOB_LABEL}={name},{REPLICATED_JOB_LABEL}={container}"
        if container == NODE:
            selector += f",{COMPLETION_INDEX_LABEL}={step.removeprefix(f'{NODE}-')}"
        while True:
            pod = latest_pods(self._pods(selector)).get(step)
            phase = (pod or {}).get("status", {}).get("phase", "Pending")
            if pod is not None and (phase != "Pending" or not follow):
                break
            if not follow or self.get_job(name).status.is_terminal:
                return
            time.sleep(self.log_poll_s)
        pod_name = pod["metadata"]["name"]
        if not follow:
            yield from self.core.read_namespaced_pod_log(pod_name, self.namespace, container=container).splitlines()
            return
        response = self.core.read_namespaced_pod_log(
            pod_name, self.namespace, container=container, follow=True, _preload_content=False
        )
        pending = b""
        try:
            for chunk in response.stream(4096):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
        finally:
            response.release_conn()
        if pending:
            yield pending.decode(errors="replace")

    def get_job_events(self, name: str) -> list[Event]:
        """Events about the TrainJob and the objects the controller made for it, oldest first."""
        self._trainjob(name)
        events = self.api.sanitize_for_serialization(self.core.list_namespaced_event(self.namespace))["items"]
        return sorted(
            (event_from_kubernetes(event, name) for event in events if is_about(event, name)),
            key=lambda event: event.time,
        )

    def get_job_return_values(self, name: str) -> dict[int, Any]:
        """Not available on a cluster: the values stay on the job's volume.

        Raises:
            ConfigError: always (after JobNotFoundError for an unknown job).
        """
        self._trainjob(name)
        raise ConfigError(
            "return values of a Kubernetes job stay on its volume (output/returns/); each node's log prints them: "
            f"get_job_logs({name!r}, step='node-0')"
        )

    # suspend and resume
    def _set_suspend(self, name: str, suspend: bool) -> None:
        try:
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TRAINJOB_PLURAL, name, {"spec": {"suspend": suspend}}
            )
        except ApiException as err:
            if err.status == 404:
                raise JobNotFoundError(f"no TrainJob {name!r} in namespace {self.namespace!r}") from None
            raise

    def suspend_job(self, name: str) -> None:
        """Set the TrainJob's ``spec.suspend``: the controller suspends its JobSet, whose pods get
        SIGTERM and checkpoint on the shared volume within their grace period.

        Raises:
            JobNotFoundError. ConfigError: the job has already ended.
        """
        job = self.get_job(name)
        if job.status.is_terminal:
            raise ConfigError(f"job {name!r} already ended ({job.status.value}); only an active job can be suspended")
        self._set_suspend(name, True)

    def resume_job(self, name: str) -> None:
        """Clear the TrainJob's ``spec.suspend``: the JobSet runs again and the trainer continues from
        the newest checkpoint on the shared volume.

        Raises:
            JobNotFoundError. ConfigError: the job has already ended.
        """
        job = self.get_job(name)
        if job.status.is_terminal:
            raise ConfigError(f"job {name!r} already ended ({job.status.value}); resubmit it to train again")
        self._set_suspend(name, False)

    # outputs and deletion
    def _workspace(self, name: str) -> dict | None:
        try:
            claim = self.core.read_namespaced_persistent_volume_claim(workspace_claim(name), self.namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return self.api.sanitize_for_serialization(claim)

    def get_job_outputs(self, name: str) -> JobOutputs:
        """The job's workspace volume (``PersistentVolumeClaim/<name>-workspace``) and its capacity.

        Raises:
            JobNotFoundError: no such TrainJob.
        """
        self._trainjob(name)
        claim = self._workspace(name)
        if claim is None:
            return JobOutputs([], None)
        size = (claim.get("status") or {}).get("capacity", {}).get("storage") or (
            claim.get("spec", {}).get("resources", {}).get("requests", {}).get("storage")
        )
        size_bytes = int(kubernetes.utils.parse_quantity(size)) if size else None
        return JobOutputs([f"PersistentVolumeClaim/{workspace_claim(name)}"], size_bytes)

    def set_aside_outputs(self, spec: JobSpec) -> str | None:
        """A volume cannot be renamed: refuse while the earlier job's workspace exists (a replacement
        would reuse it and resume from its checkpoints).

        Raises:
            ConfigError: the workspace ``<name>-workspace`` exists.
        """
        if spec.name is not None and self._workspace(spec.name) is not None:
            raise ConfigError(
                f"job {spec.name!r} keeps its outputs on PersistentVolumeClaim {workspace_claim(spec.name)}; a "
                f"replacement would resume from them: submit under another name, or remove them first with "
                f"`kubetune delete {spec.name} --purge`"
            )
        return None

    def delete_job(self, name: str, purge: bool = False) -> None:
        """Delete the TrainJob; its JobSet, pods and ConfigMaps go with it (owner references).

        The workspace volume (the trained model, checkpoints) is kept unless ``purge``.

        Raises:
            JobNotFoundError: no such TrainJob.
        """
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TRAINJOB_PLURAL, name, propagation_policy="Foreground"
            )
        except ApiException as err:
            if err.status == 404:
                raise JobNotFoundError(f"no TrainJob {name!r} in namespace {self.namespace!r}") from None
            raise
        if purge:
            try:
                self.core.delete_namespaced_persistent_volume_claim(workspace_claim(name), self.namespace)
            except ApiException as err:
                if err.status != 404:
                    raise


def _api_message(err: ApiException) -> str:
    try:
        return json.loads(err.body).get("message", err.reason)
    except (TypeError, ValueError):
        return str(err.reason)
