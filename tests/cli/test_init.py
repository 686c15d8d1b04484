"""The `robustft` command line, in-process: bad input exits 2 with a message naming it, before any work."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from robustft.artifacts import ARTIFACTS
from robustft.cli import build_parser, main
from robustft.data import TASKS
from robustft.methods import COMPONENTS, build_method
from robustft.models import MODELS
from robustft.train.config import TrainConfig
from robustft.workflow_config import SCHEMA_PATH, load_config, train_arguments


def train_argv(out: Path, model="minilm-l6", task="rte", method="finetune", seed="1") -> list[str]:
    return ["train", "--model", model, "--task", task, "--method", method, "--seed", seed, "--out", str(out)]


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(task, split, cache_dir):
        raise ConnectionError("no Hub in unit tests")

    monkeypatch.setattr("robustft.data.glue._read_hub", offline)


# ---------------------------------------------------------------------------------------------- train


@pytest.mark.parametrize(
    ("field", "bad", "registry"),
    [("model", "gpt-9", MODELS), ("task", "glue-9", TASKS)],
)
def test_unknown_name_exits_2_listing_known(tmp_path: Path, capsys, field, bad, registry) -> None:
    out = tmp_path / "run"
    assert main(train_argv(out, **{field: bad})) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustft train: error:")
    assert repr(bad) in err
    for name in ("minilm-l6", "bert-base") if field == "model" else ("rte", "mrpc", "stsb"):
        assert name in err and name in registry
    assert not out.exists()  # validation happens before the run directory is made


def test_unknown_method_exits_2(tmp_path: Path, capsys) -> None:
    assert main(train_argv(tmp_path / "run", method="nosuchmethod")) == 2
    err = capsys.readouterr().err
    assert "'nosuchmethod'" in err and "noisytune" in err
    assert main(train_argv(tmp_path / "run", method="noisytune+nosuchmethod")) == 2
    assert "'nosuchmethod'" in capsys.readouterr().err


def test_non_integer_seed_is_an_argparse_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(train_argv(tmp_path / "run", seed="one"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--seed" in err and "'one'" in err


def test_bad_component_setting_exits_2(tmp_path: Path, capsys) -> None:
    argv = [*train_argv(tmp_path / "run", method="noisytune")]
    assert main([*argv, "--method-components", '{"noisytune": {"noise_lambda": -1}}']) == 2
    assert "noise_lambda" in capsys.readouterr().err
    assert main([*argv, "--method-components", '{"noisytune": {"lambda": 0.1}}']) == 2
    err = capsys.readouterr().err
    assert "'lambda'" in err and "noise_lambda" in err
    assert not (tmp_path / "run").exists()


def test_invalid_json_and_positive_int_flags(tmp_path: Path, capsys) -> None:
    argv = train_argv(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--method-components", "{noisytune: 1}"])
    assert exit_info.value.code == 2
    assert "--method-components" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--max-train-samples", "0"])
    assert exit_info.value.code == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_unknown_train_config_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*train_argv(tmp_path / "run"), "--train-config", '{"batchsize": 8}']) == 2
    assert "batchsize" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--method-components", "[1]"],
        ["--method-components", '{"noisytune": 5}'],
        ["--train-config", "[1]"],
    ],
    ids=["components-list", "settings-int", "train-list"],
)
def test_wrongly_shaped_json_exits_2(tmp_path: Path, capsys, no_hub, extra: list[str]) -> None:
    out = tmp_path / "run"
    assert main([*train_argv(out, method="noisytune"), "--data-dir", str(tmp_path), *extra]) == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "settings",
    ['{"batch_size": 0}', '{"batch_size": "8"}', '{"warmup_ratio": 1.5}', '{"precision": "fp8"}'],
    ids=["batch-0", "batch-str", "warmup-1.5", "precision-fp8"],
)
def test_train_settings_validated_before_the_run(tmp_path: Path, capsys, no_hub, settings: str) -> None:
    out = tmp_path / "run"
    assert main([*train_argv(out), "--data-dir", str(tmp_path), "--train-config", settings]) == 2
    err = capsys.readouterr().err
    assert next(iter(json.loads(settings))) in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------ check-config


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("modles: [minilm-l6]\n", "modles"),
        ("seeds: [1, a]\n", "seeds"),
        ("seeds: [1, 1]\n", "seeds"),
        ("methods:\n  noisytune: {noisytune: {noise_lambda: -0.5}}\n", "noise_lambda"),
        ("methods:\n  nt: {noisytune: {lambda: 0.1}}\n", "methods.nt"),
        ("methods:\n  nosuch: {nosuchcomponent: {}}\n", "nosuchcomponent"),
        ("models: [gpt-9]\n", "gpt-9"),
        ("tasks: [rte, glue-9]\n", "glue-9"),
        ("train: {batch_size: 0}\n", "batch_size"),
        ("train: {batchsize: 8}\n", "batchsize"),
        ("train_by_task: {wnli: {epochs: 1}}\n", "train_by_task"),
        ("train_by_task: {rte: {epoch: 1}}\ntasks: [rte]\n", "epoch"),
        ("methods: {nt: {noisytune: {}}}\n", "report.baseline"),
    ],
)
def test_check_config_rejects(tmp_path: Path, capsys, text: str, named: str) -> None:
    assert main(["check-config", str(_yaml(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustft check-config: error:")
    assert named in err


def test_check_config_unknown_model_lists_known(tmp_path: Path, capsys) -> None:
    assert main(["check-config", str(_yaml(tmp_path, "models: [gpt-9]\n"))]) == 2
    err = capsys.readouterr().err
    assert "'models'" in err and "minilm-l6" in err


def test_check_config_fills_defaults(tmp_path: Path, capsys) -> None:
    assert main(["check-config", str(_yaml(tmp_path, "models: [minilm-l6]\ntasks: [rte]\n"))]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["models"] == ["minilm-l6"] and config["tasks"] == ["rte"]
    assert config["seeds"] == [1, 2, 3]
    assert config["train"] == dataclasses.asdict(TrainConfig())
    assert config["train"]["batch_size"] == 32
    assert config["train_by_task"] == {}
    assert config["methods"] == {"finetune": {}, "noisytune": {"noisytune": {"noise_lambda": 0.15}}}
    assert config["report"]["baseline"] == "finetune"
    assert config["threads"] == 1


def test_empty_config_is_all_defaults(tmp_path: Path, capsys) -> None:
    assert main(["check-config", str(_yaml(tmp_path, ""))]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["models"] == ["minilm-l6"]
    assert config["tasks"] == ["cola", "sst2", "mrpc"]


@pytest.mark.parametrize("text", [None, "models: [minilm-l6\n"], ids=["missing", "bad-yaml"])
def test_check_config_unreadable_file(tmp_path: Path, capsys, text: str | None) -> None:
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["check-config", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


# --------------------------------------------------------------------------- one source of truth


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def test_schema_train_defaults_equal_train_config() -> None:
    properties = _schema()["properties"]["train"]["properties"]
    defaults = {key: spec["default"] for key, spec in properties.items()}
    assert defaults == dataclasses.asdict(TrainConfig())
    assert list(defaults) == [f.name for f in dataclasses.fields(TrainConfig)]


def test_schema_train_by_task_accepts_the_train_keys_without_defaults() -> None:
    schema = _schema()["properties"]
    train = schema["train"]["properties"]
    by_task = schema["train_by_task"]["additionalProperties"]["properties"]
    assert set(by_task) == set(train)
    assert all("default" not in spec for spec in by_task.values())
    for key, spec in by_task.items():  # the same constraints; the descriptions are `train`'s alone
        assert spec == {k: v for k, v in train[key].items() if k not in ("default", "description")}, key


def _parse_train_arguments(arguments: str):
    argv = ["train", "--model", "m", "--task", "t", "--method", "x", "--seed", "1", "--out", "o"]
    return build_parser().parse_args([*argv, *shlex.split(arguments)])


def test_workflow_train_arguments_round_trip(tmp_path: Path) -> None:
    config = load_config(
        _yaml(
            tmp_path,
            "tasks: [rte, cola]\ntrain: {batch_size: 16}\ntrain_by_task: {rte: {max_train_samples: 500}}\n"
            "methods:\n  finetune: {}\n  nt: {noisytune: {noise_lambda: 0.1}}\n",
        )
    )
    args = _parse_train_arguments(train_arguments(config, "nt", "rte"))
    train = TrainConfig(**args.train_config)
    assert train == TrainConfig(batch_size=16, max_train_samples=500)
    (noisytune,) = build_method("nt", args.method_components).components
    assert noisytune.name == "noisytune" and noisytune.noise_lambda == 0.1
    cola = _parse_train_arguments(train_arguments(config, "finetune", "cola"))
    assert TrainConfig(**cola.train_config) == TrainConfig(batch_size=16)
    assert build_method("finetune", cola.method_components).components == []


def test_workflow_train_arguments_keep_the_component_order(tmp_path: Path) -> None:
    # Order is semantic (smart after noisytune starts its teacher at the perturbed weights).
    config = load_config(
        _yaml(tmp_path, "methods:\n  finetune: {}\n  combo: {smart: {}, noisytune: {}, mixout: {}}\n")
    )
    args = _parse_train_arguments(train_arguments(config, "combo", "rte"))
    assert list(args.method_components) == ["smart", "noisytune", "mixout"]
    assert [c.name for c in build_method("combo", args.method_components).components] == [
        "smart",
        "noisytune",
        "mixout",
    ]


def test_null_method_is_not_silently_plain_finetuning(tmp_path: Path) -> None:
    from robustft.workflow_config import ConfigError

    path = _yaml(tmp_path, "methods:\n  finetune: {}\n  noisytune:\n")
    try:
        config = load_config(path)
    except ConfigError:
        return  # rejecting it is fine too
    args = _parse_train_arguments(train_arguments(config, "noisytune", "cola"))
    assert [c.name for c in build_method("noisytune", args.method_components).components] == ["noisytune"]


def test_aggregate_reads_exactly_the_named_runs(tmp_path: Path) -> None:
    """Two configs' runs of one (model, task, method, seed) differ in their settings key: aggregating one
    config's metrics files never reads the other's run."""

    ours = tmp_path / "runs/minilm-l6/rte/finetune/seed1-0000aaaa/metrics.json"
    theirs = tmp_path / "runs/minilm-l6/rte/finetune/seed1-1111bbbb/metrics.json"
    for path, score in ((ours, 0.6), (theirs, 0.9)):
        path.parent.mkdir(parents=True)
        record = {"model": "minilm-l6", "task": "rte", "method": "finetune", "seed": 1, "status": "ok"}
        path.write_text(json.dumps({**record, "primary_metric": "accuracy", "metrics": {"accuracy": score}}))
    out = tmp_path / "tables"
    assert main(["aggregate", "--runs", str(tmp_path / "runs"), "--out", str(out), str(ours)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert runs["run_dir"].tolist() == [str(ours.parent)]
    assert runs["score"].tolist() == [60.0]  # points, like the papers


# ------------------------------------------------------------------------------------------------- list


@pytest.mark.parametrize(
    ("kind", "registry", "known", "description"),
    [
        ("models", MODELS, "minilm-l6", MODELS["minilm-l6"].description),
        ("tasks", TASKS, "rte", "RTE (glue, accuracy)"),
        ("methods", COMPONENTS, "noisytune", COMPONENTS["noisytune"].paper),
        ("artifacts", ARTIFACTS, "noisytune/table2", ARTIFACTS["noisytune/table2"].title),
    ],
)
def test_list_prints_every_registered_name(capsys, kind, registry, known, description) -> None:
    assert main(["list", kind]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(registry)
    (line,) = (line for line in lines if line.split()[0] == known)
    assert line.endswith(f"  {description}")


def test_list_of_an_unknown_registry_is_an_argparse_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "recipes"])
    assert exit_info.value.code == 2
    assert "'recipes'" in capsys.readouterr().err


def test_building_the_parser_imports_nothing_heavy() -> None:
    """`robustft --help` builds every subcommand's parser: it must not wait for torch or pandas."""
    heavy = ("torch", "pandas", "transformers")
    script = (
        "import sys; from robustft.cli import build_parser; build_parser(); "
        f"print(' '.join(name for name in {heavy!r} if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == []
