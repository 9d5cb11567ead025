"""Migration paths: other projects' APIs mapped onto kubetune (``kubetune.compat.kubeflow``)."""
