"""The Kubeflow examples' data generator (examples/kubeflow/reviews.py) is importable as ``reviews``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "kubeflow"))
