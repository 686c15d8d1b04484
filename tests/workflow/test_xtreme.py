"""The XTREME block of the workflow config: its grid, the settings each run gets, and the checks."""

from __future__ import annotations

import copy
import json
import shlex

import pytest

from robustft.workflow_config import (
    ConfigError,
    check_config,
    load_config,
    xtreme_arguments,
    xtreme_grid,
    xtreme_train_settings,
)
from tests.helpers import FIXTURES, REPO


@pytest.fixture(scope="module")
def paper_config() -> dict:
    return load_config(REPO / "config" / "noisytune.yaml")


@pytest.fixture(scope="module")
def cpu_config() -> dict:
    return load_config(REPO / "config" / "noisytune-xtreme-cpu.yaml")


def test_paper_config_has_the_full_table3_grid(paper_config):
    runs = xtreme_grid(paper_config)
    # 2 XLM-R sizes x 9 tasks x 2 settings x 2 methods x 5 seeds
    assert len(runs) == 360
    assert {run[1] for run in runs} == {
        "xnli", "pawsx", "udpos", "panx", "bucc2018", "tatoeba", "xquad", "mlqa", "tydiqa"
    }  # fmt: skip
    assert {run[2] for run in runs} == {"zero-shot", "translate-train-all"}
    assert "noisytune/table3" in paper_config["artifacts"]


def test_table3_noisytune_spares_the_token_embeddings(paper_config):
    preset = paper_config["methods"][paper_config["xtreme"]["report"]["method"]]
    assert preset == {"noisytune": {"noise_lambda": 0.1, "exclude": ["word_embeddings"]}}


def _arguments(
    config: dict, model: str, task: str, method: str, setting: str = "zero-shot"
) -> dict[str, dict]:
    words = shlex.split(xtreme_arguments(config, model, task, setting, method))
    return {words[i].removeprefix("--"): json.loads(words[i + 1]) for i in range(0, len(words), 2)}


def test_model_settings_win_over_task_settings(paper_config):
    # XLM-R large's smaller learning rate applies to every task; the task keeps its own length and epochs.
    large = _arguments(paper_config, "xlm-r-large", "xquad", "finetune")["train-config"]
    base = _arguments(paper_config, "xlm-r-base", "xquad", "finetune")["train-config"]
    assert large["learning_rate"] == 7e-6 and base["learning_rate"] == 2e-5
    assert large["max_seq_length"] == base["max_seq_length"] == 384
    assert xtreme_train_settings(paper_config, "xlm-r-base", "xnli", "zero-shot")["epochs"] == 5
    # translate-train-all reads 15x the data: one pass over it, set by a task/setting key.
    assert xtreme_train_settings(paper_config, "xlm-r-base", "xnli", "translate-train-all")["epochs"] == 1
    tta = _arguments(paper_config, "xlm-r-large", "xnli", "finetune", "translate-train-all")["train-config"]
    assert (tta["epochs"], tta["learning_rate"]) == (1, 7e-6)


def test_xnli_keeps_its_encoder_only_when_retrieval_tasks_need_it(paper_config):
    assert _arguments(paper_config, "xlm-r-base", "xnli", "finetune")["xtreme-config"]["save_encoder"] is True
    without = copy.deepcopy(paper_config)
    without["xtreme"]["tasks"] = ["xnli", "pawsx"]
    assert "save_encoder" not in _arguments(without, "xlm-r-base", "xnli", "finetune")["xtreme-config"]


def test_cpu_variant_runs_real_sentence_tasks_and_every_task_on_the_tiny_model(cpu_config):
    runs = xtreme_grid(cpu_config)
    real = {run for run in runs if run[0] == "minilm-l6"}
    tiny = {run for run in runs if run[0] == "xlm-r-tiny-random"}
    assert {run[1] for run in real} == {"xnli", "pawsx"}
    assert len({run[1] for run in tiny}) == 9 and {run[2] for run in tiny} == {
        "zero-shot",
        "translate-train-all",
    }
    assert cpu_config["xtreme"]["report"]["mechanics_check"] is True
    xnli = _arguments(cpu_config, "minilm-l6", "xnli", "finetune")["xtreme-config"]
    assert (xnli["train_split"], xnli["eval_split"]) == ("dev", "dev")  # test labels are withheld


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda x: x.update(tasks=["xnli", "nope"]), "xtreme.tasks"),
        (lambda x: x.update(models=["no-such-model"]), "xtreme.models"),
        (lambda x: x.update(methods=["missing_preset"]), "xtreme.methods"),
        (lambda x: x["train_by_task"].update(nope={}), "xtreme.train_by_task"),
        (lambda x: x["train_by_task"].update({"xnli/few-shot": {}}), "xtreme.train_by_task"),
        (lambda x: x.update(train_by_model={"no-such-model": {}}), "xtreme.train_by_model"),
        (lambda x: x["train_by_task"].update(xnli={"learning_rate": -1}), "learning_rate"),
        (lambda x: x.update(run={"eval_split": "validation"}), "eval_split"),
        (lambda x: x["report"].update(method="missing_preset"), "xtreme.report.method"),
    ],
)
def test_bad_xtreme_settings_name_the_key(paper_config, change, named):
    config = copy.deepcopy(paper_config)
    change(config["xtreme"])
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        check_config(config)


def test_ci_runs_the_cpu_variant_at_toy_size(cpu_config):
    """tests/fixtures/noisytune-tiny.yaml (the CI DAG) runs the CPU variant's models, tasks, settings,
    methods, data and split choices; the budgets and seeds are smaller, and the grid thinner (every value
    runs, not every combination: NoisyTune on two of the tiny model's tasks)."""
    tiny = load_config(FIXTURES / "noisytune-tiny.yaml")
    assert "xtreme" in tiny["tracks"] and "noisytune/table3" in tiny["artifacts"]
    ci, cpu = tiny["xtreme"], cpu_config["xtreme"]
    for key in ("models", "methods", "data_dir_by_model", "run_by_task", "report"):
        assert ci[key] == cpu[key], key
    assert {k: v for k, v in ci["run"].items() if k != "doc_stride"} == cpu["run"]
    ci_runs, cpu_runs = xtreme_grid(tiny), xtreme_grid(cpu_config)
    for position in range(4):  # model, task, setting, method: every value of the CPU variant is run in CI
        assert {run[position] for run in ci_runs} == {run[position] for run in cpu_runs}
