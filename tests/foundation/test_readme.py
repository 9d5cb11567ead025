"""README's SDK snippet runs as written on a machine with no model hub: offline assets, no timeout to beat."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_sdk_snippet_runs_as_written(tmp_path: Path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (snippet,) = [
        block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "TrainerClient()" in block
    ]
    home = tmp_path / "home"
    env = {**os.environ, "KUBETUNE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    merged = Path(result.stdout.strip().splitlines()[-1])
    assert merged.parent.parent.parent == home / "runs"
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()
