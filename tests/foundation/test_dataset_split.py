"""Dataset split expressions: parsed at the edge, applied to files by split name and to rows by slice."""

from __future__ import annotations

import json
from pathlib import Path, PurePath

import pytest

from kubetune.client import BuiltinTrainer, TrainerClient
from kubetune.errors import ConfigError, DataError
from kubetune.spec import DatasetConfig, JobSpec, LLMConfig
from kubetune.spec.dataset_split import DatasetSplit, file_split
from kubetune.trainer.data.readers import read_rows

ROWS = list(range(200))


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ("train", ROWS),
        ("train[:3000]", ROWS),
        ("train[:30]", ROWS[:30]),
        ("train[10%:]", ROWS[20:]),
        ("train[10:20%]", ROWS[10:40]),
        ("test[-5:]", ROWS[-5:]),
        ("train[:-10%]", ROWS[:-20]),
    ],
)
def test_a_slice_selects_rows_as_datasets_does(expression, selected):
    assert DatasetSplit.parse(expression).select(ROWS) == selected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("train+test", "combining splits with '+' is not supported"),
        ("train[:10%](pct1_dropremainder)", "is not a split expression"),
        ("train[1]", "is not a split expression"),
        ("train[:150%]", "between -100% and 100%"),
    ],
)
def test_an_unsupported_expression_is_refused_in_one_line(expression, message):
    with pytest.raises(ConfigError) as info:
        TrainerClient("local").train(trainer=BuiltinTrainer(config={"dataset": {"split": expression}}))
    assert message in str(info.value) and "dataset.split" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("train.jsonl", "train"),
        ("data/train-00000-of-00001.parquet", "train"),
        ("test.csv", "test"),
        ("validation/part-1.jsonl", "validation"),
        ("reviews.jsonl", None),
        ("trainee.jsonl", None),
    ],
)
def test_files_belong_to_the_split_their_name_or_folder_names(path, split):
    assert file_split(PurePath(path)) == split


def test_a_split_in_the_dataset_uri_is_the_trainers_split():
    spec = JobSpec.model_validate({"initializer": {"dataset": "hf://org/yelp?split=train[:3000]"}})
    assert spec.initializer.dataset.storage_uri == "hf://org/yelp"
    assert spec.trainer.dataset.split == "train[:3000]"
    assert DatasetConfig(path="hf://org/yelp?split=test").model_dump(exclude_unset=True) == {
        "path": "hf://org/yelp",
        "split": "test",
    }


def test_a_uri_split_that_contradicts_the_config_or_another_query_is_refused():
    with pytest.raises(ValueError, match=r"says split 'train' but trainer\.dataset\.split is 'test'"):
        JobSpec.model_validate(
            {"initializer": {"dataset": "hf://org/yelp?split=train"}, "trainer": {"dataset": {"split": "test"}}}
        )
    with pytest.raises(ValueError, match="the only query parameter a dataset URI takes is 'split'"):
        JobSpec.model_validate({"initializer": {"dataset": "hf://org/yelp?revision=main"}})


def _write(folder: Path, name: str, count: int) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": f"{name} {i}"}) + "\n" for i in range(count)), encoding="utf-8")


def test_the_split_reads_its_files_only(tmp_path):
    _write(tmp_path, "train-00000-of-00002.jsonl", 3)
    _write(tmp_path, "train-00001-of-00002.jsonl", 2)
    _write(tmp_path, "test.jsonl", 4)
    assert len(read_rows(tmp_path, split="train")) == 5
    assert len(read_rows(tmp_path, split="test")) == 4
    assert len(read_rows(tmp_path)) == 9
    with pytest.raises(DataError, match=r"no file of split 'validation' \(files name the splits: test, train\)"):
        read_rows(tmp_path, split="validation")


def test_a_folder_of_unnamed_files_is_the_train_split(tmp_path):
    _write(tmp_path, "reviews.jsonl", 3)
    assert len(read_rows(tmp_path, split="train")) == 3
    with pytest.raises(DataError, match="no file is named for split 'test'"):
        read_rows(tmp_path, split="test")


def test_the_trainer_trains_on_the_selected_rows(tmp_path, smollm2_dir):
    from transformers import AutoTokenizer

    from kubetune.trainer.data.pipeline import prepare_data

    _write(tmp_path, "train.jsonl", 40)
    _write(tmp_path, "test.jsonl", 10)
    config = LLMConfig(dataset={"format": "text", "split": "train[25%:75%]"}).dataset
    data = prepare_data(config, tmp_path, AutoTokenizer.from_pretrained(smollm2_dir), 64, seed=0)
    assert data.rows_read == 20
    with pytest.raises(DataError, match=r"dataset\.split 'train\[90:\]' selects no row"):
        prepare_data(LLMConfig(dataset={"format": "text", "split": "train[90:]"}).dataset, tmp_path, None, 64, 0)
