"""A bad study is refused before its first trial, with one line naming the field; and the local
backend never runs more trials at once than the machine has room for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from kubetune.backends.local import LocalBackend
from kubetune.cli.main import app
from kubetune.client import OptimizerClient
from kubetune.client.study_spec import StudySpec, check_study, load_study_file
from kubetune.errors import ConfigError
from kubetune.spec.job import JobSpec


def base_job(**training) -> dict:
    return {
        "trainer": {
            "model": {"path": "/models/smollm2"},
            "dataset": {"path": "/data/train.jsonl", "format": "completion", "eval_fraction": 0.2},
            "lora": {"r": 8},
            "training": {"max_steps": 4, **training},
        }
    }


def evaluated_job() -> dict:
    """A job whose ``evaluation:`` section reports exact_match only."""
    job = base_job()
    job["trainer"]["evaluation"] = {"file": "/data/eval.jsonl", "metrics": ["exact_match"]}
    return job


def study(search_space: dict, **fields) -> StudySpec:
    return StudySpec.model_validate(
        {"name": "s", "job": fields.pop("job", base_job()), "search_space": search_space, **fields}
    )


@pytest.mark.parametrize(
    ("space", "fields", "message"),
    [
        (
            {"training.learnin_rate": "loguniform(1e-5, 1e-3)"},
            {},
            "search_space.training.learnin_rate: trainer.training has no field 'learnin_rate'",
        ),
        ({"optimizer.lr": "uniform(0, 1)"}, {}, "search_space.optimizer.lr: trainer has no field 'optimizer'"),
        ({"training": "int(1, 3)"}, {}, "search_space.training: trainer.training is a section"),
        (
            {"training.learning_rate": "loguniform(1e-3, 1e-5)"},
            {},
            "search_space.training.learning_rate: low 0.001 is greater than high 1e-05",
        ),
        ({"training.epochs": "int(3, 1)"}, {}, "search_space.training.epochs: low 3 is greater than high 1"),
        (
            {"training.learning_rate": "choice(['fast', 'slow'])"},
            {},
            "search_space.training.learning_rate: choice(['fast', 'slow']) gives 'fast', which "
            "trainer.training.learning_rate does not take",
        ),
        (
            {"training.batch_size": "uniform(1, 8)"},
            {},
            "search_space.training.batch_size: uniform(1, 8) gives 1.0, which trainer.training.batch_size "
            "does not take",
        ),
        (
            {"training.learning_rate": "uniform(0, 1e-3)"},
            {},
            "search_space.training.learning_rate: uniform(0, 0.001) gives 0.0, which "
            "trainer.training.learning_rate does not take: Input should be greater than 0",
        ),
        (
            {"training.learning_rate": "loguniform(0, 1e-3)"},
            {},
            "search_space.training.learning_rate: loguniform needs low > 0",
        ),
        ({"lora.r": "normal(8, 2)"}, {}, "search_space.lora.r: 'normal(8, 2)' is not a distribution"),
        ({"lora.r": "choice([])"}, {}, "search_space.lora.r: choice() needs at least one value"),
        (
            {"training.learning_rate": "loguniform(1e-5, 1e-3)"},
            {"objective": {"metric": "accuracy"}},
            "objective.metric: 'accuracy' is not reported by this job's trainer",
        ),
        (
            {"training.learning_rate": "loguniform(1e-5, 1e-3)"},
            {"job": {"trainer": {"dataset": {"path": "/d.jsonl"}}}},
            "objective.metric: eval_loss is reported only with an eval split",
        ),
        (
            {"training.learning_rate": "loguniform(1e-5, 1e-3)"},
            {"pruner": {"type": "median"}},
            "pruner: pruning on eval_loss needs intermediate evaluations; set the job's trainer.training.eval_every",
        ),
        (
            {"training.learning_rate": "loguniform(1e-5, 1e-3)"},
            {"objective": {"metric": "rouge_l"}, "job": evaluated_job()},
            "objective.metric: 'rouge_l' is not reported by this job's trainer (it reports loss, eval_loss",
        ),
        (
            {"training.learning_rate": "loguniform(1e-5, 1e-3)"},
            {
                "objective": {"metric": "exact_match", "direction": "maximize"},
                "pruner": {"type": "median"},
                "job": evaluated_job(),
            },
            "pruner: pruning on exact_match needs intermediate evaluations; set the job's "
            "trainer.evaluation.every_n_steps",
        ),
        (
            {"training.learning_rate": "loguniform(1e-5, 1e-3)"},
            {"objective": {"function": "no_such_module:score"}},
            "objective.function: cannot import 'no_such_module:score'",
        ),
        (
            {"training.learning_rate": "loguniform(1e-5, 1e-3)"},
            {"sampler": {"type": "grid"}},
            "search_space.training.learning_rate: the grid sampler needs choice() or int()",
        ),
        (
            {"lora.r": "choice([4, 8])"},
            {"name": "a-study-name-long-enough-to-overflow-trials", "n_trials": 20},
            "name: 'a-study-name-long-enough-to-overflow-trials' is too long",
        ),
    ],
)
def test_bad_study_is_refused_with_one_line_naming_the_field(space, fields, message):
    with pytest.raises(ConfigError) as err:
        check_study(study(space, **fields))
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_a_good_space_over_nested_and_optional_sections_passes():
    checked = check_study(
        study(
            {
                "training.learning_rate": "loguniform(1e-5, 1e-3)",
                "training.epochs": "int(1, 3)",
                "lora.r": "choice([8, 16, 32])",
                "lora.dropout": {"type": "uniform", "low": 0.0, "high": 0.1},
                "training.lr_scheduler": "choice(['cosine', 'constant'])",
                "lora.target_modules": "choice([['q_proj'], ['q_proj', 'v_proj'], 'all-linear'])",
            },
            job={"trainer": {**base_job()["trainer"], "lora": None}},
        )
    )
    assert set(checked.space) == {
        "training.learning_rate",
        "training.epochs",
        "lora.r",
        "lora.dropout",
        "training.lr_scheduler",
        "lora.target_modules",
    }


def test_a_metric_of_the_evaluation_section_is_accepted():
    spec = study(
        {"training.learning_rate": "loguniform(1e-5, 1e-3)"},
        objective={"metric": "exact_match", "direction": "maximize"},
        job=evaluated_job(),
    )
    assert check_study(spec).spec.objective.metric == "exact_match"


def test_cli_tune_refuses_a_bad_study_before_any_job(tmp_path: Path):
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(base_job()))
    (tmp_path / "study.yaml").write_text(
        yaml.safe_dump({"name": "s", "job": "job.yaml", "search_space": {"training.lr": "loguniform(1e-5, 1e-3)"}})
    )
    assert load_study_file(tmp_path / "study.yaml").job.trainer.model.path == "/models/smollm2"
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["tune", "-f", str(tmp_path / "study.yaml"), "--home", str(home)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: search_space.training.lr: trainer.training has no field 'lr'")
    assert LocalBackend(home).list_jobs() == []
    assert OptimizerClient(home=home).list_studies() == []


def test_local_backend_runs_no_more_trials_than_cpu_slots(tmp_path: Path):
    backend = LocalBackend(tmp_path / "home")
    cores = len(os.sched_getaffinity(0))
    assert backend.concurrent_job_limit(JobSpec()) == cores
    assert backend.concurrent_job_limit(JobSpec(procs_per_node=2)) == max(1, cores // 2)
