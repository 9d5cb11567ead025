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
