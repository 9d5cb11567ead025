"""The kopf operator: wires the pure reconciler and status functions to a cluster.

Run it with ``python -m kubetune.controller`` (in-cluster, or with a kubeconfig). Handlers:

- TrainJob created / resumed after a restart / spec changed: read the runtime, the referenced
  Secrets' key names and the JobSet, call :func:`~kubetune.controller.reconcile.reconcile`,
  and server-side apply every object with the ``kubetune-controller`` field manager. Applying
  the same objects again is a no-op, and object names derive from the TrainJob's, so a
  controller restart never duplicates anything. Bad input: Failed condition, a Warning event,
  nothing created.
- JobSet events and a periodic timer: mirror JobSet state into the TrainJob status; past the
  deadline the JobSet is deleted (the PVC stays for inspection).
  ``status.trainingProgress`` is written by the trainer itself (its rank 0 patches the
  progress record with the job's own service account); the controller never overwrites it.

No finalizers: children carry owner references, so Kubernetes garbage collection deletes them;
the workspace PVC has none, so the trained model outlives the TrainJob.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

import kubernetes
from kubetune.contracts.kubernetes import (
    CLUSTER_RUNTIME_PLURAL,
    GROUP,
    RUNTIME_PLURAL,
    TRAINJOB_LABEL,
    TRAINJOB_PLURAL,
    VERSION,
)
from kubetune.controller.reconcile import (
    FIELD_MANAGER,
    InvalidTrainJob,
    parse_trainjob_spec,
    reconcile,
)
from kubetune.controller.status import condition_true, failed_status, is_finished, mirror_status

log = logging.getLogger(__name__)
JOBSET = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
STATUS_INTERVAL_S = 15.0


class Cluster:
    """The few API calls the operator makes, on one API client."""

    def __init__(self, api_client: kubernetes.client.ApiClient):
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.dynamic = DynamicClient(api_client)

    def runtime(self, namespace: str, kind: str, name: str) -> dict | None:
        """The referenced (Cluster)TrainingRuntime, or None when it does not exist."""
        try:
            if kind == "TrainingRuntime":
                return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, RUNTIME_PLURAL, name)
            return self.custom.get_cluster_custom_object(GROUP, VERSION, CLUSTER_RUNTIME_PLURAL, name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def secret_keys(self, namespace: str, names: set[str]) -> dict[str, list[str]]:
        """Key names (never values) of the Secrets that exist among ``names``."""
        found = {}
        for name in sorted(names):
            try:
                secret = self.core.read_namespaced_secret(name, namespace)
            except ApiException as err:
                if err.status == 404:
                    continue
                raise
            found[name] = sorted({*(secret.data or {}), *(secret.string_data or {})})
        return found

    def jobset(self, namespace: str, name: str) -> dict | None:
        """The JobSet called ``name``, or None."""
        try:
            return self.custom.get_namespaced_custom_object(*JOBSET[:2], namespace, JOBSET[2], name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def apply(self, obj: dict) -> dict:
        """Server-side apply ``obj`` as the controller's field manager."""
        resource = self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        result = resource.server_side_apply(
            body=obj,
            name=obj["metadata"]["name"],
            namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        return result.to_dict()

    def delete_jobset(self, namespace: str, name: str) -> None:
        """Delete the JobSet and (in the foreground) its Jobs and pods."""
        try:
            self.custom.delete_namespaced_custom_object(
                *JOBSET[:2], namespace, JOBSET[2], name, propagation_policy="Foreground"
            )
        except (ApiException, NotFoundError) as err:
            if getattr(err, "status", None) != 404:
                raise


CLUSTER: Cluster | None = None


def cluster() -> Cluster:
    """The process-wide :class:`Cluster` (in-cluster config, else the kubeconfig)."""
    global CLUSTER
    if CLUSTER is None:
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        CLUSTER = Cluster(kubernetes.client.ApiClient())
    return CLUSTER


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Keep kopf's bookkeeping in kubetune.dev annotations and post only warnings as events."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubetune.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kubetune.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 8
    cluster()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _referenced_secrets(body: dict) -> set[str]:
    initializer = (body.get("spec") or {}).get("initializer") or {}
    return {
        source["secretRef"]["name"]
        for source in initializer.values()
        if isinstance(source, dict) and source.get("secretRef", {}).get("name")
    }


@kopf.on.resume(GROUP, VERSION, TRAINJOB_PLURAL)
@kopf.on.create(GROUP, VERSION, TRAINJOB_PLURAL)
@kopf.on.update(GROUP, VERSION, TRAINJOB_PLURAL, field="spec")
def sync_trainjob(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Apply the TrainJob's desired objects (idempotent), or mark it Failed on bad input."""
    trainjob = dict(body)
    if is_finished(trainjob.get("status")):
        return
    meta = trainjob["metadata"]
    namespace = meta["namespace"]
    api = cluster()
    try:
        spec = parse_trainjob_spec(trainjob)
        runtime = api.runtime(namespace, spec.runtime_ref.kind, spec.runtime_ref.name)
        secrets = api.secret_keys(namespace, _referenced_secrets(trainjob))
        existing = api.jobset(namespace, meta["name"])
        desired = reconcile(trainjob, runtime, secrets, existing)
    except InvalidTrainJob as err:
        patch.status.update(failed_status(trainjob, err.reason, err.message, _now()))
        kopf.warn(body, reason=err.reason, message=err.message)
        return
    try:
        applied = [api.apply(obj) for obj in desired.objects()]
    except ApiException as err:
        message = f"applying the job's objects failed: {err.status} {err.reason}"
        kopf.warn(body, reason="ApplyFailed", message=message)
        raise kopf.TemporaryError(message, delay=30) from None
    except ResourceNotFoundError as err:
        # e.g. a runtime asks for coscheduling but scheduler-plugins' PodGroup CRD is not installed
        message = f"the cluster lacks an API this job needs: {err}"
        kopf.warn(body, reason="MissingAPI", message=message)
        raise kopf.TemporaryError(message, delay=60) from None
    patch.status.update(mirror_status(trainjob, applied[-1], _now()))


def refresh_status(trainjob: dict, patch: kopf.Patch) -> None:
    """Mirror the JobSet into the status; enforce the deadline."""
    if is_finished(trainjob.get("status")):
        return
    meta = trainjob["metadata"]
    api = cluster()
    jobset = api.jobset(meta["namespace"], meta["name"])
    if jobset is None and not condition_true(trainjob.get("status"), "Created"):
        return  # not created yet (or refused): sync_trainjob owns this state
    status = mirror_status(trainjob, jobset, _now())
    patch.status.update(status)
    failed = next((c for c in status.get("conditions", []) if c["type"] == "Failed" and c["status"] == "True"), None)
    if failed and failed["reason"] == "DeadlineExceeded" and jobset is not None:
        api.delete_jobset(meta["namespace"], meta["name"])
        kopf.warn(trainjob, reason="DeadlineExceeded", message=failed["message"])


@kopf.timer(GROUP, VERSION, TRAINJOB_PLURAL, interval=STATUS_INTERVAL_S, initial_delay=5)
def poll_status(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Periodic status refresh (the deadline passes without any JobSet event)."""
    refresh_status(dict(body), patch)


@kopf.on.event(*JOBSET, labels={TRAINJOB_LABEL: kopf.PRESENT})
def jobset_changed(body: kopf.Body, **_: Any) -> None:
    """A JobSet of ours changed: refresh its TrainJob's status right away."""
    meta = body["metadata"]
    api = cluster()
    try:
        trainjob = api.custom.get_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], TRAINJOB_PLURAL, meta["labels"][TRAINJOB_LABEL]
        )
    except ApiException as err:
        if err.status == 404:
            return
        raise
    patch = kopf.Patch()
    refresh_status(trainjob, patch)
    if patch.get("status"):
        api.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            meta["namespace"],
            TRAINJOB_PLURAL,
            trainjob["metadata"]["name"],
            {"status": patch["status"]},
        )
