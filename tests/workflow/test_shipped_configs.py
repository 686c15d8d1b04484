"""Every shipped config, resolved the way a user resolves it: `snakemake -n -p` from the repository root.

A test in a temporary directory can hide what the root does (the demo's `config/config.yaml` once leaked its
training caps into every paper config), so these tests run the workflow in the checkout itself, with the
shipped files, and check three things for each config:
- each training job receives exactly the settings `robustft check-config FILE --jobs` prints;
- where the paper's hyperparameter table states a value, the config uses it or its report lists the
  deviation among its `choices`;
- no paper config trains on a subset unless a grid asks for a fraction.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from robustft.cli import main
from robustft.workflow_config import DEFAULT_CONFIG, load_config, training_jobs
from tests.helpers import REPO as ROOT

SHIPPED = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "config").glob("*.yaml"))
# Configs that claim the paper's own setting (the others are CPU-scale variants that say so in `choices`).
# Each with the fewest training jobs its paper's grid has: NoisyTune Table 2 alone is 4 models x 9 tasks x
# 2 methods x 5 seeds = 360 runs (Table 3 adds 280 XTREME training runs); SMART Table 1 is 2 x 8 x 2 x 3
# = 96 runs and Tables 3, 5 and 6 add 84; NEFTune's grids hold 83 SFT runs.
PAPER_CONFIGS = {"config/noisytune.yaml": 360 + 280, "config/smart.yaml": 180, "config/neftune.yaml": 83}
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# The training rules and the options that carry their settings.
SETTING_OPTIONS = {
    "train": {"--method-components": "method_components", "--train-config": "train"},
    "xtreme_train": {
        "--method-components": "method_components",
        "--train-config": "train",
        "--xtreme-config": "xtreme",
    },
    "sft": {"--method-components": "method_components", "--sft-config": "sft"},
}
REFERENCE = ROOT / "src/robustft/reference/paper_hyperparameters.csv"
COMMAND_OF_RULE = {"train": "train", "xtreme_train": "train-xtreme", "sft": "sft"}


def dry_run_jobs(configfile: str | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The training jobs `snakemake -n -p -F [--configfile F]` schedules from the repository root, each
    parsed from its shell command into the same shape as `training_jobs`, and the job count per rule."""
    command = [SNAKEMAKE, "-n", "-p", "-F", "--nolock", "--cores", "1"]
    if configfile is not None:
        command += ["--configfile", configfile]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs, counts = [], {}
    for line in (result.stdout + result.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():  # the job-count table: "<rule> <count>"
            counts[parts[0]] = int(parts[1])
        if not line.startswith("Shell command: ") or " robustft launch " not in line:
            continue
        tokens = shlex.split(line.removeprefix("Shell command: "))
        command_name = tokens[tokens.index("--") + 1]
        rule = {name: rule for rule, name in COMMAND_OF_RULE.items()}[command_name]
        out = tokens[tokens.index("--out") + 2].rstrip(")")  # --out $(dirname <run>/.../metrics.json)
        run_dir = re.sub(r"(/sft)?/metrics\.json$", "", out)
        job: dict[str, Any] = {"rule": rule, "run_dir": run_dir}
        for option, key in SETTING_OPTIONS[rule].items():
            job[key] = json.loads(tokens[tokens.index(option) + 1])
        jobs.append(job)
    return jobs, counts


def by_run_dir(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {job["run_dir"]: job for job in jobs}


def paper_value(paper: str, name: str, scope: str | None = None) -> set[float]:
    """The values the paper's hyperparameter table states for `name` (a search grid, or one value)."""
    rows = [
        row
        for row in PAPER_HYPERPARAMETERS
        if row["paper"] == paper and row["name"] == name and (scope is None or row["scope"] == scope)
    ]
    assert len(rows) == 1, f"{paper} {name} {scope}: {len(rows)} rows"
    value = rows[0]["value"]
    number = r"\d+(?:\.\d+)?(?:e-?\d+)?"
    grid = re.search(r"\{([^}]*)\}", value)
    if grid:  # a search grid, possibly with words around it ("train alpha in {5,10,15}, report best")
        return {float(n) for n in re.findall(number, grid.group(1))}
    numbers = re.findall(number, value)
    # One value, possibly with words around it ("512 wordpieces", "Adam, 5e-5", "128 (4 GPUs x ...)").
    return {float(numbers[-1] if "," in value.split("(")[0] else numbers[0])}


PAPER_HYPERPARAMETERS = list(csv.DictReader(REFERENCE.open()))
# Per paper: (a job's setting, the paper's row (name, scope), how the value must relate to it, the words one
# of the report's `choices` must use when the config deviates).
TRAIN_CHECKS = {
    "NoisyTune": [
        ("learning_rate", ("learning_rate", None), "in", ("lr", "learning rate")),
        ("epochs", ("epochs", None), "in", ("epoch",)),
        ("batch_size", ("batch_size", None), "in", ("batch",)),
    ],
    "SMART": [
        ("learning_rate", ("learning_rate", None), "in", ("lr", "learning rate")),
        ("batch_size", ("batch_size", None), "in", ("batch",)),
        ("epochs", ("max_epochs", None), "at most", ("epoch",)),
        ("max_seq_length", ("max_seq_len", None), "in", ("max length", "length", "tokens")),
    ],
}
# The paper's own method in each config and its settings that the paper states.
METHOD_CHECKS = {
    "NoisyTune": [("noisytune", "noise_lambda", ("lambda", "GLUE (Table 2, Figs 2-6)"), ("lambda", "λ"))],
    "SMART": [
        ("smart", "smoothness_weight", ("lambda_s (smoothness weight)", None), ("smoothness", "lambda_s")),
        ("smart", "radius", ("epsilon (perturbation radius, l_inf)", None), ("epsilon", "ε", "radius")),
        ("smart", "noise_std", ("sigma (init noise std)", None), ("sigma", "σ")),
        ("smart", "step_size", ("eta (adversarial step size)", None), ("step size", "η", "eta")),
        ("smart", "bregman_weight", ("mu (Bregman proximal weight)", None), ("bregman", "μ")),
    ],
}


def spellings(value: float) -> set[str]:
    """How a choice may write a number: 0.0001, 1e-4, 1.0e-4, 1e-04; 128, 128.0."""
    forms = {f"{value:g}", f"{value:.0e}", f"{value:.1e}"}
    forms |= {re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m[1] == "-" else "") + m[2], f) for f in forms}
    if float(value).is_integer():
        forms.add(str(int(value)))
    return {form for form in forms if float(form) == value}  # 1e+02 is no spelling of 128


def stated(choices: list[str], value: float | None, words: tuple[str, ...]) -> bool:
    """Whether one choice names both the setting (one of `words`) and the value the config uses."""
    if value is None:
        return any(any(word in choice.lower() for word in words) for choice in choices)
    number = re.compile(r"(?<![\w.])(" + "|".join(re.escape(s) for s in spellings(value)) + r")(?![\w.]*\d)")
    return any(
        any(re.search(r"\b" + re.escape(word), choice.lower()) for word in words) and number.search(choice)
        for choice in choices
    )


Deviation = tuple[str, float | None, tuple[str, ...]]


def deviations(config: dict[str, Any], jobs: list[dict[str, Any]]) -> list[Deviation]:
    """(what deviates from the paper's hyperparameter table, the value the config uses, the words one of
    the report's choices must use, beside that value, to state it)."""
    from robustft.methods import build_method

    found: list[Deviation] = []

    def check(
        what: str, value: float | None, allowed: set[float], relation: str, words: tuple[str, ...]
    ) -> None:
        ok = value is not None and (
            any(abs(value - a) <= 1e-9 * max(1.0, a) for a in allowed)
            if relation == "in"
            else value <= max(allowed)
        )
        if not ok:
            found.append((f"{what} = {value} (paper: {relation} {sorted(allowed)})", value, words))

    tracks = config["tracks"]
    if "glue" in tracks or "xtreme" in tracks:
        paper = config["report"]["paper"]
        for job in jobs:
            for setting, (name, scope), relation, words in TRAIN_CHECKS.get(paper, []):
                check(
                    f"{job['run_dir']}: {setting}",
                    job["train"][setting],
                    paper_value(paper, name, scope),
                    relation,
                    words,
                )
        for method, attribute, (name, scope), words in METHOD_CHECKS.get(paper, []):
            if method in config["methods"]:
                component = build_method(method, config["methods"][method]).components[0]
                check(
                    f"{method}.{attribute}",
                    getattr(component, attribute),
                    paper_value(paper, name, scope),
                    "in",
                    words,
                )
        if "xtreme" in tracks and paper == "NoisyTune":
            method = config["xtreme"]["report"]["method"]
            component = build_method(method, config["methods"][method]).components[0]
            lam = paper_value("NoisyTune", "lambda", "XTREME (Table 3)")
            check(f"{method}.noise_lambda", component.noise_lambda, lam, "in", ("lambda", "λ"))
    if "instruct" in tracks:
        recipe = {**config["instruct"]["sft"], **(config["instruct"]["recipes"].get("default") or {})}
        from robustft.train.sft import SFTSettings

        settings = vars(SFTSettings(**recipe))
        check(
            "sft.learning_rate",
            settings["learning_rate"],
            paper_value("NEFTune", "optimizer / lr"),
            "in",
            ("lr", "learning rate"),
        )
        check("sft.epochs", settings["epochs"], paper_value("NEFTune", "epochs", "7B/13B"), "in", ("epoch",))
        check(
            "sft.max_seq_length",
            settings["max_seq_length"],
            paper_value("NEFTune", "max_seq_len"),
            "in",
            ("token", "length"),
        )
        effective = settings["batch_size"] * settings["gradient_accumulation_steps"]
        check(
            "sft effective batch", effective, paper_value("NEFTune", "effective batch size"), "in", ("batch",)
        )
        for method in config["instruct"]["methods"]:
            for component in build_method(method, config["methods"][method]).components:
                if component.name == "neftune":
                    alphas = paper_value("NEFTune", "alpha selection")
                    check(f"{method}.alpha", component.alpha, alphas, "in", ("alpha", "α"))
    return found


def choices_of(config: dict[str, Any]) -> list[str]:
    blocks = [config["report"], config["xtreme"]["report"], config["instruct"]["report"]]
    return [choice for block in blocks for choice in block.get("choices", [])]


@pytest.mark.parametrize("configfile", [None, *SHIPPED], ids=lambda p: p or "no-configfile")
def test_shipped_config_resolves_as_its_file_says(
    configfile: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = configfile or DEFAULT_CONFIG
    config = load_config(ROOT / path)
    scheduled, counts = dry_run_jobs(configfile)

    # 1. Each training job receives exactly what `robustft check-config FILE --jobs` prints.
    assert main(["check-config", str(ROOT / path), "--jobs"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == training_jobs(config)
    scheduled_by_dir, printed_by_dir = by_run_dir(scheduled), by_run_dir(printed)
    assert sorted(scheduled_by_dir) == sorted(printed_by_dir), f"{path}: the DAG trains other runs"
    for run_dir, job in printed_by_dir.items():
        assert scheduled_by_dir[run_dir] == job, f"{path}: {run_dir} receives other settings"

    # 2. Where the paper states a value, the config uses it or its report's choices name the deviation.
    choices = choices_of(config)
    unlisted = [
        what for what, value, words in deviations(config, scheduled) if not stated(choices, value, words)
    ]
    assert not unlisted, f"{path}: deviates from the paper without saying so in its choices: {unlisted[:5]}"

    # 3. No paper config trains on a subset (a grid's fraction names its task, e.g. mrpc@0.2).
    if path in PAPER_CONFIGS:
        assert len(scheduled) >= PAPER_CONFIGS[path], (
            f"{path}: the paper's grid shrank to {len(scheduled)} runs"
        )
        for job in scheduled:
            settings = job.get("train") or job.get("sft") or {}
            capped = {
                k: settings.get(k) for k in ("max_train_samples", "max_eval_samples") if settings.get(k)
            }
            assert not capped, f"{path}: {job['run_dir']} trains on a subset {capped}"
    # 4. The rest of the DAG: one job per artifact, a retrieval job per BUCC/Tatoeba run, one report each.
    from robustft.workflow_config import xtreme_grid

    retrieval = [run for run in xtreme_grid(config) if run[1] in ("bucc2018", "tatoeba")]
    assert counts.get("xtreme_retrieve", 0) == (len(retrieval) if "xtreme" in config["tracks"] else 0)
    assert counts.get("artifact", 0) == len(config["artifacts"])
    assert counts.get("report", 0) + counts.get("instruct_report", 0) == len(
        [track for track in ("glue/xtreme", "instruct") if set(track.split("/")) & set(config["tracks"])]
    )
    if configfile is None:  # no --configfile still runs the demo, with the demo's own (laptop-sized) caps
        caps = {Path(job["run_dir"]).parts[3]: job["train"]["max_train_samples"] for job in scheduled}
        assert caps == {
            task: settings["max_train_samples"] for task, settings in config["train_by_task"].items()
        }


def test_configs_keep_their_tables_and_runs_apart() -> None:
    """Each config writes its tables under its own name, and a run directory that two configs share has
    the same settings in both."""
    configs = {path: load_config(ROOT / path) for path in SHIPPED}
    from robustft.workflow_config import config_name

    names = [config_name(config) for config in configs.values()]
    assert len(set(names)) == len(names), f"two shipped configs share a name: {sorted(names)}"
    settings_of: dict[str, tuple[str, dict[str, Any]]] = {}
    for path, config in configs.items():
        for job in training_jobs(config):
            settings = {key: value for key, value in job.items() if key != "run_dir"}
            if job["run_dir"] in settings_of:
                other_path, other = settings_of[job["run_dir"]]
                assert other == settings, (
                    f"{path} and {other_path} share {job['run_dir']} with other settings"
                )
            settings_of[job["run_dir"]] = (path, settings)


@pytest.mark.parametrize("configfile", SHIPPED)
def test_the_report_names_the_same_runs_from_the_config_it_is_handed(configfile: str) -> None:
    """The report and aggregate rules hand the resolved config over as JSON; the run directories named
    from it must be the ones the DAG trains, or every report would refuse its own tables."""
    from robustft.workflow_config import expected_run_dirs

    config = load_config(ROOT / configfile)
    handed = json.loads(json.dumps(config))  # what workflow_config_json passes
    expected = expected_run_dirs(handed)
    trained = {job["run_dir"] for job in training_jobs(config)}
    assert {d for dirs in expected.values() for d in dirs} >= trained
    assert expected == expected_run_dirs(config)


def test_a_settings_key_keeps_component_order_and_nothing_else() -> None:
    from robustft.workflow_config import settings_key

    noisy_then_mixout = {"noisytune": {"noise_lambda": 0.15, "scale": "matrix"}, "mixout": {"p": 0.9}}
    reordered_inside = {"noisytune": {"scale": "matrix", "noise_lambda": 0.15}, "mixout": {"p": 0.9}}
    mixout_then_noisy = {"mixout": {"p": 0.9}, "noisytune": {"noise_lambda": 0.15, "scale": "matrix"}}
    train = {"learning_rate": 2e-5, "epochs": 3}
    key = settings_key(noisy_then_mixout, train)
    assert settings_key(reordered_inside, dict(reversed(train.items()))) == key
    assert settings_key(mixout_then_noisy, train) != key  # components act in their order
    assert settings_key(noisy_then_mixout, {**train, "epochs": 4}) != key
