"""The Kubernetes control plane: TrainJob API types, pure reconciliation, status mirroring, operator.

``api`` holds the typed CRD specs, ``reconcile`` turns a TrainJob and its runtime into the
desired objects (a pure function), ``status`` mirrors JobSet state into TrainJob conditions
(pure too) and ``operator`` wires both to the cluster with kopf.
"""
