"""The layering of docs/architecture.md holds: who may import whom, and what stays torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "kubetune"

ROOT = "kubetune (the package root)"

# layer -> kubetune modules it may import (prefix match on the dotted name after "kubetune.").
# No layer may import the package root (``import kubetune``, ``from kubetune import __version__``):
# it pulls in the whole public API; the version lives in ``contracts.version``.
ALLOWED = {
    "contracts": ("contracts",),
    "spec": ("errors", "contracts", "spec"),
    "planning": ("errors", "planning"),
    "trainer": (
        "errors",
        "contracts",
        "spec",
        "planning",
        "trainer",
        "initializers.package_files",
        "tracking",
        "exporter.preflight",
    ),
    "tracking": ("errors", "contracts", "spec", "tracking", "initializers.secrets"),
    "exporter": (
        "errors",
        "contracts",
        "spec",
        "exporter",
        "tracking",
        "initializers.secrets",
        "initializers.s3_provider",
    ),
    "initializers": ("errors", "contracts", "spec", "initializers"),
    "controller": ("errors", "contracts", "spec", "controller"),
    "runtimes": ("errors", "contracts", "spec", "planning", "runtimes", "controller.api"),
    "client": ("errors", "contracts", "spec", "client", "backends", "runtimes", "trainer.evaluation"),
    "compat": ("errors", "contracts", "spec", "client", "backends", "compat"),
    # The dashboard serves the SDK client: it never reaches into a backend (one code path for all).
    "ui": ("errors", "contracts", "spec", "client", "initializers.secrets", "cli.plan", "ui"),
    "backends": (
        "errors",
        "contracts",
        "spec",
        "backends",
        "controller",
        "exporter.preflight",
        "initializers",
        "planning",
        "runtimes",
        "trainer.preflight",
    ),
}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imported(node: ast.AST) -> set[str]:
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "kubetune":
        return {ROOT}
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kubetune."):
        return {node.module.removeprefix("kubetune.")}
    if isinstance(node, ast.Import):
        names = {ROOT for a in node.names if a.name == "kubetune"}
        return names | {a.name.removeprefix("kubetune.") for a in node.names if a.name.startswith("kubetune.")}
    return set()


def _kubetune_imports(source: str) -> set[str]:
    """Modules of kubetune that ``source`` imports at run time (``if TYPE_CHECKING:`` blocks excluded)."""
    names: set[str] = set()
    pending: list[ast.AST] = [ast.parse(source)]
    while pending:
        node = pending.pop()
        names |= _imported(node)
        pending.extend(child for child in ast.iter_child_nodes(node) if not _type_checking_only(child))
    return names


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_the_architecture_allows(layer):
    offending = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _kubetune_imports(path.read_text(encoding="utf-8")):
            if not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED[layer]):
                offending.append(f"{path.relative_to(PACKAGE)} imports kubetune.{name}")
    assert not offending, "\n".join(offending)


@pytest.mark.parametrize(
    "source",
    ["import kubetune", "from kubetune import __version__", "import kubetune.client", "from kubetune.client import X"],
)
def test_the_check_sees_imports_of_the_package_root_and_of_the_client(source):
    assert _kubetune_imports(source) & {ROOT, "client"}


def test_the_old_client_backends_cycle_is_forbidden():
    """backends return the shared types from contracts; importing the client from a backend is refused."""
    assert not any(ok == "client" or ok.startswith("client.") for ok in ALLOWED["backends"])
    assert not any(ok == "client" or ok.startswith("client.") for ok in ALLOWED["contracts"])


def test_contracts_import_nothing_heavy_and_no_other_layer():
    code = (
        "import sys, kubetune.contracts.types, kubetune.contracts.run_dir, kubetune.contracts.progress, "
        "kubetune.contracts.kubernetes, kubetune.contracts.version; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft', 'pydantic') "
        "or (m.startswith('kubetune.') and not m.startswith('kubetune.contracts'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validation_clients_and_controller_import_no_torch():
    code = (
        "import sys, kubetune.spec, kubetune.planning, kubetune.trainer.speed_plan, kubetune.client, "
        "kubetune.backends.local, kubetune.cli.main, "
        "kubetune.controller.reconcile, kubetune.runtimes, kubetune.compat.kubeflow, kubetune.ui.app; "
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
