"""The bad-input corpus: every case is refused before any training step, with one exact line, a non-zero
exit and nothing written to the outputs. Each case goes through the surface a user would hit it on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from kubetune.backends.local import LocalBackend

GOOD_ROWS = [{"instruction": f"Repeat {w}.", "output": f"{w} {w}"} for w in ("apple", "river", "stone", "cloud")]


def jsonl(rows: list) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def base_job(model: Path, data: Path, run: Path) -> dict:
    return {
        "name": "bad",
        "output_dir": str(run),
        "trainer": {
            "model": {"path": str(model)},
            "dataset": {"path": str(data), "format": "alpaca"},
            "method": "lora",
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 2, "batch_size": 2, "max_seq_len": 64},
        },
    }


def merge(job: dict, patch: dict) -> dict:
    out = dict(job)
    for key, value in patch.items():
        out[key] = (
            merge(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


@dataclass
class JobCase:
    """A job file (YAML from ``patch`` merged over a good job, or ``raw`` text/bytes) refused by the CLI."""

    id: str
    message: str
    patch: dict = field(default_factory=dict)
    raw: bytes | None = None
    command: str = "validate"


JOB_CASES = [
    JobCase("duplicate-key", "{job}: duplicate key 'name' at line 2", raw=b"name: a\nname: b\n"),
    JobCase(
        "duplicate-nested-key", "{job}: duplicate key 'r' at line 4", raw=b"trainer:\n  lora:\n    r: 4\n    r: 8\n"
    ),
    JobCase("unknown-top-field", "invalid job file {job}: nmae: unknown field", patch={"nmae": "x"}),
    JobCase(
        "unknown-nested-field",
        "invalid job file {job}: trainer.training.learnin_rate: unknown field",
        patch={"trainer": {"training": {"learnin_rate": 0.1}}},
    ),
    JobCase(
        "lr-zero",
        "invalid job file {job}: trainer.training.learning_rate: Input should be greater than 0 (got 0)",
        patch={"trainer": {"training": {"learning_rate": 0}}},
    ),
    JobCase(
        "lr-negative",
        "invalid job file {job}: trainer.training.learning_rate: Input should be greater than 0 (got -0.001)",
        patch={"trainer": {"training": {"learning_rate": -1e-3}}},
    ),
    JobCase(
        "lora-rank-zero",
        "invalid job file {job}: trainer.lora.r: Input should be greater than or equal to 1 (got 0)",
        patch={"trainer": {"lora": {"r": 0}}},
    ),
    JobCase(
        "batch-zero",
        "invalid job file {job}: trainer.training.batch_size: Input should be greater than or equal to 1 (got 0)",
        patch={"trainer": {"training": {"batch_size": 0}}},
    ),
    JobCase(
        "max-seq-len-tiny",
        "invalid job file {job}: trainer.training.max_seq_len: Input should be greater than or equal to 8 (got 2)",
        patch={"trainer": {"training": {"max_seq_len": 2}}},
    ),
    JobCase(
        "num-nodes-zero",
        "invalid job file {job}: num_nodes: Input should be greater than or equal to 1 (got 0)",
        patch={"num_nodes": 0},
    ),
    JobCase(
        "max-restarts-negative",
        "invalid job file {job}: max_restarts: Input should be greater than or equal to 0 (got -1)",
        patch={"max_restarts": -1},
    ),
    JobCase(
        "lr-as-text",
        "invalid job file {job}: trainer.training.learning_rate: Input should be a valid number, unable to parse "
        "string as a number (got 'fast')",
        patch={"trainer": {"training": {"learning_rate": "fast"}}},
    ),
    JobCase(
        "bad-job-name",
        "invalid job file {job}: name: Value error, must be a lowercase DNS label: a-z, 0-9 and '-', at most 63 "
        "characters (got 'My_Job')",
        patch={"name": "My_Job"},
    ),
    JobCase(
        "unknown-method",
        "invalid job file {job}: trainer.method: Input should be 'full', 'lora', 'qlora', 'dora', 'prefix', "
        "'prompt' or 'peft' (got 'loraa')",
        patch={"trainer": {"method": "loraa"}},
    ),
    JobCase(
        "not-yaml",
        "{job}: not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'",
        raw=b"trainer: {model: [unclosed\n",
    ),
    JobCase(
        "yaml-list",
        "invalid job file {job}: <root>: Input should be a valid dictionary or instance of JobSpec",
        raw=b"- a\n- b\n",
    ),
    JobCase("yaml-unhashable-key", "{job}: a mapping key at line 1 is not a plain value", raw=b"? [a, b]\n: 1\n"),
    JobCase(
        "yaml-latin1",
        "{job}: not valid YAML: not UTF-8 text (invalid continuation byte at byte 9)",
        raw="name: caf\xe9\n".encode("latin-1"),
    ),
    JobCase(
        "yaml-too-deep", "{job}: not valid YAML: nested too deeply", raw=b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n"
    ),
    JobCase(
        "credentials-in-uri",
        "invalid job file {job}: initializer.model.storage_uri: Value error, must not contain credentials; "
        "use a secret reference (token, s3.*) (got 's3://***@bucket/model')",
        patch={"initializer": {"model": "s3://AKIDEXAMPLE:secretvalue@bucket/model"}},
    ),
    JobCase(
        "unknown-scheme",
        "initializer.model.storage_uri: gopher://host/model: unknown storage scheme 'gopher' (known: file, hf, pkg, "
        "s3; custom providers register with register_provider() or the 'kubetune.providers' entry point group)",
        patch={"initializer": {"model": "gopher://host/model"}},
        command="train",
    ),
    JobCase(
        "missing-local-source",
        "initializer.dataset.storage_uri: file:///no/such/dataset: no such file or directory",
        patch={"initializer": {"dataset": "file:///no/such/dataset"}},
        command="train",
    ),
]


@pytest.mark.parametrize("case", JOB_CASES, ids=lambda case: case.id)
def test_job_file_is_refused_by_the_cli(case: JobCase, tmp_path, isolated_kubetune_home):
    run = tmp_path / "run"
    job = tmp_path / "job.yaml"
    if case.raw is not None:
        job.write_bytes(case.raw)
    else:
        data = tmp_path / "data.jsonl"
        data.write_bytes(jsonl(GOOD_ROWS))
        job.write_text(yaml.safe_dump(merge(base_job(tmp_path / "model", data, run), case.patch)), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", case.command, "-f", str(job)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBETUNE_HOME": str(isolated_kubetune_home), "COLUMNS": "1000"},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    expected = "error: " + case.message.format(job=job)
    assert lines[0] == expected
    assert not run.exists()
    assert LocalBackend(isolated_kubetune_home).list_jobs() == []
