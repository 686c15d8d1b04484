"""The Snakemake workflow: config validation at parse time, real end-to-end runs, and the HTML report
(`snakemake --report`) of a finished run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import FIXTURES, REPO

SHARED_DATA = Path(os.environ.get("ROBUSTFT_TEST_DATA", REPO.parent / "shared" / "data"))
TINY_CONFIG = FIXTURES / "workflow-tiny.yaml"


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
    ]
    # Rules call `python -m robustft`: the interpreter running the tests must come first on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, env=env)


def page_variable(page: str, name: str) -> object:
    """A JSON value the HTML report's page defines in `<script id="NAME"> var NAME = ...; </script>`."""
    match = re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', page, re.DOTALL)
    assert match, f"no {name} in the report page"
    return json.loads(match.group(1))


def html_report(workdir: Path, config_file: Path) -> tuple[dict[str, dict], dict[str, dict[str, list[str]]]]:
    """`snakemake --report report.zip` of a finished run in `workdir`: ({path: entry with its caption},
    {category: {subcategory: paths}}), read from the report's page once every entry's file is in the zip."""
    result = snakemake(workdir, "--report", str(workdir / "report.zip"), "--configfile", str(config_file))
    assert result.returncode == 0, result.stderr[-4000:]
    with zipfile.ZipFile(workdir / "report.zip") as archive:
        stored = set(archive.namelist())
        page = archive.read("report/report.html").decode("utf-8")
    results, categories = page_variable(page, "results"), page_variable(page, "categories")
    for path, entry in results.items():
        assert f"report/{entry['data_uri']}" in stored, path
    return results, categories


def resolved(config_file: Path, **overrides: object) -> dict:
    """A config file resolved as the workflow resolves it, with top-level overrides (like --config)."""
    from robustft.workflow_config import load_config

    return {**load_config(config_file), **overrides}


def tables_of(workdir: Path, config: dict) -> Path:
    """Where the workflow writes this config's tables (results/tables/<config name>)."""
    from robustft.workflow_config import tables_dir

    return workdir / tables_dir(config)


def artifacts_of(workdir: Path, config: dict) -> Path:
    from robustft.workflow_config import artifacts_dir

    return workdir / artifacts_dir(config)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("unknown_key=1", "unknown_key"),
        ("seeds=[1,a]", "seeds"),
        ("models=[no-such-model]", "no-such-model"),
        ("tasks=[no-such-task]", "no-such-task"),
        ("methods={bad: {noisytune: {noise_lambda: -0.1}}}", "noise_lambda"),
        ("methods={bad: {nosuchcomponent: {}}}", "nosuchcomponent"),
    ],
)
def test_bad_config_fails_at_parse_time_naming_the_key(tmp_path: Path, override: str, named: str) -> None:
    result = snakemake(tmp_path, "-n", "--configfile", str(TINY_CONFIG), "--config", override)
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_dry_run_fans_out_the_grid(tmp_path: Path) -> None:
    result = snakemake(tmp_path, "-n", "--quiet", "rules", "--configfile", str(TINY_CONFIG))
    assert result.returncode == 0, result.stderr
    train_line = next(line for line in result.stdout.splitlines() if line.startswith("train "))
    assert train_line.split()[-1] == str(1 * 2 * 2 * 2)  # models x tasks x methods x seeds


def test_the_grids_run_directories_named_at_once_are_those_named_one_by_one() -> None:
    """The Snakefile names the grid's run directories at parse time in one go (glue_run_dirs hashes each
    method and task's settings once): each must be the directory glue_run_dir names for the run alone,
    which runs.csv and the report check against."""
    from robustft.workflow_config import glue_run_dir, glue_run_dirs, load_config, run_grid

    config = load_config(REPO / "config" / "config.yaml")
    runs = run_grid(config)
    named = glue_run_dirs(config, runs)
    assert list(named) == runs
    assert list(named.values()) == [glue_run_dir(config, *run) for run in runs]
    # A method's runs of different tasks have different keys here, so a key reused across tasks would show.
    keys_of_a_method = {
        run_dir.rsplit("-", 1)[1] for (_, _, method, _), run_dir in named.items() if method == "finetune"
    }
    assert len(keys_of_a_method) > 1


def test_a_requested_run_must_carry_the_configs_key_in_or_out_of_the_grid(tmp_path: Path) -> None:
    """A train job checks its path's key against the config's (looked up for the grid's runs, named anew
    for others): a seed outside the grid with the right key is planned with the run's priority, a wrong
    key stops the dry run naming the path the config names."""
    from robustft.estimate import train_priorities
    from robustft.workflow_config import glue_run_dir

    config = resolved(TINY_CONFIG)
    run_dir = glue_run_dir(config, "minilm-l6", "rte", "noisytune", 7)  # the grid's seeds are 1 and 2
    planned = snakemake(tmp_path, "-n", f"{run_dir}/metrics.json", "--configfile", str(TINY_CONFIG))
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert f"priority: {train_priorities(config)['rte', 'noisytune']}" in planned.stdout

    wrong_key = run_dir.rsplit("-", 1)[0] + "-00000000"
    refused = snakemake(tmp_path, "-n", f"{wrong_key}/metrics.json", "--configfile", str(TINY_CONFIG))
    assert refused.returncode != 0
    assert "does not match this config's settings" in refused.stdout + refused.stderr
    assert run_dir in refused.stdout + refused.stderr


def test_packed_runs_make_one_group_job_per_pack(tmp_path: Path) -> None:
    """Config `pack`: the tiny grid's 8 runs join the group `train`, and --group-components train=4 makes
    two jobs of 4 runs of them (a dry run shows the groups a cluster would get); unpacked, no groups."""
    packed = tmp_path / "packed.yaml"
    packed.write_text(TINY_CONFIG.read_text() + "pack: {runs_per_job: 4}\n")
    result = snakemake(tmp_path, "-n", "--configfile", str(packed), "--group-components", "train=4")
    assert result.returncode == 0, result.stderr
    groups = (result.stdout + result.stderr).split("Group job train (jobs in lexicogr. order):")[1:]
    assert [group.count("rule train:") for group in groups] == [4, 4]

    alone = snakemake(tmp_path, "-n", "--configfile", str(TINY_CONFIG))
    assert alone.returncode == 0, alone.stderr
    assert "Group job" not in alone.stdout + alone.stderr


def test_tables_kept_from_another_grid_are_rebuilt_without_metadata(tmp_path: Path) -> None:
    """Tables left by a config whose grid has since changed (or copied, or kept after .snakemake was
    removed) must not look up to date: the report would fail on them. The grid manifest they lack
    schedules the aggregate step, and the training runs behind it, whatever Snakemake's metadata says."""
    config = resolved(TINY_CONFIG)
    tables = tables_of(tmp_path, config)
    tables.mkdir(parents=True)
    for name in ("runs.csv", "summary.csv", "comparisons.csv", "curves.csv"):
        (tables / name).write_text("run_dir\nresults/runs/other-grid/seed1-00000000\n")
    result = snakemake(tmp_path, "-n", "--quiet", "rules", "--configfile", str(TINY_CONFIG))
    assert result.returncode == 0, result.stderr
    counts = dict(line.split() for line in result.stdout.splitlines() if len(line.split()) == 2)
    assert counts.get("aggregate") == "1" and counts.get("train") == str(1 * 2 * 2 * 2), result.stdout


@pytest.mark.integration
def test_workflow_end_to_end_on_real_glue(tmp_path: Path) -> None:
    if not (SHARED_DATA / "glue" / "RTE" / "train.tsv").exists():
        pytest.skip(f"real GLUE files not found at {SHARED_DATA}")
    from robustft.workflow_config import glue_run_dir

    config = resolved(TINY_CONFIG, data_dir=str(SHARED_DATA))
    # An interrupted earlier attempt: files but no metrics.json. It must not count, and must be redone.
    stale = tmp_path / glue_run_dir(config, "minilm-l6", "rte", "noisytune", 2)
    stale.mkdir(parents=True)
    (stale / "history.jsonl").write_text('{"step": 999, "loss": 123.0}\n')

    result = snakemake(
        tmp_path, "--cores", "2", "--configfile", str(TINY_CONFIG), "--config", f"data_dir={SHARED_DATA}"
    )
    assert result.returncode == 0, result.stderr[-4000:]

    tables = tables_of(tmp_path, config)
    runs = pd.read_csv(tables / "runs.csv")
    assert len(runs) == 8 and set(runs["status"]) == {"ok"}
    assert set(runs["method"]) == {"finetune", "noisytune"} and set(runs["seed"]) == {1, 2}
    assert runs["n_train"].eq(48).all() and runs["n_eval"].eq(48).all()
    assert 'step": 999' not in (stale / "history.jsonl").read_text()
    metrics = json.loads((stale / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["primary_metric"] == "accuracy"
    run_record = json.loads((stale / "run.json").read_text())
    assert run_record["method_log"]["noisytune"]["tensors_perturbed"] > 0
    assert run_record["data"]["train"].startswith("local:")

    summary = pd.read_csv(tables / "summary.csv")
    assert {"GLUE-avg", "rte", "cola"} <= set(summary["task"])
    comparisons = pd.read_csv(tables / "comparisons.csv")
    assert set(comparisons["method"]) == {"noisytune"} and comparisons["n_pairs"].eq(2).all()
    pdf = tmp_path / "results/reports/tiny.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    run_dir = Path(glue_run_dir(config, "minilm-l6", "rte", "finetune", 1))
    assert (tmp_path / "logs/train/minilm-l6/rte/finetune" / f"{run_dir.name}.log").exists()

    # A runs.csv from another config (copied in, restored, or kept after --drop-metadata) looks up to date
    # to Snakemake; the report itself refuses it, naming the runs it was not asked for.
    other_key = runs["run_dir"].str.replace(r"seed(\d+)-\w+$", r"seed\1-0000aaaa", regex=True)
    foreign = runs.assign(run_dir=other_key)
    foreign.to_csv(tables / "runs.csv", index=False)
    rerun = snakemake(
        tmp_path, "--cores", "1", "--configfile", str(TINY_CONFIG), "--config", f"data_dir={SHARED_DATA}",
        "--forcerun", "report",
    )  # fmt: skip
    assert rerun.returncode != 0
    log = (tmp_path / "logs/report/tiny.log").read_text()
    assert "8 run(s) that the config does not ask for" in log and "seed1-0000aaaa" in log


@pytest.mark.parametrize("config_file", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(config_file: Path) -> None:
    from robustft.workflow_config import load_config

    config = load_config(config_file)
    assert config["methods"] and config["seeds"] and config["report"]["name"]


# Presets that config/methods.yaml's finding leaves out of its budget, but that must still run in the DAG.
EXTRA_PRESETS = {
    "neftune_hf": {"neftune": {"alpha": 5.0, "mode": "hf"}},
    "smart_no_rs": {"smart": {"smoothness_weight": 0.0}},
    "smart_no_breg": {"smart": {"bregman_weight": 0.0}},
    "noisytune+recadam": {"noisytune": {}, "recadam": {}},
    "noisytune+mixout": {"noisytune": {}, "mixout": {}},
    "noisytune+smart": {"noisytune": {}, "smart": {}},
    "neftune+noisytune": {"neftune": {}, "noisytune": {}},
}


@pytest.mark.integration
def test_every_method_and_composition_runs_through_the_dag(tmp_path: Path) -> None:
    """Each preset of config/methods.yaml (every component), the SMART ablations, the NEFTune variant and the
    compositions train in the real DAG."""
    import yaml

    if not (SHARED_DATA / "glue" / "RTE" / "train.tsv").exists():
        pytest.skip(f"real GLUE files not found at {SHARED_DATA}")
    methods = {**yaml.safe_load((REPO / "config" / "methods.yaml").read_text())["methods"], **EXTRA_PRESETS}
    tiny = yaml.safe_load(TINY_CONFIG.read_text())
    config = {
        **tiny,
        "data_dir": str(SHARED_DATA),
        "tasks": ["rte"],
        "seeds": [1],
        "methods": methods,
        "artifacts": ["crossmethod/table"],
        "train": {**tiny["train"], "max_train_samples": 32, "max_eval_samples": 32},
        "report": {**tiny["report"], "name": "methods"},
    }
    config_file = tmp_path / "methods.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))  # component order matters

    result = snakemake(tmp_path, "--cores", "2", "--configfile", str(config_file), timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]

    from robustft.workflow_config import glue_run_dir

    resolved_config = resolved(config_file)
    runs = pd.read_csv(tables_of(tmp_path, resolved_config) / "runs.csv")
    assert sorted(runs["method"]) == sorted(methods)
    assert set(runs["status"]) == {"ok"}, runs[["method", "status"]]
    for method, components in methods.items():
        run_dir = tmp_path / glue_run_dir(resolved_config, "minilm-l6", "rte", method, 1)
        record = json.loads((run_dir / "run.json").read_text())
        assert [next(iter(c)) for c in record["method"]["components"]] == list(components), method
    assert (tmp_path / "results/reports/methods.pdf").read_bytes().startswith(b"%PDF")
    cost = pd.read_csv(artifacts_of(tmp_path, resolved_config) / "crossmethod/table/claims.csv")
    assert set(cost["method"]) == set(methods) - {"finetune"}
    assert cost["hours_per_run"].gt(0).all() and cost["samples_per_s"].gt(0).all()


def run_paper_dag(
    tmp_path: Path, config_name: str, report: str, timeout: int
) -> tuple[pd.DataFrame, dict, dict]:
    """Run a toy paper DAG on real GLUE files; return its runs table, {artifact key: result.json} and
    the resolved config.

    Checks what every paper DAG promises: the workflow succeeds, every run is ok, and the PDF exists.
    """
    import yaml

    if not (SHARED_DATA / "glue" / "RTE" / "train.tsv").exists():
        pytest.skip(f"real GLUE files not found at {SHARED_DATA}")
    config = yaml.safe_load((FIXTURES / config_name).read_text())
    config["data_dir"] = str(SHARED_DATA)
    if "xtreme" in config:  # data directories relative to the repository, as `make` runs them
        by_model = config["xtreme"].get("data_dir_by_model", {})
        config["xtreme"]["data_dir_by_model"] = {m: str(REPO / d) for m, d in by_model.items()}
    config_file = tmp_path / config_name
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))  # component order matters
    result = snakemake(tmp_path, "--cores", "2", "--configfile", str(config_file), timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    resolved_config = resolved(config_file)
    runs = pd.read_csv(tables_of(tmp_path, resolved_config) / "runs.csv")
    assert set(runs["status"]) == {"ok"}
    assert (tmp_path / f"results/reports/{report}.pdf").read_bytes().startswith(b"%PDF")
    records = {
        key: json.loads((artifacts_of(tmp_path, resolved_config) / key / "result.json").read_text())
        for key in resolved_config["artifacts"]
    }
    return runs, records, resolved_config


@pytest.mark.integration
def test_noisytune_paper_dag_produces_every_artifact_and_the_pdf(tmp_path: Path) -> None:
    """Both tracks of the NoisyTune config: GLUE (Table 2, Figures 2-6) and XTREME (Table 3, the CPU
    variant at toy size: real XNLI/PAWS-X on MiniLM, every task on the tiny random XLM-R)."""
    runs, records, config = run_paper_dag(tmp_path, "noisytune-tiny.yaml", "noisytune", timeout=1800)
    artifacts = artifacts_of(tmp_path, config)
    assert set(runs.loc[runs["task"] == "mrpc@0.5", "n_train"]) == {16}  # half of the 32-example budget
    for key, record in records.items():
        assert record["status"] == "regenerated", (key, record["reason"])
        claims = pd.read_csv(artifacts / key / "claims.csv")
        assert len(claims) and claims["verdict"].notna().all(), key
        assert (artifacts / key / "figure.svg").exists()

    xtreme = pd.read_csv(tables_of(tmp_path, config) / "xtreme.csv")
    assert set(xtreme["status"]) == {"ok"}
    tiny = xtreme[xtreme["model"] == "xlm-r-tiny-random"]
    assert set(tiny["task"]) == {
        "xnli",
        "pawsx",
        "udpos",
        "panx",
        "bucc2018",
        "tatoeba",
        "xquad",
        "mlqa",
        "tydiqa",
    }
    assert set(tiny.loc[tiny["task"] == "mlqa", "metric"]) == {"f1", "em"}
    assert tiny["value"].between(0, 1).all()
    real = xtreme[xtreme["model"] == "minilm-l6"]
    # Trained on the English dev set, so English is not scored; the other 14 XNLI languages are.
    assert set(real.loc[real["task"] == "xnli", "language"]) == {
        "ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh"
    }  # fmt: skip
    from robustft.workflow_config import xtreme_run_dir

    bucc = xtreme_run_dir(config, "xlm-r-tiny-random", "bucc2018", "zero-shot", "finetune", 1)
    retrieval = json.loads((tmp_path / bucc / "metrics.json").read_text())
    assert retrieval["layer"] is not None and retrieval["layer_chosen_on"] == "the dev gold"
    claims = pd.read_csv(artifacts / "noisytune/table3/claims.csv")
    assert set(claims["verdict"]) <= {"mechanics check", "not run"} and "mechanics check" in set(
        claims["verdict"]
    )
    assert (artifacts / "noisytune/table3/appendix.csv").exists()

    # `snakemake --report`: each artifact's claims, figure and appendix under its paper and artifact, every
    # table, learning curve and report figure, and the PDF, each with a caption naming the config.
    from robustft.workflow_config import artifacts_dir, tables_dir

    results, categories = html_report(tmp_path, tmp_path / "noisytune-tiny.yaml")
    name = config["report"]["name"]
    tables = ("runs", "summary", "comparisons", "curves", "xtreme", "xtreme_curves")
    expected = {f"{tables_dir(config)}/{table}.csv" for table in tables}
    expected |= {f"results/reports/{name}.pdf", f"figures/{name}/{name}_levels.svg"}
    expected |= {f"figures/{name}/{name}_effects.svg"}
    curves = sorted(path.name for path in (tmp_path / f"results/reports/{name}/curves").glob("*.png"))
    assert {curve.split("_")[0] for curve in curves} == {"glue", "xtreme"}, curves
    expected |= {f"results/reports/{name}/curves/{curve}" for curve in curves}
    for key, record in records.items():
        folder = f"{artifacts_dir(config)}/{key}"
        # result.json names the figure and the appendix of the artifacts that have them.
        present = ("claims.csv", record["figure"], record.get("appendix"))
        files = [f"{folder}/{file}" for file in present if file]
        assert set(files) <= set(categories[record["paper"]][record["artifact"]]), key
        expected |= set(files)
    assert expected <= set(results), sorted(expected - set(results))
    for path in expected:
        caption = results[path]["caption"]
        assert f">{name}<" in caption and "system-message" not in caption, (path, caption)


@pytest.mark.integration
def test_smart_paper_dag_produces_every_artifact_and_the_pdf(tmp_path: Path) -> None:
    """Tables 1 and 3 regenerate from GLUE; the artifacts whose data are not offline say why not."""
    # 12 runs, SMART's at 3x the cost of fine-tuning, on a shared 2-core machine
    runs, records, config = run_paper_dag(tmp_path, "smart-tiny.yaml", "smart", timeout=1500)
    assert len(runs) == 12
    # train_by_task.rte.save_predictions: one line per dev example (32) for RTE runs only.
    for run_dir in runs["run_dir"]:
        predictions = tmp_path / run_dir / "predictions.jsonl"
        assert predictions.exists() == ("/rte/" in run_dir), run_dir
        if predictions.exists():
            rows = [json.loads(line) for line in predictions.read_text().splitlines()]
            assert [r["index"] for r in rows] == list(range(32))
            assert all(abs(sum(r["probs"]) - 1) < 1e-4 for r in rows)
    statuses = {key: record["status"] for key, record in records.items()}
    for key, record in records.items():
        assert record["status"] in {"regenerated", "not run"}, key
        if record["status"] == "not run":
            assert record["reason"].strip(), key
    assert statuses["smart/table1"] == statuses["smart/table3"] == "regenerated"
    assert statuses["smart/table4"] == "not run"
    claims = pd.read_csv(artifacts_of(tmp_path, config) / "smart/table1/claims.csv")
    assert set(claims["task"]) == {"rte", "mrpc", "GLUE-avg"}
    assert claims["verdict"].notna().all() and claims["best_method"].notna().sum() == 2


# Headless Chromium as in a CI container: no sandbox (root), no GPU, nothing fetched in the background.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    # The page draws itself with React once loaded: let its scripts run before the DOM or pixels are read.
    "--virtual-time-budget=10000",
]


@pytest.mark.integration
@pytest.mark.slow
def test_html_report_opens_in_a_headless_browser(tmp_path: Path) -> None:
    """The demo-like tiny DAG with NoisyTune Table 2, its `snakemake --report` unzipped and opened from
    file:// in headless Chromium: the page draws its menu of categories and the front page's text, and
    its screenshot is not blank. A DAG run of its own, so not in `make test` (pytest -m slow)."""
    import yaml
    from PIL import Image, ImageStat

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    if not (SHARED_DATA / "glue" / "RTE" / "train.tsv").exists():
        pytest.skip(f"real GLUE files not found at {SHARED_DATA}")
    config = {**yaml.safe_load(TINY_CONFIG.read_text()), "data_dir": str(SHARED_DATA)}
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({**config, "artifacts": ["noisytune/table2"]}, sort_keys=False))
    result = snakemake(tmp_path, "--cores", "2", "--configfile", str(config_file))
    assert result.returncode == 0, result.stderr[-4000:]
    _, categories = html_report(tmp_path, config_file)
    assert {"Reports", "Tables", "Figures", "NoisyTune"} <= set(categories)
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        archive.extractall(tmp_path / "unzipped")
    page = (tmp_path / "unzipped" / "report" / "report.html").as_uri()
    browser = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"]

    dom = subprocess.run([*browser, "--dump-dom", page], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-3000:]
    # What the scripts drew, not the data and code the page carries in its <script> elements.
    drawn = re.sub(r"<script\b.*?</script>", "", dom.stdout, flags=re.DOTALL)
    for text in [*categories, "Statistics", "Every table and figure this config"]:
        assert text in drawn, text

    screenshot = tmp_path / "report.png"
    shot = subprocess.run([*browser, f"--screenshot={screenshot}", page], capture_output=True, timeout=180)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-3000:]
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1400, 1000)
    # A blank or single-colour page has no spread; the report's menu, text and rule graph have plenty.
    assert max(ImageStat.Stat(image).stddev) > 20 and len(image.getcolors(1400 * 1000)) > 100
