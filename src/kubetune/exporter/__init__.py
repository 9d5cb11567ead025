"""The exporter: after training, push the results (``output.push_to``) and register the model
(``output.register_model``).

It runs as its own step after the trainer, ``python -m kubetune.exporter --config ... --run-dir ...``:
the local supervisor's ``exporter`` step, the ``exporter`` job of the JobSet on Kubernetes. Its
target is checked before training starts (:func:`~kubetune.exporter.preflight.output_problems`).
"""
