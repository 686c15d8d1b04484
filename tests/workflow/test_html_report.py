"""What `snakemake --report report.zip` holds, read from the workflow's rules without running a job: every
table and figure a rule writes is flagged report() with a caption of workflow/report/, and the report
patterns of the folders take exactly the files worth browsing. tests/workflow/test_glue.py builds the
report of a toy paper DAG and reads it back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from jinja2 import Environment
from snakemake.io import regex_from_filepattern

from robustft.report.curves import file_stem
from tests.helpers import LOAD_WORKFLOW_SCRIPT, REPO

CAPTIONS = REPO / "workflow" / "report"
# What a browsing reader wants from a rule's outputs: tables, figures and reports, files or folders.
BROWSABLE = (".csv", ".svg", ".png", ".pdf")
# The outputs the issue named, so a flag that is dropped fails here even if the generic check passes.
EXPECTED = {
    "artifact": {"claims", "folder"},
    "aggregate": {"runs", "summary", "comparisons", "curves"},
    "collect_xtreme": {"table", "curves"},
    "collect_instruct": {"table"},
    "embedding_flips": {"table"},
    "embedding_spectra": {"table"},
    "report": {"pdf", "curves", "figures"},
    "instruct_report": {"pdf"},
}

# Every output of every rule with its directory and report flags, as Snakemake parsed them.
REPORT_FLAGS_SCRIPT = (
    LOAD_WORKFLOW_SCRIPT
    + """\
    from snakemake.io import get_flag_value, is_flagged

    def described(value):
        return getattr(value, "__name__", value)

    outputs = []
    for rule in workflow.rules:
        names = {id(value): name for name, value in rule.output.items()}
        for path in rule.output:
            flag = get_flag_value(path, "report") if is_flagged(path, "report") else None
            outputs.append({
                "rule": rule.name,
                "name": names.get(id(path)),
                "path": str(path),
                "directory": is_flagged(path, "directory"),
                "report": None if flag is None else {
                    "caption": flag.caption and flag.caption.get_path_or_uri(secret_free=True),
                    "category": described(flag.category),
                    "subcategory": described(flag.subcategory),
                    "patterns": list(flag.patterns),
                },
            })
    print("OUTPUTS=" + json.dumps(outputs))
"""
)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Every rule's outputs as the workflow declares them for the demo config."""
    workdir = tmp_path_factory.mktemp("flags")
    snakefile, config = str(REPO / "Snakefile"), str(REPO / "config" / "config.yaml")
    command = [sys.executable, "-c", REPORT_FLAGS_SCRIPT, snakefile, config]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("OUTPUTS=")]
    return json.loads(line.removeprefix("OUTPUTS="))


def flagged(outputs: list[dict], rule: str, name: str) -> dict:
    (output,) = [o for o in outputs if o["rule"] == rule and o["name"] == name]
    assert output["report"] is not None, f"{rule}.{name} ({output['path']}) is not flagged report()"
    return output


def test_every_table_and_figure_a_rule_writes_is_flagged_for_the_report(outputs: list[dict]) -> None:
    browsable = [o for o in outputs if o["directory"] or o["path"].endswith(BROWSABLE)]
    missing = [f"{o['rule']}.{o['name']}: {o['path']}" for o in browsable if o["report"] is None]
    assert not missing, f"tables or figures left out of `snakemake --report`: {missing}"
    for rule, names in EXPECTED.items():
        for name in names:
            flagged(outputs, rule, name)


def test_every_flagged_output_has_a_category_and_a_caption_of_workflow_report(outputs: list[dict]) -> None:
    used = set()
    for output in (o for o in outputs if o["report"]):
        flag, where = output["report"], f"{output['rule']}.{output['name']}"
        assert flag["category"], where
        caption = Path(flag["caption"] or "").resolve()  # named from the rule file: workflow/rules/../report
        assert caption.is_file() and caption.parent == CAPTIONS.resolve(), (where, flag["caption"])
        used.add(caption.name)
        # A folder is listed through its patterns; without one Snakemake refuses to build the report.
        assert bool(flag["patterns"]) == output["directory"], where
    unused = {path.name for path in CAPTIONS.glob("*.rst")} - used - {"workflow.rst"}
    assert not unused, f"captions no output uses: {sorted(unused)}"


def test_captions_are_valid_jinja_templates() -> None:
    """Snakemake renders each caption with Jinja (trim_blocks, lstrip_blocks) before reading it as rST."""
    environment = Environment(trim_blocks=True, lstrip_blocks=True)
    for path in sorted(CAPTIONS.glob("*.rst")):
        environment.parse(path.read_text(encoding="utf-8"), name=path.name)
    snakefile = (REPO / "Snakefile").read_text(encoding="utf-8")
    assert 'report: "workflow/report/workflow.rst"' in snakefile


class Files(list):
    """A job's input or output as captions see it: a list whose named files are attributes (Namedlist)."""

    def __init__(self, files: list[str], **named: str) -> None:
        super().__init__([*files, *named.values()])
        self.__dict__.update(named)


# The wildcards each caption's files have (the rules' wildcards and their report patterns'); a caption not
# listed belongs to a file without wildcards.
CAPTION_WILDCARDS = {
    "claims.rst": [{"paper": "noisytune", "artifact": "table3"}],
    "artifact-files.rst": [
        {"paper": "noisytune", "artifact": "table3", "file": "figure.svg"},
        {"paper": "noisytune", "artifact": "table3", "file": "appendix.csv"},
    ],
    "learning-curves.rst": [
        {"model": "minilm-l6", "task": "mrpc@0.5"},
        {"model": "xlm-r-base", "setting": "zero-shot", "task": "xnli"},
    ],
    "report-figures.rst": [{"figure": "levels"}, {"figure": "effects"}],
}


# One shipped config per shape the captions read: GLUE without grids (and no judges), GLUE with grids, the
# instruction-tuning track with grids and judges. The XTREME configs take 10-20 s each to load and add no
# shape: every config has the XTREME block, filled with its defaults.
CAPTION_CONFIGS = ["config.yaml", "noisytune-cpu.yaml", "neftune-cpu.yaml"]


@pytest.mark.parametrize("config_file", CAPTION_CONFIGS)
def test_every_caption_renders_without_rst_errors(config_file: str) -> None:
    """Each caption rendered as Snakemake renders it (Jinja, then docutils to HTML) against a shipped
    config: an empty list or a name that is rST markup must not leave an error message in the report."""
    from types import SimpleNamespace

    from docutils.core import publish_parts

    from robustft.workflow_config import config_name, load_config

    config = load_config(REPO / "config" / config_file)
    environment = Environment(trim_blocks=True, lstrip_blocks=True)
    spectra_runs = ([], ["results/instruct/m/d/r/neftune/seed0-0000aaaa/sft/metrics.json"])
    for path in sorted(CAPTIONS.glob("*.rst")):
        template = environment.from_string(path.read_text(encoding="utf-8"))
        variants = [(w, runs) for w in CAPTION_WILDCARDS.get(path.name, [{}]) for runs in spectra_runs]
        for wildcards, runs in variants:
            job = SimpleNamespace(
                config=config,
                wildcards=SimpleNamespace(**wildcards),
                input=Files(runs, table=f"results/tables/{config_name(config)}/xtreme.csv"),
                output=Files([], grid=f"results/tables/{config_name(config)}/runs-grid-0000aaaa.json"),
                params=SimpleNamespace(settings="{}", config_hash="0000aaaa", min_seeds=3, paper_model="{}"),
            )
            html = publish_parts(template.render(snakemake=job), writer="html")["html_body"]
            assert "system-message" not in html, (path.name, wildcards, html)


def matches(output: dict, name: str) -> bool:
    """Whether Snakemake's report would take the file `name` from the folder `output` (glob_wildcards)."""
    return any(re.fullmatch(regex_from_filepattern(p), name) for p in output["report"]["patterns"])


def test_artifact_folder_takes_the_figure_and_the_appendix_only(outputs: list[dict]) -> None:
    folder = flagged(outputs, "artifact", "folder")
    claims = flagged(outputs, "artifact", "claims")
    (result,) = [o for o in outputs if o["rule"] == "artifact" and o["name"] == "result"]
    # The folder holds the job's other outputs: Snakemake allows that within one job.
    assert Path(claims["path"]).parent == Path(result["path"]).parent == Path(folder["path"])
    assert matches(folder, "figure.svg") and matches(folder, "appendix.csv")
    for name in ("claims.csv", "claims.tex", "result.json", ".snakemake_timestamp", "figure.svg.tmp"):
        assert not matches(folder, name), name


def test_report_folders_take_the_curve_pngs_and_the_report_figures(outputs: list[dict]) -> None:
    curves, figures = flagged(outputs, "report", "curves"), flagged(outputs, "report", "figures")
    assert Path(curves["path"]) == Path("results/reports/demo/curves")
    # Names as the report writes them (report.curves.file_stem); the PDFs are the same figures.
    glue, xtreme = (
        file_stem("glue", "minilm-l6", "mrpc@0.5"),
        file_stem("xtreme", "xlm-r/b", "zero-shot", "xnli"),
    )
    for stem in (glue, xtreme):
        assert matches(curves, f"{stem}.png") and not matches(curves, f"{stem}.pdf"), stem
    assert Path(figures["path"]) == Path("figures/demo")
    assert matches(figures, "demo_levels.svg") and matches(figures, "demo_effects.svg")
    # The folder's other files: the curves' PDF copies and the artifacts' figures, both listed elsewhere.
    for name in ("demo_curves_glue_minilm-l6_rte.pdf", "noisytune_table2.svg", "other_levels.svg"):
        assert not matches(figures, name), name
