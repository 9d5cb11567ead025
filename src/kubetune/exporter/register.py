"""``output.register_model``: the trained model as a new version of a registered model in MLflow.

The version belongs to the job's MLflow run (``output/tracking.json``). Its source is where the
model was pushed (``output.push_to``); without a push the model folder (``merged/``, else
``adapter/``) is uploaded as the run's ``model`` artifacts and the version points there.
"""

from __future__ import annotations

import os

from kubetune.contracts.run_dir import RunDir
from kubetune.errors import ConfigError, OutputError
from kubetune.spec.job import JobSpec
from kubetune.tracking.session import read_tracking_file
from kubetune.tracking.trackers import MlflowTracker, set_mlflow_credentials

#: The model version tag naming the job.
JOB_TAG = "kubetune.job"


def model_source(layout: RunDir, spec: JobSpec) -> str | None:
    """Where the model is, for the registry: the push target; None when it must be uploaded to the run."""
    target = spec.trainer.output.push_to
    if target is None:
        return None
    folder = "merged" if layout.merged.is_dir() else "adapter"
    return f"{target.rstrip('/')}/{folder}" if target.startswith("s3://") else target


def register_model(layout: RunDir, spec: JobSpec, say=print):
    """Create a version of ``output.register_model`` for this job's run; returns the ModelVersion.

    Raises:
        ConfigError: the job has no MLflow run (tracking never started).
        OutputError: the registry refused the version.
    """
    name = spec.trainer.output.register_model
    config = spec.trainer.tracking.mlflow
    run = read_tracking_file(layout).get("mlflow")
    if run is None or config is None:
        raise ConfigError(
            f"output.register_model {name!r}: the job has no MLflow run ({layout.tracking_file} lacks one)"
        )
    for key, value in MlflowTracker.HTTP_ENV.items():
        os.environ.setdefault(key, value)
    set_mlflow_credentials(config)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.tracking_uri)
    try:
        source = model_source(layout, spec)
        if source is None:
            folder = layout.merged if layout.merged.is_dir() else layout.adapter
            if not folder.is_dir():
                raise OutputError(f"output.register_model {name!r}: the job exported no model (merged/ or adapter/)")
            client.log_artifacts(run["run_id"], str(folder), artifact_path="model")
            source = f"{client.get_run(run['run_id']).info.artifact_uri.rstrip('/')}/model"
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name)
        version = client.create_model_version(
            name, source=source, run_id=run["run_id"], tags={JOB_TAG: spec.name or layout.root.name}
        )
    except MlflowException as err:
        raise OutputError(f"output.register_model {name!r}: {err.message}") from None
    say(f"registered: model {name!r} version {version.version} <- {source}")
    return version
