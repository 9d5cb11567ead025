"""Checks of a job's outputs before training: the push target and, with ``strict_tracking``, the trackers.

A push target without credentials, or one that already holds files, would only fail after hours
of training; these checks run when the job is submitted (local backend, ``kubetune validate``)
and again in trainer rank 0 before the model loads (every backend).
"""

from __future__ import annotations

from kubetune.contracts.run_dir import RunDir
from kubetune.errors import KubetuneError
from kubetune.exporter.manifest import PushRecord
from kubetune.spec.trainer import LLMConfig


def check_push_target(config: LLMConfig, layout: RunDir | None = None) -> None:
    """The push target can be written: credentials, reachability, an empty prefix or repository (files this
    run's earlier push put there, recorded in ``layout``'s ``push.json``, do not count).

    Raises:
        ConfigError: naming ``output.push_to`` and what is wrong.
    """
    push = config.output
    if push.push_to is None:
        return
    own = PushRecord(layout, push.push_to).keys() if layout is not None else set()
    if push.push_to.startswith("s3://"):
        from kubetune.exporter.s3_push import check_s3_target

        check_s3_target(push, own)
    else:
        from kubetune.exporter.hf_push import check_hub_target

        check_hub_target(push, own)


def check_strict_trackers(config: LLMConfig) -> None:
    """With ``strict_tracking``, the MLflow server answers and accepts the credentials.

    Raises:
        ConfigError: the server cannot be reached or refuses the request.
    """
    mlflow = config.tracking.mlflow
    if not config.strict_tracking or mlflow is None or "mlflow" not in (config.report_to or []):
        return
    from kubetune.errors import ConfigError
    from kubetune.initializers.secrets import scrub
    from kubetune.tracking.trackers import MlflowTracker

    try:
        MlflowTracker(mlflow).connect().search_experiments(max_results=1)
    except KubetuneError:
        raise
    except Exception as err:
        message = scrub(str(err)).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"tracking.mlflow.tracking_uri {mlflow.tracking_uri}: unreachable with strict_tracking ({message})"
        ) from None


def output_problems(config: LLMConfig) -> list[KubetuneError]:
    """Every problem of the push target and the strict trackers (empty: all good)."""
    problems: list[KubetuneError] = []
    for check in (check_push_target, check_strict_trackers):
        try:
            check(config)
        except KubetuneError as err:
            problems.append(err)
    return problems
