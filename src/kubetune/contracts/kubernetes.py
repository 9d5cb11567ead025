"""Kubernetes names shared by the SDK backend, the controller and the trainer: the API, labels, limits.

The trainer reports its progress record to ``status.<PROGRESS_STATUS_FIELD>`` of the TrainJob
named by ``$TRAINJOB_NAME_ENV`` in ``$TRAINJOB_NAMESPACE_ENV`` (both set by the controller).
"""

GROUP = "kubetune.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
TRAINJOB_PLURAL = "trainjobs"
RUNTIME_PLURAL = "trainingruntimes"
CLUSTER_RUNTIME_PLURAL = "clustertrainingruntimes"

# Labels
TRAINJOB_LABEL = "kubetune.dev/trainjob-name"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
PODGROUP_LABEL = "scheduling.x-k8s.io/pod-group"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"

# Limits
DNS_LABEL_MAX = 63
MAX_NAME_LENGTH = 40  # "<name>-model-initializer-0-0" must stay a 63-character DNS label

# Progress reporting (trainer rank 0 -> TrainJob status)
PROGRESS_STATUS_FIELD = "trainingProgress"
PROGRESS_UPDATED_KEY = "updatedAt"
TRAINJOB_NAME_ENV = "KUBETUNE_TRAINJOB"
TRAINJOB_NAMESPACE_ENV = "KUBETUNE_NAMESPACE"


def workspace_claim(trainjob_name: str) -> str:
    """The name of a TrainJob's workspace PersistentVolumeClaim (its run directory).

    The claim has no owner reference: deleting the TrainJob keeps the trained model; the
    claim goes only when deleted on purpose (``kubetune delete NAME --purge``).
    """
    return f"{trainjob_name}-workspace"
