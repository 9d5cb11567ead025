"""Property-based tests: the config and dataset parsers accept or refuse any input, never crash.

"Refuse" means a KubetuneError (one line for the user); anything else escaping is a bug.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetune.errors import KubetuneError
from kubetune.spec.base import read_yaml, validate_config
from kubetune.spec.job import JobSpec
from kubetune.spec.trainer import DatasetConfig
from kubetune.trainer.data.formats import _normalise_messages, map_columns
from kubetune.trainer.data.readers import SUFFIXES, read_rows

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
FIELDS = [
    "name",
    "trainer",
    "model",
    "dataset",
    "training",
    "lora",
    "learning_rate",
    "r",
    "batch_size",
    "path",
    "format",
    "initializer",
    "num_nodes",
    "max_restarts",
    "env",
    "output_dir",
    "storage_uri",
    "method",
]
job_like = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5),
    max_leaves=25,
)  # fmt: skip


def _refused_or_ok(call) -> None:
    try:
        call()
    except KubetuneError as err:
        assert str(err) and "\n" not in str(err)


@SETTINGS
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_read_yaml_never_crashes(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "job.yaml"
        path.write_bytes(content)
        _refused_or_ok(lambda: read_yaml(path))


yaml_fragments = st.lists(
    st.sampled_from(["a:", " b", ": 1", "\n", "  ", "- ", "[", "]", "{", "}", "?", "&x", "*x", "!!python/object", "'",
                     '"', "#", "---", "\t", ",", "|", ">"]),
    max_size=30,
).map("".join)  # fmt: skip


@SETTINGS
@given(yaml_fragments)
def test_read_yaml_never_crashes_on_yaml_shaped_text(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "job.yaml"
        path.write_text(text, encoding="utf-8")
        _refused_or_ok(lambda: read_yaml(path))


@SETTINGS
@given(job_like)
def test_job_spec_validation_never_crashes(data):
    _refused_or_ok(lambda: validate_config(JobSpec, data, source="job"))


@SETTINGS
@given(st.sampled_from(SUFFIXES), st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_dataset_readers_never_crash(suffix, content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content)
        _refused_or_ok(lambda: read_rows(path))


@SETTINGS
@given(st.lists(json_values, max_size=5))
def test_jsonl_with_any_json_values_never_crashes(values):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.jsonl"
        path.write_text("".join(json.dumps(v) + "\n" for v in values), encoding="utf-8")
        _refused_or_ok(lambda: read_rows(path))


rows = st.lists(st.dictionaries(st.sampled_from(["instruction", "output", "input", "prompt", "completion", "text",
                                                 "messages", "label", "q"]), json_values, max_size=5),
                min_size=1, max_size=4)  # fmt: skip


@SETTINGS
@given(rows, st.sampled_from(["alpaca", "completion", "messages", "text"]),
       st.dictionaries(st.sampled_from(["instruction", "output", "text"]), st.sampled_from(["q", "text", "x"]),
                       max_size=2))  # fmt: skip
def test_column_mapping_never_crashes(data, fmt, column_map):
    config = DatasetConfig(format=fmt, column_map=column_map)
    _refused_or_ok(lambda: map_columns(data, config, [f"data.jsonl:{i + 1}" for i in range(len(data))]))


@SETTINGS
@given(json_values)
def test_message_checks_never_crash(messages):
    _refused_or_ok(lambda: _normalise_messages(messages, "data.jsonl:1"))
