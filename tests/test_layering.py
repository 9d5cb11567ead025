"""The layering of docs/architecture.md holds: who may import whom, and what stays torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "kubetune"

# layer -> kubetune modules it may import (prefix match on the dotted name after "kubetune.")
ALLOWED = {
    "spec": ("errors", "spec"),
    "planning": ("errors", "planning"),
    "trainer": ("errors", "spec", "planning", "trainer", "initializers.package_files"),
    "initializers": ("errors", "spec", "initializers"),
    "controller": ("errors", "spec", "controller"),
    "runtimes": ("errors", "spec", "planning", "runtimes", "controller.api"),
    "client": ("errors", "spec", "client", "backends", "runtimes"),
    "backends": (
        "errors",
        "spec",
        "backends",
        "client.types",
        "controller",
        "initializers",
        "planning",
        "runtimes",
        "trainer.preflight",
    ),
}


def _kubetune_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kubetune."):
            names.add(node.module.removeprefix("kubetune."))
        elif isinstance(node, ast.Import):
            names.update(a.name.removeprefix("kubetune.") for a in node.names if a.name.startswith("kubetune."))
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_the_architecture_allows(layer):
    offending = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _kubetune_imports(path):
            if not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED[layer]):
                offending.append(f"{path.relative_to(PACKAGE)} imports kubetune.{name}")
    assert not offending, "\n".join(offending)


def test_validation_clients_and_controller_import_no_torch():
    code = (
        "import sys, kubetune.spec, kubetune.planning, kubetune.trainer.speed_plan, kubetune.client, "
        "kubetune.backends.local, kubetune.cli.main, "
        "kubetune.controller.reconcile, kubetune.runtimes; "
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
