"""Fixtures for the bad-input corpus: a tiny real model, a copy without a chat template, a moto S3 server."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.faults.jobs import tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_dir):
    """A 2-layer Llama with SmolLM2's real tokenizer (random weights)."""
    return tiny_model(smollm2_dir, tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def no_template_model_dir(tmp_path_factory, tiny_model_dir):
    """The tiny model whose tokenizer has no chat template."""
    target = tmp_path_factory.mktemp("no-template") / "model"
    shutil.copytree(tiny_model_dir, target)
    (target / "chat_template.jinja").unlink(missing_ok=True)
    config_path = target / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    return target


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server (server mode, real HTTP) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
