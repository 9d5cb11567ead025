"""Experiment tracking (``trainer.report_to``): TensorBoard, MLflow and W&B fed by trainer rank 0.

:class:`~kubetune.tracking.session.TrackingSession` drives the trackers of
:mod:`kubetune.tracking.trackers` from background threads, on every backend (the trainer is the
same process locally and on Kubernetes).
"""

from kubetune.tracking.session import TrackingError, TrackingSession, read_tracking_file

__all__ = ["TrackingError", "TrackingSession", "read_tracking_file"]
