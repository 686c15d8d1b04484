"""Publishing a finding from a hand-made finished grid, and the published findings of the repository."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from robustft import findings
from robustft.cli import main
from robustft.errors import FindingError, TableMismatchError
from robustft.report import GLUE_AVG
from robustft.workflow_config import expected_run_dirs, load_config

REPO = Path(__file__).resolve().parents[1]
CONFIG = {
    "data_dir": "resources/data",
    "models": ["minilm-l6"],
    "tasks": ["mrpc", "stsb"],
    "seeds": [1, 2, 3, 4],
    "methods": {"finetune": {}, "noisytune": {"noisytune": {"noise_lambda": 0.15}}},
    "train": {"learning_rate": 1e-4, "epochs": 1, "max_train_samples": 50},
    "report": {
        "name": "toy-finding",
        "title": "Toy finding",
        "paper": "NoisyTune",
        "artifact": "Table 2",
        "paper_model": {"minilm-l6": "bert-base"},
        "choices": ["A choice the report lists."],
    },
}
PRIMARY = {"mrpc": "accuracy", "stsb": "pearson"}


def _score(task: str, method: str, seed: int) -> float:
    """NoisyTune gains 1-2 points on MRPC on every seed, and nothing on STS-B."""
    base = {"mrpc": 0.70, "stsb": 0.75}[task] + 0.01 * seed
    return base + (0.01 + 0.0025 * seed if (task, method) == ("mrpc", "noisytune") else 0.0)


def _write_run(run_dir: Path, task: str, method: str, seed: int, minute: int) -> None:
    run_dir.mkdir(parents=True)
    metrics = {PRIMARY[task]: _score(task, method, seed), "eval_loss": 0.5}
    record = {"status": "ok", "model": "minilm-l6", "task": task, "method": method, "seed": seed}
    record |= {"primary_metric": PRIMARY[task], "metrics": metrics, "epoch": 1.0, "n_train": 50, "n_eval": 40}
    (run_dir / "metrics.json").write_text(json.dumps(record))
    run_info = {
        "git_commit": "0123456789abcdef",
        "wall_time_s": 60.0,
        "finished_at": f"2026-12-03T06:{minute:02d}:00+00:00",
        "hardware": {"cpu_model": "Test CPU", "cpu_count": 2, "torch_threads": 1, "platform": "Linux"},
        "precision": {"requested": "auto", "used": "fp32", "why": "test"},
        "versions": {"torch": "2.13.0"},
    }
    (run_dir / "run.json").write_text(json.dumps(run_info))
    logs = [{"loss": 0.6, "step": 5, "epoch": 0.5}, {f"eval_dev_{PRIMARY[task]}": metrics[PRIMARY[task]]}]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in logs))


@pytest.fixture
def finished_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory in which the toy config ran to its end: runs, tables and a report PDF."""
    monkeypatch.chdir(tmp_path)
    config_path = tmp_path / "toy.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    config = load_config(config_path)
    for minute, run_dir in enumerate(expected_run_dirs(config)["runs"]):
        task, method, seed_dir = run_dir.split("/")[3:6]
        _write_run(Path(run_dir), task, method, int(seed_dir[4:].split("-")[0]), minute)
    tables = "results/tables/toy-finding"
    assert main(["aggregate", "--out", tables, "--workflow-config", json.dumps(config)]) == 0
    Path("results/reports").mkdir(parents=True)
    Path("results/reports/toy-finding.pdf").write_bytes(b"%PDF-1.4 toy")
    return config_path


def test_a_finished_grid_is_published_with_verdicts_provenance_and_readme(finished_grid: Path) -> None:
    out = Path("findings/toy-finding")
    args = ["publish-finding", "--config", str(finished_grid), "--out", str(out), "--command", "make toy"]
    assert main(args) == 0
    names = {path.name for path in out.iterdir()}
    assert names == {
        *findings.COPIED_TABLES,
        "verdicts.csv",
        "provenance.json",
        "report.pdf",
        "config.yaml",
    } | {"README.md"}
    verdicts = pd.read_csv(out / "verdicts.csv").set_index("task")
    assert list(verdicts.index) == ["mrpc", "stsb", GLUE_AVG]
    # MRPC: Δ = 1 + 0.25 * mean(seed) = 1.625 points on every pair, so a clear effect; STS-B: none.
    assert verdicts.loc["mrpc", "delta"] == pytest.approx(1.625)
    assert verdicts.loc["mrpc", "verdict"] != "within noise"
    assert (
        verdicts.loc["stsb", "delta"] == pytest.approx(0.0)
        and verdicts.loc["stsb", "verdict"] == "within noise"
    )
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["command"] == "make toy" and provenance["statuses"] == {"ok": 16}
    assert provenance["hardware"]["cpu_model"] == ["Test CPU"]
    # The first run started a minute before 06:00 and the last finished at 06:15: 16 minutes.
    assert provenance["wall_time"]["span_s"] == 16 * 60 and provenance["wall_time"]["job_seconds"] == 960
    readme = (out / "README.md").read_text()
    assert "`make toy`" in readme and "A choice the report lists." in readme and "16 min" in readme
    assert readme == findings.finding_readme(out)


def test_the_readme_quote_is_rewritten_between_its_markers_only(finished_grid: Path) -> None:
    out = findings.publish_finding(finished_grid, Path("findings/toy-finding"), "make toy")
    readme = Path("README.md")
    start, end = (marker.format(name="toy-finding") for marker in (findings.QUOTE_START, findings.QUOTE_END))
    readme.write_text(f"# Project\n\nBefore.\n\n{start}\nstale numbers\n{end}\n\nAfter.\n")
    findings.update_readme_quote(readme, out)
    text = readme.read_text()
    assert (
        "stale numbers" not in text
        and text.startswith("# Project\n\nBefore.\n\n")
        and text.endswith("After.\n")
    )
    assert findings.quoted_block(readme, "toy-finding") == findings.readme_quote(out)
    assert "| minilm-l6 | mrpc | noisytune | 4 |" in text


def test_a_readme_without_the_markers_is_refused(finished_grid: Path) -> None:
    out = findings.publish_finding(finished_grid, Path("findings/toy-finding"), "make toy")
    Path("README.md").write_text("# Project\n")
    with pytest.raises(FindingError, match="no block for finding toy-finding"):
        findings.update_readme_quote(Path("README.md"), out)


def test_an_unfinished_grid_is_not_published(finished_grid: Path) -> None:
    runs = pd.read_csv("results/tables/toy-finding/runs.csv")
    runs.iloc[1:].to_csv("results/tables/toy-finding/runs.csv", index=False)
    with pytest.raises(TableMismatchError):
        findings.publish_finding(finished_grid, Path("findings/toy-finding"), "make toy")
    assert not Path("findings/toy-finding").exists()


def test_a_grid_without_its_report_is_not_published(finished_grid: Path) -> None:
    Path("results/reports/toy-finding.pdf").unlink()
    with pytest.raises(FindingError, match=r"toy-finding\.pdf"):
        findings.publish_finding(finished_grid, Path("findings/toy-finding"), "make toy")


# ---------------------------------------------------------------- the repository's published findings

PUBLISHED = sorted(path for path in (REPO / "findings").glob("*") if path.is_dir())


def test_the_repository_publishes_findings_and_the_readme_quotes_each() -> None:
    assert PUBLISHED, "findings/ holds no published finding"
    readme = REPO / "README.md"
    for folder in PUBLISHED:
        assert findings.quoted_block(readme, folder.name) is not None, (
            f"README.md does not quote {folder.name}"
        )


@pytest.mark.parametrize("folder", PUBLISHED, ids=[path.name for path in PUBLISHED])
def test_a_published_finding_is_what_the_package_computes_from_its_runs(folder: Path) -> None:
    """Never edited by hand: its tables, verdicts, README and the main README's quote are recomputed."""
    for name, table in findings.recomputed_tables(folder).items():
        published = pd.read_csv(folder / name, keep_default_na=False, na_values=[""])
        recomputed = pd.read_csv(
            pd.io.common.StringIO(table.to_csv(index=False)), keep_default_na=False, na_values=[""]
        )
        pd.testing.assert_frame_equal(published, recomputed, check_exact=False, rtol=1e-12, obj=name)
    spec = findings.report_spec(yaml.safe_load((folder / "config.yaml").read_text()))
    verdicts = findings.verdict_table(folder, spec)
    recomputed = pd.read_csv(
        pd.io.common.StringIO(verdicts.to_csv(index=False)), keep_default_na=False, na_values=[""]
    )
    published = pd.read_csv(folder / "verdicts.csv", keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(published, recomputed, check_exact=False, rtol=1e-12, obj="verdicts.csv")
    assert (folder / "README.md").read_text() == findings.finding_readme(folder)
    assert findings.quoted_block(REPO / "README.md", folder.name) == findings.readme_quote(folder)


def test_a_run_without_wall_time_leaves_the_span_unknown_not_short(finished_grid: Path) -> None:
    runs = pd.read_csv("results/tables/toy-finding/runs.csv")
    runs.loc[0, "wall_time_s"] = float("nan")
    timing = findings.finding_provenance(runs, finished_grid, "make toy")["wall_time"]
    assert timing["span_s"] is None and timing["job_seconds"] is None and "wall_time_s" in timing["why"]


def test_a_folder_with_other_files_is_not_overwritten(finished_grid: Path) -> None:
    out = Path("findings/toy-finding")
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FindingError, match=r"notes\.txt"):
        findings.publish_finding(finished_grid, out, "make toy")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_the_readme_is_checked_before_anything_is_written(finished_grid: Path) -> None:
    Path("README.md").write_text("# Project\n")
    with pytest.raises(FindingError, match="no block for finding toy-finding"):
        findings.publish_finding(finished_grid, Path("findings/toy-finding"), "make toy", Path("README.md"))
    assert not Path("findings/toy-finding").exists()


def test_the_grid_sentence_counts_what_ran_not_what_the_config_lists(finished_grid: Path) -> None:
    out = findings.publish_finding(finished_grid, Path("findings/toy-finding"), "make toy")
    config = yaml.safe_load((out / "config.yaml").read_text())
    del config["seeds"]  # a config relying on the default seeds (1, 2, 3) still describes its 4-seed runs
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    assert "16 runs (16 ok): 4 seeds × 2 methods × 2 tasks × 1 model(s)" in findings.finding_readme(out)
