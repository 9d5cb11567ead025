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
    JobCase("empty-yaml", "{job}: the job file is empty (a job needs at least a trainer or a runtime)", raw=b""),
    JobCase(
        "comments-only-yaml",
        "{job}: the job file is empty (a job needs at least a trainer or a runtime)",
        raw=b"# a job file\n",
        command="train",
    ),
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


@dataclass
class DataCase:
    """A dataset (file content) or model refused by the trainer before its first step."""

    id: str
    message: str
    content: bytes = b""
    suffix: str = ".jsonl"
    dataset: dict = field(default_factory=dict)
    model: str = "tiny"
    training: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=dict)  # other trainer fields
    before_launch: bool = True  # `kubetune validate` and `kubetune train` refuse it before launch too


KTO_ROWS = [
    {"prompt": f"Repeat {w}.", "completion": f" {w} {w}", "label": index % 2 == 0}
    for index, w in enumerate(("apple", "river", "stone", "cloud"))
]


def chat(*roles: str) -> dict:
    return {"messages": [{"role": role, "content": f"a {role} turn"} for role in roles]}


DATA_CASES = [
    DataCase(
        "malformed-jsonl-line",
        "{data}:2: malformed JSON line: Expecting property name enclosed in double quotes",
        jsonl(GOOD_ROWS[:1]) + b"{not json\n",
    ),
    DataCase("jsonl-line-not-object", "{data}:1: expected a JSON object, got list", b"[1, 2]\n"),
    DataCase(
        "latin1-file",
        "{data}: not UTF-8 text (invalid continuation byte at byte 20)",
        '{"instruction": "caf\xe9 au lait", "output": "x"}\n'.encode("latin-1"),
    ),
    DataCase(
        "utf16-file",
        "{data}: not UTF-8 text (invalid start byte at byte 0)",
        '{"instruction": "a", "output": "b"}\n'.encode("utf-16"),
    ),
    DataCase("empty-file", "{data}: the dataset is empty", b""),
    DataCase("blank-lines-only", "{data}: the dataset is empty", b"\n\n  \n"),
    DataCase("json-not-array-of-objects", "{data}: expected a JSON array of objects", b"[1, 2, 3]", suffix=".json"),
    DataCase(
        "json-nested-too-deep",
        "{data}: malformed JSON: nested too deeply",
        b"[" * 100000 + b"]" * 100000,
        suffix=".json",
    ),
    DataCase(
        "unsupported-file-type",
        "{data}: unsupported dataset file type (use one of .jsonl, .json, .csv, .parquet, .txt)",
        b"x",
        suffix=".xlsx",
    ),
    DataCase(
        "missing-columns",
        "{data}:1: no column 'instruction', 'output' needed by format 'alpaca'; columns present: answer, "
        "question. Use dataset.column_map to rename.",
        jsonl([{"question": "q", "answer": "a"}]),
    ),
    DataCase(
        "misnamed-column-map",
        "{data}:1: no column 'instruction' (mapped from {{'instruction': 'prompt'}}) needed by format "
        "'alpaca'; columns present: output, question. Use dataset.column_map to rename.",
        jsonl([{"question": "q", "output": "a"}]),
        dataset={"column_map": {"instruction": "prompt"}},
    ),
    DataCase(
        "chat-assistant-first",
        "{data}:1: column 'messages': invalid role order: message 0 is 'assistant', expected 'user' (system?, then "
        "user/assistant alternating)",
        jsonl([chat("assistant", "user")]),
        dataset={"format": "messages"},
    ),
    DataCase(
        "chat-two-users",
        "{data}:1: column 'messages': invalid role order: message 2 is 'user', expected 'assistant' (system?, then "
        "user/assistant alternating)",
        jsonl([chat("system", "user", "user")]),
        dataset={"format": "messages"},
    ),
    DataCase(
        "chat-ends-with-user",
        "{data}:1: column 'messages': a conversation must end with an assistant message",
        jsonl([chat("user", "assistant", "user")]),
        dataset={"format": "messages"},
    ),
    DataCase(
        "chat-unknown-role",
        "{data}:1: column 'messages': message 1 has role 'bot'; roles are system, user and assistant",
        jsonl([chat("user", "bot")]),
        dataset={"format": "messages"},
    ),
    DataCase(
        "chat-not-a-list",
        "{data}:1: column 'messages' must be a non-empty list of messages (got text)",
        jsonl([{"messages": "hello"}]),
        dataset={"format": "messages"},
    ),
    DataCase(
        "chat-missing-content",
        "{data}:1: column 'messages': message 1 (assistant) has no content; it needs text",
        jsonl([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}]),
        dataset={"format": "messages"},
    ),
    DataCase(
        "chat-content-not-text",
        "{data}:2: column 'messages': message 0 (user) has content that is a list; it needs text",
        jsonl([chat("user", "assistant"), {"messages": [{"role": "user", "content": ["hi"]}]}]),
        dataset={"format": "messages"},
    ),
    DataCase(
        "chat-message-not-object",
        "{data}:1: column 'messages': message 0 is text, not an object with role and content",
        jsonl([{"messages": ["hello", "hi"]}]),
        dataset={"format": "messages"},
    ),
    DataCase(
        "chat-messages-null",
        "{data}:1: column 'messages' is null; format 'messages' needs a value there",
        jsonl([{"messages": None}]),
        dataset={"format": "messages"},
    ),
    DataCase(
        "field-is-a-number",
        "{data}:1: column 'instruction' is a number (5); format 'alpaca' needs text there",
        jsonl([{"instruction": 5, "input": [], "output": {"a": 1}}]),
    ),
    DataCase(
        "field-is-a-list",
        "{data}:2: column 'input' is a list; format 'alpaca' needs text there",
        jsonl([GOOD_ROWS[0], {"instruction": "x", "input": [], "output": "y"}]),
    ),
    DataCase(
        "field-is-an-object",
        "{data}:3: column 'output' is an object; format 'alpaca' needs text there",
        b"\n" + jsonl([GOOD_ROWS[0], {"instruction": "x", "output": {"a": 1}}]),  # a blank line counts
    ),
    DataCase(
        "field-is-a-boolean",
        "{data}:1: column 'prompt' is a boolean (true); format 'completion' needs text there",
        jsonl([{"prompt": True, "completion": "x"}]),
        dataset={"format": "completion"},
    ),
    DataCase(
        "field-is-null",
        "{data}:2: column 'output' is null; format 'alpaca' needs a value there",
        jsonl([GOOD_ROWS[0], {"instruction": "x", "output": None}]),
    ),
    DataCase(
        "text-is-a-number",
        "{data}:1: column 'text' is a number (3.5); format 'text' needs text there",
        jsonl([{"text": 3.5}]),
        dataset={"format": "text"},
    ),
    DataCase(
        "label-is-a-list",
        "{data}:2: column 'label' is a list; a class label is text or a whole number",
        jsonl([{"text": "good", "label": 1}, {"text": "bad", "label": [0]}]),
        dataset={"format": "classification"},
        trainer={"model": {"task": "sequence-classification"}},
    ),
    DataCase(
        "json-array-field-type",
        "{data}:7: column 'output' is a number (7); format 'alpaca' needs text there",
        b'[\n  {"instruction": "a", "output": "b"},\n  {\n    "instruction": "c",\n    "output": "d"\n  },\n'
        b'  {"instruction": "e", "output": 7}\n]\n',
        suffix=".json",
    ),
    DataCase(
        "csv-row-too-short",
        "{data}:3: this row has 2 fields, the header has 3 (instruction, input, output); quote fields that hold commas",
        b"instruction,input,output\nRepeat a.,,a a\nRepeat b.,b b\n",
        suffix=".csv",
    ),
    DataCase(
        "csv-row-too-long",
        "{data}:4: this row has 3 fields, the header has 2 (instruction, output); quote fields that hold commas",
        b'instruction,output\n"Say\nhi.",hi\nSay a, then b.,a b\n',  # a quoted line break: line 4 starts row 3
        suffix=".csv",
    ),
    DataCase(
        "csv-missing-column",
        "{data}:2: no column 'output' needed by format 'alpaca'; columns present: answer, instruction. Use "
        "dataset.column_map to rename.",
        b"instruction,answer\nRepeat a.,a a\n",
        suffix=".csv",
    ),
    DataCase(
        "messages-without-chat-template",
        "dataset.format is 'messages' but the model's tokenizer has no chat template; use format 'alpaca' or "
        "'completion', or a model with a chat template",
        jsonl([chat("user", "assistant")]),
        dataset={"format": "messages"},
        model="no-template",
    ),
    DataCase(
        "every-row-too-long",
        "{data}: no example has a target token left (all 2 rows were dropped; is training.max_seq_len=8 shorter "
        "than the prompts?)",
        jsonl(GOOD_ROWS[:2]),
        training={"max_seq_len": 8},
    ),
    DataCase(
        "unknown-architecture",
        "{model}: unknown model architecture 'no-such-architecture' (this transformers does not know it; a model "
        "that ships its own code needs model.trust_remote_code: true)",
        jsonl(GOOD_ROWS),
        model="unknown-arch",
    ),
    DataCase(
        "model-folder-without-config",
        "{model}: not a Hugging Face model folder (no config.json)",
        jsonl(GOOD_ROWS),
        model="empty",
    ),
    DataCase(
        "remote-model-uri",
        "trainer.model.path: 's3://bucket/model' is a remote URI; the trainer reads local paths only (fetch it "
        "with an initializer)",
        jsonl(GOOD_ROWS),
        model="s3://bucket/model",
    ),
    DataCase(
        "kto-label-not-bool",
        "{data}:2: column 'label' is text; format 'kto' needs true (desirable) or false",
        jsonl([*KTO_ROWS[:1], {**KTO_ROWS[1], "label": "no"}, *KTO_ROWS[2:]]),
        dataset={"format": "kto"},
        trainer={"objective": "kto"},
    ),
    DataCase(
        "kto-empty-completion",
        "{data}:3: 'completion' is an empty response",
        jsonl([*KTO_ROWS[:2], {**KTO_ROWS[2], "completion": " "}, *KTO_ROWS[3:]]),
        dataset={"format": "kto"},
        trainer={"objective": "kto"},
    ),
    DataCase(
        "kto-one-label-only",
        "{data}: every one of the 4 rows has label true; format 'kto' needs rows labelled false too (desirable and "
        "undesirable completions)",
        jsonl([{**row, "label": True} for row in KTO_ROWS]),
        dataset={"format": "kto"},
        trainer={"objective": "kto"},
        before_launch=False,  # the pre-launch check reads a sample of rows; the trainer checks the whole file
    ),
]


def _model_for(case: DataCase, tmp_path: Path, tiny: Path, no_template: Path) -> str:
    if case.model == "tiny":
        return str(tiny)
    if case.model == "no-template":
        return str(no_template)
    if case.model == "empty":
        (tmp_path / "empty-model").mkdir()
        return str(tmp_path / "empty-model")
    if case.model == "unknown-arch":
        folder = tmp_path / "strange-model"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
        return str(folder)
    return case.model


def _case_job_file(case: DataCase, tmp_path: Path, tiny_model_dir, no_template_model_dir):
    """Write the case's dataset and a job file training on it: ``(data, model, run dir, job file)``."""
    data = tmp_path / f"data{case.suffix}"
    data.write_bytes(case.content)
    model = _model_for(case, tmp_path, tiny_model_dir, no_template_model_dir)
    run = tmp_path / "run"
    job = merge(
        base_job(Path(model), data, run),
        {"trainer": {"dataset": case.dataset, "training": case.training, **case.trainer}},
    )
    job["trainer"]["model"]["path"] = model
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job), encoding="utf-8")
    return data, model, run, config


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda case: case.id)
def test_dataset_or_model_is_refused_by_the_trainer(
    case: DataCase, tmp_path, capsys, tiny_model_dir, no_template_model_dir
):
    from kubetune.trainer.__main__ import main

    data, model, run, config = _case_job_file(case, tmp_path, tiny_model_dir, no_template_model_dir)
    code = main(["--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    expected = "error: " + case.message.format(data=data, model=model)
    assert lines[0] == expected
    assert not run.exists()


@pytest.mark.parametrize("case", [case for case in DATA_CASES if case.before_launch], ids=lambda case: case.id)
def test_dataset_or_model_is_refused_before_launch_by_validate_and_train(
    case: DataCase, tmp_path, isolated_kubetune_home, tiny_model_dir, no_template_model_dir
):
    """`kubetune validate` and `kubetune train` run the same pre-launch checks: the same one line, exit 2,
    no job recorded, no run directory made. (The CLI runs in this process: the heavy imports are paid once.)"""
    from typer.testing import CliRunner

    from kubetune.cli.main import app

    data, model, run, config = _case_job_file(case, tmp_path, tiny_model_dir, no_template_model_dir)
    for command in ("validate", "train"):
        result = CliRunner().invoke(
            app, [command, "-f", str(config), "--home", str(isolated_kubetune_home)], env={"COLUMNS": "1000"}
        )
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.strip().splitlines() == ["error: " + case.message.format(data=data, model=model)], command
        assert not run.exists()
        assert LocalBackend(isolated_kubetune_home).list_jobs() == []
