"""On Kubernetes, trainer rank 0 reports each progress record to its TrainJob's status.

The record (:class:`~kubetune.contracts.progress.Progress`, the one written to
``metrics.jsonl``) goes to ``status.trainingProgress`` by a JSON merge patch of the TrainJob's
``status`` subresource, with the pod's service-account token. The controller gives each job's
node pods a service account whose only permission is ``get``/``patch`` on that one TrainJob's
``status`` (``deploy/rbac``, :mod:`kubetune.controller.reconcile`).

Reporting is rate-limited (at most one request per ``min_interval_s``; the last step always
goes out) and never stops training: a failed request is announced once on stderr and the
interval doubles (up to five minutes) until a request succeeds again. It uses the standard
library only, so the trainer image needs no Kubernetes client.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path

from kubetune.contracts.kubernetes import (
    GROUP,
    PROGRESS_STATUS_FIELD,
    PROGRESS_UPDATED_KEY,
    TRAINJOB_NAME_ENV,
    TRAINJOB_NAMESPACE_ENV,
    TRAINJOB_PLURAL,
    VERSION,
)
from kubetune.contracts.progress import Progress

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MIN_INTERVAL_S = 10.0
MAX_INTERVAL_S = 300.0
REQUEST_TIMEOUT_S = 5.0


class TrainJobStatusReporter:
    """Sends progress records to ``status.trainingProgress`` of one TrainJob.

    Args:
        api_url: the API server (``https://10.0.0.1:443``).
        namespace: the TrainJob's namespace.
        name: the TrainJob's name.
        token_file: file holding the bearer token (the pod's service-account token, which the
            kubelet rotates, so it is read for each request), or None.
        ca_file: CA bundle of the API server (https), or None for the system's.
        min_interval_s: least time between two requests.
        clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        api_url: str,
        namespace: str,
        name: str,
        token_file: Path | None = None,
        ca_file: str | None = None,
        min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = (
            f"{api_url.rstrip('/')}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{TRAINJOB_PLURAL}/{name}/status"
        )
        self.token_file = token_file
        self.context = ssl.create_default_context(cafile=ca_file) if api_url.startswith("https://") else None
        self.min_interval_s = min_interval_s
        self.interval_s = min_interval_s
        self.clock = clock
        self.last_sent: float | None = None
        self.last_eval: float | None = None
        self.last_scores: dict[str, float] = {}
        self.last_training: Progress | None = None
        self.failing = False

    def __call__(self, progress: Progress) -> None:
        """Report ``progress`` unless a report went out less than the interval ago (the last step always goes)."""
        if progress.eval_loss is not None:
            self.last_eval = progress.eval_loss
        scores_only = progress.loss is None and bool(progress.evaluation)
        if progress.evaluation:
            self.last_scores = dict(progress.evaluation)
        if scores_only:
            # An evaluation record has no loss: report the last training record with the new scores.
            if self.last_training is None:
                return
            progress = self.last_training
        else:
            self.last_training = progress
        now = self.clock()
        final = progress.step >= progress.total_steps or scores_only
        if not final and self.last_sent is not None and now - self.last_sent < self.interval_s:
            return
        self.last_sent = now
        self._send(progress.with_eval_loss(self.last_eval, self.last_scores))

    def _send(self, progress: Progress) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"status": {PROGRESS_STATUS_FIELD: {**progress.to_json(), PROGRESS_UPDATED_KEY: stamp}}}
        headers = {"Content-Type": "application/merge-patch+json"}
        try:
            if self.token_file is not None:
                headers["Authorization"] = f"Bearer {self.token_file.read_text(encoding='utf-8').strip()}"
            request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="PATCH", headers=headers)
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S, context=self.context):
                pass
        except (OSError, http.client.HTTPException) as err:  # URLError and HTTPError are OSErrors
            if not self.failing:
                print(f"warning: progress not reported to the TrainJob status ({_reason(err)}); training goes on",
                      file=sys.stderr, flush=True)  # fmt: skip
            self.failing = True
            self.interval_s = min(self.interval_s * 2, MAX_INTERVAL_S)
            return
        self.failing = False
        self.interval_s = self.min_interval_s


def _reason(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    return str(getattr(err, "reason", err))


def reporter_from_environment(
    env: Mapping[str, str] = os.environ, account_dir: Path = SERVICE_ACCOUNT_DIR
) -> TrainJobStatusReporter | None:
    """The reporter of a pod the controller started (its env names the TrainJob), else None.

    The API server and credentials are the pod's in-cluster ones: ``KUBERNETES_SERVICE_HOST``
    / ``_PORT`` and the mounted service-account token and CA.
    """
    name, namespace = env.get(TRAINJOB_NAME_ENV), env.get(TRAINJOB_NAMESPACE_ENV)
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    if not (name and namespace and host):
        return None
    host = f"[{host}]" if ":" in host else host
    token_file, ca_file = account_dir / "token", account_dir / "ca.crt"
    return TrainJobStatusReporter(
        f"https://{host}:{port}",
        namespace,
        name,
        token_file if token_file.is_file() else None,
        str(ca_file) if ca_file.is_file() else None,
    )
