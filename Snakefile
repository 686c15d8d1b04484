# robustft: seeds x models x methods x tasks -> runs -> tables -> PDF report.
# Thin rules; the logic lives in the `robustft` package (src/robustft), which every rule calls.
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version

min_version("9.19")

# Run the package from this checkout, so the commit recorded in run.json is the code that ran: the
# Snakefile imports it from src/, and every job's shell puts src/ first on PYTHONPATH.
SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))
# Snakemake formats the prefix as well, so the shell's own braces are doubled twice.
shell.prefix(f'export PYTHONPATH="{SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; ')

from robustft.workflow_config import DEFAULT_CONFIG  # noqa: E402


# A config file means exactly what it says: `--configfile F` replaces the demo config instead of being
# merged over it (Snakemake's own default), so no demo setting (e.g. its small train_by_task subsets)
# leaks into a paper config. With no --configfile, the demo runs; `--config KEY=VALUE` still overrides.
if not workflow.overwrite_configfiles:

    configfile: DEFAULT_CONFIG


include: "workflow/rules/common.smk"


# The front page of `snakemake --report report.zip`; each table's and figure's caption is in workflow/report/.
report: "workflow/report/workflow.rst"


wildcard_constraints:
    model=r"[A-Za-z0-9_.-]+",
    task=r"[A-Za-z0-9_.@-]+",
    method=r"[A-Za-z0-9_.+-]+",
    seed=r"\d+",
    key=r"[0-9a-f]{8}",
    paper=r"[a-z0-9_]+",
    artifact=r"[a-z0-9_]+",
    dataset=r"[A-Za-z0-9_.-]+",
    recipe=r"[A-Za-z0-9_.-]+",
    prompts=r"alpaca_eval|train_prompts",
    judge=r"[A-Za-z0-9_.-]+",
    lbtask=r"[A-Za-z0-9_]+",
    setting=r"zero-shot|translate-train-all",


include: "workflow/rules/data.smk"
include: "workflow/rules/glue.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/instruct.smk"
include: "workflow/rules/xtreme.smk"


onstart:
    check_pack_components(workflow)
    logger.info(log_locations(getattr(workflow.executor_plugin, "name", None)))


rule all:
    input:
        final_targets(),
    default_target: True
